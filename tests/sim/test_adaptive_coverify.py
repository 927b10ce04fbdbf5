"""Adaptive T co-verified under cocotb (docs/HARDWARE.md, "Adaptive T"): with each rule on,
the exported core's outputs and passes run (PASSES_RUN) equal the integer reference's on the
RTL's own arbiter trace. Default run: a few digits images and a small random convolutional
network on Icarus; slow: 200 digits images per rule on Verilator."""

import numpy as np
import pytest
import torch

from spinbayes.golden.adaptive import AdaptiveT, output_span
from spinbayes.golden.mapping import map_model
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.coverify_results import fill_not_run
from spinbayes.sim.runner import simulator_available


def _need(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


def _check(hw, x, res, T, rule):
    assert res.mismatches == 0, res.details[:5]
    assert res.passed and res.passes is not None
    full = hw.run(x, torch.from_numpy(fill_not_run(res.choices))).prediction.numpy()
    if rule == "exact":   # the class of T passes, whatever the skipped passes would give
        assert np.array_equal(res.prediction, full)
    per_pass_beats = res.per_pass.any(-1).sum(-1)             # passes with a PASS output
    assert (per_pass_beats <= res.passes).all() and (res.passes <= T).all()


@pytest.mark.parametrize("rule", ["exact", "confidence"])
def test_small_mlp_on_icarus(small_mapped, digits, rule):
    _need("icarus")
    hw, T = small_mapped.hw(1), 5
    x = digits.x_test[9:12]
    adaptive = (AdaptiveT("exact", 1, 0, output_span(hw)) if rule == "exact"
                else AdaptiveT("confidence", 2, 256))
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=3, simulator="icarus",
                     stall=0.2, progress=False, adaptive=adaptive,
                     driver_images=int(rule == "exact"))
    _check(hw, x, res, T, rule)
    assert (res.passes < T).any()                  # the rule stopped some image early
    if rule == "exact":                            # the per-cycle driver on the same build
        assert res.driver["mismatches"] == 0
    reads = 16 * 4 + 4 * 1                         # per pass: the reads of the passes run
    assert (res.counters["cnt_xbar_reads"] == res.passes * reads).all()


def test_two_way_passes_not_run_on_icarus(small_mapped, digits):
    """n = 2, every image stopped at T_min = 2 of 5 (threshold 0): the passes not run carry
    no choice (all-zero rows in the trace), which the reference must not read as one."""
    _need("icarus")
    hw, T = small_mapped.hw(2), 5
    x = digits.x_test[:2]
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=5, simulator="icarus",
                     stall=0.1, progress=False, adaptive=AdaptiveT("confidence", 2, 0))
    _check(hw, x, res, T, "confidence")
    assert (res.passes == 2).all()


def test_random_conv_network_on_icarus(conv_case):
    _need("icarus")
    hw, x, T = conv_case(4, n_way=2, A_in=2, A=1, B=3, convs=2, dense_hidden=True)
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=3, simulator="icarus",
                     stall=0.2, progress=False, trace_layers=True,
                     adaptive=AdaptiveT("confidence", 2, 256))
    _check(hw, x, res, T, "confidence")


def test_an_adaptive_run_starts_at_image_0(small_mapped, digits):
    hw = small_mapped.hw(1)
    with pytest.raises(ValueError, match="adaptive-T run must start at image 0"):
        run_images(hw, digits.x_test[:1], params=params_for(hw, 4), T=4, seed=0,
                   first_image=3, adaptive=AdaptiveT("confidence", 2, 256), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["exact", "confidence"])
def test_two_hundred_digits_images_on_verilator(mlp32_model, digits, rule):
    _need("verilator")
    mapped = map_model(mlp32_model, digits.x_train, N=5, Q=4, seed=0, recal_batches=20)
    hw, B, T = mapped.hw(1), 200, 10
    adaptive = (AdaptiveT("exact", 1, 0, output_span(hw)) if rule == "exact"
                else AdaptiveT("confidence", 3, AdaptiveT.threshold_for(0.8)))
    x, y = digits.x_test[:B], digits.y_test[:B].numpy()
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=1, simulator="verilator",
                     stall=0.1, progress=True, labels=y, adaptive=adaptive)
    _check(hw, x, res, T, rule)
    print(f"\n{rule}: {B} images, 0 mismatches; passes mean {res.passes.mean():.2f} "
          f"(min {res.passes.min()}, max {res.passes.max()}); hw accuracy "
          f"{res.accuracy:.1f} %; cycles median {np.median(res.cycles):.0f}; xbar reads "
          f"per image {res.counters['cnt_xbar_reads'].mean():.1f}")
