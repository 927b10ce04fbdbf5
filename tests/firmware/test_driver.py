"""Verified programming with bounded retry, in Amaranth's simulator, with injected faults."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from spinbayes.firmware.driver import AmaranthBus, CellFault, CoreDriver
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.network import SpinBayesCore


def _run(tiny, stuck=(), retries=3, images=0, cell_init=None):
    dut = SpinBayesCore(tiny.params, cell_init, stuck_cells=stuck)
    out = {}

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        out["report"] = await drv.program_verified(tiny.program, retries=retries)
        codes = input_codes(tiny.x_test[:images], tiny.hw.input_bits).flatten(1).numpy()
        out["results"] = [await drv.infer(c, tiny.program, len(tiny.hw.layers),
                                          tiny.hw.n_way) for c in codes]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    t0 = time.perf_counter()
    sim.run()
    out["seconds"] = time.perf_counter() - t0
    return out


def _nonzero_cells(program, count):
    k, r, c = np.nonzero(program.cells)
    return [(int(k[i]), int(r[i]), int(c[i])) for i in np.linspace(0, k.size - 1, count,
                                                                     dtype=int)]


def test_clean_design_verifies_first_time_and_runs(tiny):
    out = _run(tiny, images=1)
    rep = out["report"]
    cells = tiny.program.cells
    assert rep.ok and rep.failed == [] and rep.retried == []
    assert rep.rounds == 1
    assert rep.cell_writes == np.count_nonzero(cells)
    assert rep.read_backs == cells.size
    assert rep.descriptor_writes == len(tiny.program.descriptor)
    # one cycle per write and per read-back: the read-back is pipelined
    assert rep.cycles == rep.cell_writes + rep.read_backs + rep.descriptor_writes
    # the descriptor was written too: the image equals the integer reference
    r = out["results"][0]
    ref = tiny.hw.run(tiny.x_test[:1], torch.from_numpy(r.choices[:, None]))
    assert np.array_equal(r.per_pass, ref.per_pass[0].numpy())
    assert r.prediction == int(ref.prediction[0])
    print(f"\nAmaranth sim: {rep.cell_writes + rep.descriptor_writes} writes + "
          f"{rep.read_backs} read-backs in {rep.seconds:.2f} s = "
          f"{(rep.cell_writes + rep.descriptor_writes) / rep.seconds:.0f} writes/s, "
          f"{rep.cycles / rep.seconds:.0f} cycles/s")


@pytest.mark.parametrize("retries", [0, 2])
def test_stuck_cells_are_caught_and_reported(tiny, retries):
    cells = tiny.program.cells
    stuck_nz = _nonzero_cells(tiny.program, 2)
    zk, zr, zc = (int(v[0]) for v in np.nonzero(cells == 0))
    out = _run(tiny, stuck=[*stuck_nz, (zk, zr, zc)], retries=retries)
    rep = out["report"]
    # a stuck cell keeps its reset level 0: the ones that should hold a level never verify
    assert rep.failed == [CellFault(k, r, c, int(cells[k, r, c]), 0) for k, r, c in stuck_nz]
    assert not rep.ok
    assert rep.rounds == retries + 1
    assert rep.retried == (sorted(stuck_nz) if retries else [])
    assert rep.cell_writes == np.count_nonzero(cells) + retries * len(stuck_nz)
    assert rep.read_backs == cells.size + retries * len(stuck_nz)
    assert rep.descriptor_writes == len(tiny.program.descriptor)
    assert f"crossbar {stuck_nz[0][0]} row {stuck_nz[0][1]} col {stuck_nz[0][2]}" \
        in rep.summary()


def test_stale_cells_from_a_previous_network_are_rewritten(tiny):
    """Cells that hold a level the new program wants at 0 are found and cleared."""
    stale = np.zeros_like(tiny.program.cells)
    zero = np.argwhere(tiny.program.cells == 0)[:5]
    for k, r, c in zero:
        stale[k, r, c] = 3
    out = _run(tiny, retries=1, cell_init=stale)
    rep = out["report"]
    assert rep.ok
    assert rep.retried == sorted(tuple(int(v) for v in z) for z in zero)
    assert rep.rounds == 2


def test_bad_retries_are_refused(tiny):
    with pytest.raises(ValueError, match="retries must be a non-negative integer"):
        _run(tiny, retries=-1)
