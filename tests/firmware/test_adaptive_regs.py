"""The adaptive-T registers (docs/HARDWARE.md, "Adaptive T") in the compiler, the image
checker and the loader: rule off unless asked, ranges from rtl/regs.py, T_min <= PASSES."""

from __future__ import annotations

import pytest

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.image import save_image
from spinbayes.golden.adaptive import AdaptiveT, output_span
from spinbayes.rtl.reg_ranges import register_ranges
from spinbayes.rtl.regs import CONFIDENCE_BITS, AdaptRule, Reg


def _adaptive(program):
    return {w.sel: w.data for w in program.descriptor if w.sel.name.startswith("ADAPT_")}


def test_the_compiler_writes_rule_off_unless_asked(tiny):
    assert _adaptive(tiny.program) == {Reg.ADAPT_RULE: AdaptRule.OFF}
    span = output_span(tiny.hw)
    prog = compile_network(tiny.hw, tiny.params, T=3, seed=5,
                           adaptive=AdaptiveT("exact", 2, 0, span))
    assert _adaptive(prog) == {Reg.ADAPT_RULE: AdaptRule.EXACT, Reg.ADAPT_T_MIN: 2,
                               Reg.ADAPT_THRESHOLD: 0, Reg.ADAPT_SPAN: span}
    assert prog.extra["adaptive"] == {"rule": "exact", "t_min": 2, "threshold": 0,
                                      "span": span}


def test_register_ranges(tiny):
    r = register_ranges(tiny.params)
    assert (r[Reg.ADAPT_RULE]["data"].lo, r[Reg.ADAPT_RULE]["data"].hi) == (0, 2)
    assert (r[Reg.ADAPT_T_MIN]["data"].lo, r[Reg.ADAPT_T_MIN]["data"].hi) == (1,
                                                                             tiny.params.T_max)
    assert r[Reg.ADAPT_THRESHOLD]["data"].hi == 2 ** CONFIDENCE_BITS
    assert r[Reg.ADAPT_SPAN]["data"].hi == 2 ** tiny.params.out_bits - 1


@pytest.mark.parametrize("adaptive, message", [
    (AdaptiveT("confidence", 4, 128), r"T_min=4 outside 1\.\.T=3"),
    (AdaptiveT("exact", 1, 0, 5), r"exact rule span 5 below the network's output span \d+"),
])
def test_the_compiler_refuses(tiny, adaptive, message):
    with pytest.raises(ValueError, match=message):
        compile_network(tiny.hw, tiny.params, T=3, seed=5, adaptive=adaptive)


def test_the_checker_refuses_bad_adaptive_writes(tiny, tmp_path, editor, refused):
    prog = compile_network(tiny.hw, tiny.params, T=3, seed=5,
                           adaptive=AdaptiveT("confidence", 2, 200))
    directory = save_image(prog, tiny.params, tmp_path / "img")
    edit = editor(directory)
    line = edit.set_write(Reg.ADAPT_T_MIN, 3)
    edit.set_write(Reg.PASSES, 2)
    refused(directory, rf"line {line}: ADAPT_T_MIN=3 above PASSES=2")
    edit.set_write(Reg.PASSES, 3)
    line = edit.set_write(Reg.ADAPT_THRESHOLD, 2 ** CONFIDENCE_BITS + 1)
    refused(directory, rf"line {line}: ADAPT_THRESHOLD: vote threshold=257 outside 0\.\.256")
    edit.set_write(Reg.ADAPT_THRESHOLD, 200)
    line = edit.set_write(Reg.ADAPT_RULE, 3)
    refused(directory, rf"line {line}: ADAPT_RULE: adaptive rule=3 outside 0\.\.2")
    edit.set_write(Reg.ADAPT_RULE, 2)
    edit.drop_write(Reg.ADAPT_SPAN)
    refused(directory, r"no ADAPT_SPAN write \(ADAPT_RULE=CONFIDENCE")


@pytest.mark.parametrize("rule, t_min, threshold", [("often", 1, 0), ("exact", 0, 0),
                                                    ("confidence", 1, 257)])
def test_bad_settings_are_refused(rule, t_min, threshold):
    with pytest.raises(ValueError, match="adaptive rule must be|T_min must|threshold must"):
        AdaptiveT(rule, t_min, threshold)
