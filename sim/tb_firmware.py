"""cocotb testbench: the firmware driver programs the exported core and runs images.

Everything comes from files named in the testbench config (``SPINBAYES_TB_CONFIG``):

* ``image``: a firmware image directory (firmware/image.py), loaded and verified here;
* ``inputs``: an ``.npz`` with ``codes`` (B, rows of layer 0), the input codes to stream;
* ``retries``: the read-back retry bound of ``program_verified``;
* ``stuck_cells``: the (k, row, col) cells the design was generated with as stuck (fault
  injection); the report must name exactly those whose wanted level is non-zero.

The same :class:`~spinbayes.firmware.driver.CoreDriver` as in Amaranth's simulator drives
the core through :class:`~spinbayes.firmware.driver.CocotbBus`. The result JSON
(``SPINBAYES_TB_RESULT``) holds the programming report, its speed, and per image the
per-pass outputs, averages, class, arbiter trace, cycles and counters; the caller feeds the
trace to the integer reference (``HwNetwork.run``) and compares.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from spinbayes.firmware.driver import CocotbBus, CoreDriver
from spinbayes.firmware.image import load_image
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.regs import Reg

#: inputs driven to 0 before and during reset
INPUTS = ("prog_en", "prog_sel", "prog_a", "prog_b", "prog_c", "prog_data", "vfy_k",
          "vfy_row", "vfy_col", "in_data", "in_valid", "out_ready")


async def reset(dut, cycles: int = 2) -> None:
    for name in INPUTS:
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def program_verify_and_infer(dut):
    cfg = json.loads(Path(os.environ["SPINBAYES_TB_CONFIG"]).read_text())
    described = json.loads(Path(os.environ["SPINBAYES_PARAMS"]).read_text())
    params = RtlParams.from_describe(described)
    program, manifest = load_image(cfg["image"], params)
    codes = np.load(cfg["inputs"])["codes"]
    n_way = next(w.data for w in program.descriptor if w.sel == Reg.N_WAY)
    n_layers = len(manifest["layers"])

    Clock(dut.clk, 10, unit="ns").start()
    await reset(dut)
    bus = CocotbBus(dut, fields={"trace_indices": (params.index_bits, params.n_max)})
    drv = CoreDriver(bus)
    rep = await drv.program_verified(program, retries=int(cfg["retries"]))

    expected = sorted((k, r, c) for k, r, c in cfg["stuck_cells"] if program.cells[k, r, c])
    found = sorted((f.k, f.row, f.col) for f in rep.failed)
    assert found == expected, f"never-verified cells {found}, injected {expected}"
    for f in rep.failed:
        assert f.read != f.wanted and f.wanted == int(program.cells[f.k, f.row, f.col])
    assert rep.rounds == (int(cfg["retries"]) + 1 if expected else 1)

    images, t0 = [], time.perf_counter()
    for row in codes:
        r = await drv.infer(row, program, n_layers, n_way)
        images.append({"per_pass": r.per_pass.tolist(), "averaged": r.averaged.tolist(),
                       "prediction": r.prediction, "choices": r.choices.tolist(),
                       "cycles": r.cycles, "counters": {k: int(v) for k, v in
                                                        r.counters.items()}})
    infer_s = time.perf_counter() - t0
    writes = rep.cell_writes + rep.descriptor_writes
    result = {
        "report": {"cell_writes": rep.cell_writes, "descriptor_writes": rep.descriptor_writes,
                   "read_backs": rep.read_backs, "rounds": rep.rounds,
                   "retried": [list(c) for c in rep.retried],
                   "failed": [[f.k, f.row, f.col, f.wanted, f.read] for f in rep.failed],
                   "cycles": rep.cycles, "seconds": rep.seconds},
        "writes_per_s": writes / rep.seconds if rep.seconds else None,
        "cycles_per_s": rep.cycles / rep.seconds if rep.seconds else None,
        "images": images, "infer_seconds": infer_s,
    }
    Path(os.environ["SPINBAYES_TB_RESULT"]).write_text(json.dumps(result))
