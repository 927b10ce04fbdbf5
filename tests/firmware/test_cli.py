"""`spinbayes firmware compile` and `check` on a small trained model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from spinbayes.cli import main
from spinbayes.firmware.build import compile_checkpoint
from spinbayes.firmware.image import crossbar_file, load_image
from spinbayes.golden.checkpoint import save_checkpoint
from spinbayes.rtl.params import RtlParams


@pytest.fixture(scope="module")
def checkpoint(small_model, small_cfg, digits, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), small_model, small_cfg,
                           image_shape=digits.image_shape, num_classes=digits.num_classes)


def test_compile_and_check(checkpoint, tmp_path, capsys):
    rtl = tmp_path / "rtl.json"
    rtl.write_text(json.dumps({"N": 5, "n_max": 2, "rows_max": 64, "outputs_max": 16,
                               "groups_total": 32}))
    out = tmp_path / "fw"
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--rtl-config", str(rtl), "--T", "4", "--seed", "9", "--n-way", "2",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text
    assert "layer 0: 64 rows x 16 outputs" in text and "layer 1: 16 rows x 10 outputs" in text
    params = RtlParams(N=5, n_max=2, rows_max=64, outputs_max=16, groups_total=32)
    program, manifest = load_image(out, params)
    assert program.T == 4 and manifest["seed"] == 9 and manifest["meta"]["n_way"] == 2
    assert manifest["meta"]["checkpoint_sha256"] == json.loads(
        (checkpoint / "manifest.json").read_text())["sha256"]
    # the image is what compile_checkpoint produces in memory (same seeds, same calls)
    again = compile_checkpoint(checkpoint, params, T=4, seed=9, n_way=2)
    assert np.array_equal(program.cells, again.program.cells)
    assert program.descriptor == again.program.descriptor

    assert main(["firmware", "check", str(out), "--rtl-config", str(rtl)]) == 0
    assert f"{out}: OK" in capsys.readouterr().out

    path = out / crossbar_file(4)
    raw = bytearray(path.read_bytes())
    raw[10] = ord("1") if raw[10] != ord("1") else ord("2")
    path.write_bytes(bytes(raw))
    assert main(["firmware", "check", str(out)]) == 2
    assert "crossbar_4.hex: sha256 mismatch" in capsys.readouterr().err


def test_compile_refuses_a_design_that_does_not_fit(checkpoint, tmp_path, capsys):
    rtl = tmp_path / "rtl.json"
    rtl.write_text(json.dumps({"N": 5, "rows_max": 32, "groups_total": 8}))
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "fw"), "--rtl-config", str(rtl), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "layer 0: 16 x 64 exceeds outputs_max=64, rows_max=32" in err
    assert not (tmp_path / "fw").exists()
    rtl.write_text(json.dumps({"N": 5, "classes_max": 4}))
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "fw"), "--rtl-config", str(rtl), "--quiet"]) == 2
    assert re.search(r"layer \d: \d+ classes exceed classes_max=4", capsys.readouterr().err)
    assert not (tmp_path / "fw").exists()
    rtl.write_text(json.dumps({"N": 5, "bogus": 1}))
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "fw"), "--rtl-config", str(rtl)]) == 2
    assert "unknown RtlParams fields ['bogus']" in capsys.readouterr().err
    rtl.write_text(json.dumps({"N": 3, "n_max": 1}))
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "fw"), "--rtl-config", str(rtl)]) == 2
    assert "the checkpoint maps onto N=5 crossbars" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["4294967296", "-1"])
def test_compile_refuses_a_seed_outside_the_rng_range(checkpoint, tmp_path, capsys, seed):
    """2^32 would write the same device seeds as 0 while the manifest records 2^32."""
    assert main(["firmware", "compile", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "fw"), "--seed", seed, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"spinbayes firmware compile: error: seed must be an integer in 0..4294967295 "
            f"(the RNG devices' 32-bit state), not {seed}") in err
    assert not (tmp_path / "fw").exists()
