"""The REUSE register (docs/HARDWARE.md, "First-layer reuse") in the compiler, the image
checker and the loader: written only when asked, 1 only in a design whose cache holds the
first layer."""

from __future__ import annotations

import dataclasses

import pytest

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.image import load_image, save_image
from spinbayes.rtl.regs import Reg


def test_reuse_image_is_checked_against_the_cache(tiny, tmp_path, editor, refused):
    assert Reg.REUSE not in {w.sel for w in tiny.program.descriptor}    # off unless asked
    outs = tiny.hw.layers[0].codes.shape[1]
    p = dataclasses.replace(tiny.params, reuse_positions=1, reuse_outputs=outs)
    prog = compile_network(tiny.hw, p, T=3, seed=5, reuse=True)
    assert {w.sel: w.data for w in prog.descriptor}[Reg.REUSE] == 1
    assert prog.extra["reuse"] is True
    directory = save_image(prog, p, tmp_path / "img")
    loaded, _ = load_image(directory, p)
    assert {w.sel: w.data for w in loaded.descriptor}[Reg.REUSE] == 1
    edit = editor(directory)
    small = dataclasses.replace(p, reuse_outputs=outs - 1).describe()
    m = edit.manifest()
    m["params"] = small
    edit.save_manifest(m)
    line = edit.line_of(Reg.REUSE)
    refused(directory, rf"line {line}: REUSE=1, but layer 0 has 1 positions of {outs} outputs "
            rf"and the reuse cache holds reuse_positions=1 of reuse_outputs={outs - 1}")
    with pytest.raises(ValueError, match="first-layer reuse: layer 0 has 1 positions"):
        compile_network(tiny.hw, tiny.params, T=3, seed=5, reuse=True)
