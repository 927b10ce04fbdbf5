"""The firmware driver over cocotb (CocotbBus) on the exported Verilog of the tiny design.

Stuck-cell fault injection is caught by read-back and reported; on a clean design, images
streamed by the same driver equal the integer reference run on the RTL's arbiter trace.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from amaranth.back import verilog

from spinbayes.firmware.image import save_image
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.sim.runner import run_cocotb, simulator_available


def run_tb(tiny, tmp_path, simulator, *, stuck=(), images=0, retries=3):
    image = save_image(tiny.program, tiny.params, tmp_path / "image")
    codes = input_codes(tiny.x_test[:images], tiny.hw.input_bits).flatten(1).numpy()
    np.savez(tmp_path / "inputs.npz", codes=codes)
    text = verilog.convert(SpinBayesCore(tiny.params, stuck_cells=stuck),
                           name="spinbayes_core", emit_src=False)
    return run_cocotb(verilog=text, toplevel="spinbayes_core", test_module="tb_firmware",
                      params=tiny.params.describe(), simulator=simulator,
                      config={"image": str(image), "inputs": str(tmp_path / "inputs.npz"),
                              "retries": retries, "stuck_cells": [list(c) for c in stuck]})


SIMS = ["icarus", pytest.param("verilator", marks=pytest.mark.slow)]


def _need(simulator):
    if not simulator_available(simulator):
        pytest.skip(f"{simulator} is not installed")


@pytest.mark.parametrize("simulator", SIMS)
def test_stuck_cell_is_reported_over_cocotb(tiny, tmp_path, simulator):
    _need(simulator)
    cells = tiny.program.cells
    k, r, c = (int(v[len(v) // 2]) for v in np.nonzero(cells))
    zk, zr, zc = (int(v[0]) for v in np.nonzero(cells == 0))
    res = run_tb(tiny, tmp_path, simulator, stuck=[(k, r, c), (zk, zr, zc)], retries=2)
    rep = res.data["report"]
    assert rep["failed"] == [[k, r, c, int(cells[k, r, c]), 0]]
    assert rep["retried"] == [[k, r, c]] and rep["rounds"] == 3
    assert rep["cell_writes"] == np.count_nonzero(cells) + 2
    assert rep["read_backs"] == cells.size + 2
    assert rep["descriptor_writes"] == len(tiny.program.descriptor)
    print(f"\n{simulator}: programming {res.data['writes_per_s']:.0f} writes/s, "
          f"{res.data['cycles_per_s']:.0f} cycles/s ({rep['cycles']} cycles, "
          f"{rep['seconds']:.2f} s)")


@pytest.mark.parametrize("simulator", SIMS)
def test_programmed_core_equals_integer_reference_over_cocotb(tiny, tmp_path, simulator):
    _need(simulator)
    res = run_tb(tiny, tmp_path, simulator, images=2)
    rep = res.data["report"]
    assert rep["failed"] == [] and rep["retried"] == [] and rep["rounds"] == 1
    imgs = res.data["images"]
    assert len(imgs) == 2
    choices = torch.tensor([im["choices"] for im in imgs]).transpose(0, 1)   # (L, B, T, n)
    ref = tiny.hw.run(tiny.x_test[:2], choices)
    for b, im in enumerate(imgs):
        assert np.array_equal(im["per_pass"], ref.per_pass[b].numpy()), f"image {b}: y"
        assert np.array_equal(im["averaged"], ref.averaged[b].numpy()), f"image {b}: avg"
        assert im["prediction"] == int(ref.prediction[b]), f"image {b}: class"
        assert im["counters"]["cnt_xbar_reads"] > 0
    print(f"\n{simulator}: programming {res.data['writes_per_s']:.0f} writes/s; 2 images in "
          f"{res.data['infer_seconds']:.2f} s, cycles {[im['cycles'] for im in imgs]}")
