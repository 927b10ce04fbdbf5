"""The cocotb runner wrapper: build keys, Verilator's speed flags and its VPI visibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from spinbayes.sim import runner


def test_public_vlt_names_only_the_top():
    text = runner.verilator_public_vlt("spinbayes_harness")
    assert text.startswith("`verilator_config\n")
    assert 'public_flat_rw -module "spinbayes_harness" -var "*"' in text
    for bad in ("", "a b", 'x"y', "top\n", "1top"):
        with pytest.raises(ValueError, match="plain Verilog module name"):
            runner.verilator_public_vlt(bad)


TOP = """module top(a, b, clk);
  input [3:0] a;
  wire [3:0] a;
  output b;
  reg b = 1'h0;
  input clk;
  wire clk;
  reg [7:0] log [15:0];
  reg [1:0] state = 2'h0;
  wire [3:0] \\$1 ;
  sub u (.a(a));
endmodule

module sub(a);
  input [3:0] a;
  reg [7:0] inner [3:0];
endmodule
"""


def test_public_vlt_names_the_tops_ports_and_memories():
    """With the Verilog text, only what testbenches reach is public: the top's ports and
    memories, not its other signals nor a sub-module's; without a match, every top signal."""
    assert runner.public_names(TOP, "top") == ["a", "b", "clk", "log"]
    text = runner.verilator_public_vlt("top", TOP)
    assert text.splitlines() == ["`verilator_config"] + [
        f'public_flat_rw -module "top" -var "{n}"' for n in ("a", "b", "clk", "log")]
    for other in ("sub2", "to"):                           # no such module: every signal
        assert runner.public_names(TOP, other) is None
        assert '-var "*"' in runner.verilator_public_vlt(other, TOP)
    escaped = TOP.replace("  input clk;", "  input \\clk$x ;")
    assert runner.public_names(escaped, "top") is None


def test_build_key_covers_the_public_signals(tmp_path, monkeypatch):
    d = runner.build_dir_for(TOP, "verilator", "top", cache_dir=tmp_path)
    monkeypatch.setattr(runner, "VERILATOR_PUBLIC", "all")
    assert runner.build_dir_for(TOP, "verilator", "top", cache_dir=tmp_path) != d
    monkeypatch.setattr(runner, "VERILATOR_PUBLIC", "some")
    with pytest.raises(ValueError, match="VERILATOR_PUBLIC must be 'ports' or 'all'"):
        runner.build_dir_for(TOP, "verilator", "top", cache_dir=tmp_path)


def test_verilator_builds_for_speed():
    """cocotb's --public-flat-rw is undone and the model compiled with -O2; Icarus gets
    nothing extra."""
    args, make = runner.build_flags("verilator")
    assert "--no-public-flat-rw" in args and "-O3" in args
    assert "OPT_FAST=-O2" in make.split() and "CFG_CXXFLAGS_PCH_I=-include" in make.split()
    assert runner.build_flags("icarus") == ([], "")


def test_build_key_covers_text_flags_waves_and_sources(tmp_path, monkeypatch):
    d = runner.build_dir_for("module m; endmodule", "verilator", "m", cache_dir=tmp_path)
    assert d.parent == tmp_path and d.name.startswith("m-verilator-")
    same = runner.build_dir_for("module m; endmodule", "verilator", "m", cache_dir=tmp_path)
    assert same == d
    others = {runner.build_dir_for("module m; endmodule ", "verilator", "m",
                                   cache_dir=tmp_path),
              runner.build_dir_for("module m; endmodule", "icarus", "m", cache_dir=tmp_path),
              runner.build_dir_for("module m; endmodule", "verilator", "m", waves=True,
                                   cache_dir=tmp_path)}
    extra = tmp_path / "x.vlt"
    extra.write_text("`verilator_config\n")
    others.add(runner.build_dir_for("module m; endmodule", "verilator", "m",
                                    extra_sources=[extra], cache_dir=tmp_path))
    monkeypatch.setattr(runner, "VERILATOR_MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")
    others.add(runner.build_dir_for("module m; endmodule", "verilator", "m",
                                    cache_dir=tmp_path))
    monkeypatch.setattr(runner, "VERILATOR_ARGS", ("-Wno-fatal",))
    others.add(runner.build_dir_for("module m; endmodule", "verilator", "m",
                                    cache_dir=tmp_path))
    # another venv (the CI's clone) sharing the cache: its Makefile names its own cocotb
    monkeypatch.setattr(runner, "toolchain_id", lambda sim: "/other/venv/cocotb")
    others.add(runner.build_dir_for("module m; endmodule", "verilator", "m",
                                    cache_dir=tmp_path))
    assert d not in others and len(others) == 7


def test_toolchain_id_names_the_simulator_and_cocotb():
    import cocotb

    tid = runner.toolchain_id("icarus")
    assert cocotb.__version__ in tid and str(Path(cocotb.__file__).resolve().parent) in tid
