"""The programming word and the register table of rtl/regs.py, and everything derived from them."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from amaranth import Shape, signed, unsigned

from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.reg_ranges import register_ranges, write_problem
from spinbayes.rtl.regs import (
    PROG_FIELDS,
    PROG_TEXT_FORM,
    PROG_WIDTHS,
    PROG_WORD_BITS,
    Reg,
    as_data,
    pack_prog,
    parse_prog_text,
    prog_layout,
    prog_text,
    unpack_prog,
)
from spinbayes.sim.harness import WORD_BITS, CoverifyHarness, pack_write


def test_word_layout():
    assert PROG_FIELDS == (("data", 32), ("c", 8), ("b", 16), ("a", 16), ("sel", 5))
    assert PROG_WORD_BITS == 77 and PROG_TEXT_FORM == "SS_AAAA_BBBB_CC_DDDDDDDD"
    assert max(Reg) < 2 ** PROG_WIDTHS["sel"]
    layout = prog_layout()
    assert layout.size == 77
    assert [(n, f.offset, f.shape) for n, f in layout] == [
        ("data", 0, signed(32)), ("c", 32, unsigned(8)), ("b", 40, unsigned(16)),
        ("a", 56, unsigned(16)), ("sel", 72, unsigned(5))]


@pytest.mark.parametrize("fields", [(0, 0, 0, 0, 0), (31, 65535, 65535, 255, -2 ** 31),
                                    (13, 1, 2, 3, 2 ** 31 - 1), (5, 17, 1, 1, -5)])
def test_word_round_trips(fields):
    word = pack_prog(*fields)
    assert 0 <= word < 2 ** 77 and unpack_prog(word) == fields
    text = prog_text(*fields)
    assert parse_prog_text(text) == fields
    assert int(text.replace("_", ""), 16) == word          # the $readmemh word
    assert len(text) == len(PROG_TEXT_FORM)


@pytest.mark.parametrize("fields, message", [
    ((32, 0, 0, 0, 0), r"field sel must be an integer in 0\.\.31 \(5 bits\), not 32"),
    ((0, 2 ** 16, 0, 0, 0), r"field a must be an integer in 0\.\.65535 \(16 bits\)"),
    ((0, 0, 0, 256, 0), r"field c must be an integer in 0\.\.255"),
    ((0, 0, 0, 0, 2 ** 31), r"field data must be an integer in -2147483648\.\.2147483647"),
    ((0, 0, -1, 0, 0), r"field b must be an integer in 0\.\.65535 \(16 bits\), not -1"),
])
def test_word_fields_out_of_range_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        pack_prog(*fields)
    with pytest.raises(ValueError, match=message):
        prog_text(*fields)


def test_bad_text_and_data_patterns():
    assert parse_prog_text("0d_0001_0002_03_fffffff") is None
    assert parse_prog_text("0d-0001_0002_03_fffffffb") is None
    assert parse_prog_text("d_0001_0002_03_fffffffb") is None
    assert parse_prog_text("20_0001_0002_03_fffffffb") is None     # sel has 5 bits
    assert parse_prog_text("1f_0001_0002_03_fffffffb") == (31, 1, 2, 3, -5)
    assert as_data(2 ** 32 - 1) == -1 and as_data(5) == 5
    with pytest.raises(ValueError, match=r"data pattern must be an integer in 0\.\.2\*\*32-1"):
        as_data(2 ** 32)


def test_core_and_harness_take_their_widths_from_the_word(tiny):
    core = SpinBayesCore(tiny.params)
    h = CoverifyHarness(tiny.params, wlist_depth=2)
    core._MustUse__silence = h._MustUse__silence = True      # only their signatures are read
    for name, bits in PROG_FIELDS:
        shape = Shape.cast(core.signature.members[f"prog_{name}"].shape)
        assert shape == (signed(bits) if name == "data" else unsigned(bits))
    assert WORD_BITS == PROG_WORD_BITS
    assert Shape.cast(h.signature.members["h_wl_wdata"].shape) == unsigned(PROG_WORD_BITS)
    assert pack_write is pack_prog


def test_register_ranges_follow_the_design():
    p = RtlParams()
    r = register_ranges(p)
    assert set(r) == set(Reg)
    assert (r[Reg.LAYER_ROWS]["data"].lo, r[Reg.LAYER_ROWS]["data"].hi) == (1, p.rows_max)
    assert r[Reg.LAYER_ROWS]["c"].hi == p.layers_max - 1
    assert r[Reg.PASSES]["data"].hi == p.T_max and r[Reg.N_WAY]["data"].hi == p.n_max
    assert r[Reg.N_LAYERS]["data"].hi == p.layers_max
    assert r[Reg.XBAR_CELL]["a"].hi == p.groups_total * p.R - 1
    assert r[Reg.XBAR_CELL]["b"].hi == p.cols_max - 1 and r[Reg.XBAR_CELL]["c"].hi == p.N - 1
    assert r[Reg.THRESHOLD]["data"].hi == 2 ** (p.threshold_bits - 1) - 1
    assert r[Reg.SCALE]["a"].hi == p.classes_max - 1
    assert r[Reg.OFFSET]["data"].lo == -2 ** (p.offset_bits - 1)
    assert r[Reg.RNG_THRESHOLD]["data"].hi == 2 ** p.rng_bits
    assert r[Reg.RNG_SEED]["a"].hi == p.code_bits - 1
    big = register_ranges(replace(p, rows_max=128, groups_total=64, T_max=32, n_max=3))
    assert big[Reg.LAYER_ROWS]["data"].hi == 128 and big[Reg.PASSES]["data"].hi == 32
    assert big[Reg.N_WAY]["data"].hi == 3
    # the largest cell level of a Q-bit weight split evenly over k_cells cells
    for Q, level in [(2, 1), (3, 3), (4, 4), (5, 4), (8, 4)]:
        assert register_ranges(replace(p, Q=Q))[Reg.XBAR_CELL]["data"].hi == level


def test_write_problem_names_register_field_and_bound():
    r = register_ranges(RtlParams())
    assert write_problem(r, Reg.PASSES, 0, 0, 0, 16) is None
    assert write_problem(r, Reg.PASSES, 0, 0, 0, 17) == \
        "PASSES: passes=17 outside 1..16 (T_max=16)"
    assert write_problem(r, Reg.PASSES, 0, 0, 0, 10.7) == \
        "PASSES: passes (data) must be an integer, not 10.7"
    assert write_problem(r, Reg.PASSES, 0, 0, 0, True) == \
        "PASSES: passes (data) must be an integer, not True"
    assert write_problem(r, Reg.SIGN, 64, 0, 1, 0) == \
        "SIGN [layer 1, output 64]: output=64 outside 0..63 (outputs_max=64)"
    assert write_problem(r, 32, 0, 0, 0, 0) == "prog_sel 32 is not a register (Reg)"
    assert write_problem(r, Reg.REUSE, 0, 0, 0, 1) == \
        "REUSE: reuse flag=1 outside 0..0 (reuse_positions=0)"
    assert write_problem(r, Reg.HEALTH_RCT_CUTOFF, 0, 0, 0, 0) == \
        "HEALTH_RCT_CUTOFF: RCT cutoff=0 outside 1..255 (rct_bits=8)"
    assert write_problem(r, Reg.LAYER_KIND, 0, 0, 0, 1) == \
        "LAYER_KIND [layer 0]: kind=1 outside 0..0 (act_depth=0: dense layers only)"
    conv = register_ranges(RtlParams(act_depth=64, image_depth=64, size_max=8, kernel_max=3,
                                     padding_max=1))
    assert write_problem(conv, Reg.LAYER_KIND, 0, 0, 0, 1) is None
    assert write_problem(conv, Reg.LAYER_H, 0, 0, 1, 9) == \
        "LAYER_H [layer 1]: input height=9 outside 1..8 (size_max=8)"
    assert write_problem(conv, Reg.LAYER_PADDING, 0, 0, 0, 2) == \
        "LAYER_PADDING [layer 0]: padding=2 outside 0..1 (padding_max=1)"


def test_compiled_writes_lie_in_the_table(tiny):
    r = register_ranges(tiny.params)
    assert all(write_problem(r, w.sel, w.a, w.b, w.c, w.data) is None
               for w in tiny.program.descriptor + tiny.program.cell_writes())
    assert PROG_WIDTHS["data"] == 32


def test_regs_imports_neither_torch_nor_amaranth():
    code = ("import sys, spinbayes.rtl.reg_ranges as r; r.register_ranges; "
            "assert 'torch' not in sys.modules and 'amaranth' not in sys.modules, "
            "sorted(m for m in sys.modules if m in ('torch', 'amaranth'))")
    subprocess.run([sys.executable, "-c", code], check=True)
