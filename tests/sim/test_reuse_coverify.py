"""First-layer reuse co-verified under cocotb (docs/HARDWARE.md, "First-layer reuse"): with
REUSE on, the exported core's outputs (and hidden activations) equal the integer reference's
on the RTL's own arbiter trace, and each image's crossbar reads and accumulations equal the
energy model's analytic count with its distinct first-layer crossbars (run_images checks
both). All slow (the default run has reuse through tests/rtl/test_reuse.py): a few digits
images and a small random convolutional network on Icarus (41 s under load), 100 digits images
and LeNet-5 on Verilator, reuse on and off on the same build."""

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.energy_counts import distinct_crossbars
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.mapping import map_model
from spinbayes.golden.networks import build_model
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.runner import simulator_available


def _need(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


def _pair(hw, x, T, simulator, **kw):
    """Reuse off and on, same design (with the cache) and seed: both without mismatches (on:
    the counts too), the same outputs and choices; returns (off, on)."""
    params = params_for(hw, T, reuse=True)
    runs = [run_images(hw, x, params=params, T=T, seed=3, simulator=simulator, reuse=r, **kw)
            for r in (False, True)]
    for res in runs:
        assert res.mismatches == 0, res.details[:5]
    off, on = runs
    for name in ("per_pass", "averaged", "prediction", "choices"):
        assert np.array_equal(getattr(off, name), getattr(on, name)), name
    assert (on.counters["cnt_xbar_reads"] < off.counters["cnt_xbar_reads"]).all()
    return off, on


def _report(name, hw, T, off, on):
    D = distinct_crossbars(on.choices[0], hw.N)
    print(f"\n{name}: {len(D)} images, 0 mismatches with reuse off and on; distinct first-layer "
          f"crossbars mean {D.mean():.2f}; cycles per image median off "
          f"{np.median(off.cycles):.0f}, on {np.median(on.cycles):.0f}; crossbar reads per "
          f"image mean off {off.counters['cnt_xbar_reads'].mean():.1f}, on "
          f"{on.counters['cnt_xbar_reads'].mean():.1f} (= analytic, checked per image); "
          f"accumulates mean off {off.counters['cnt_aac_ops'].mean():.1f}, on "
          f"{on.counters['cnt_aac_ops'].mean():.1f}; images/min off "
          f"{off.timings['images_per_min']:.1f}, on {on.timings['images_per_min']:.1f}")


@pytest.mark.slow
def test_small_mlp_two_way_on_icarus(small_mapped, digits):
    _need("icarus")
    hw, T = small_mapped.hw(2), 5
    x = digits.x_test[:3]
    res = run_images(hw, x, params=params_for(hw, T, reuse=True), T=T, seed=3,
                     simulator="icarus", stall=0.2, progress=False, reuse=True,
                     trace_layers=True)
    assert res.mismatches == 0, res.details[:5]
    reads_off = T * 2 * (16 * 4 + 4 * 1)
    assert (res.counters["cnt_xbar_reads"] < reads_off).all()


@pytest.mark.slow
def test_random_conv_network_on_icarus(conv_case):
    _need("icarus")
    hw, x, T = conv_case(4, n_way=2, A_in=2, A=1, B=3, convs=2, dense_hidden=True)
    res = run_images(hw, x, params=params_for(hw, T, reuse=True), T=T, seed=3,
                     simulator="icarus", stall=0.2, progress=False, trace_layers=True,
                     reuse=True)
    assert res.mismatches == 0, res.details[:5]


@pytest.mark.slow
@pytest.mark.parametrize("n_way", [1, 2])
def test_hundred_digits_images_on_verilator(mlp32_model, digits, n_way):
    _need("verilator")
    mapped = map_model(mlp32_model, digits.x_train, N=5, Q=4, seed=0, recal_batches=20)
    hw, B, T = mapped.hw(n_way), 100, 10
    off, on = _pair(hw, digits.x_test[:B], T, "verilator", stall=0.1, progress=True)
    _report(f"digits MLP 64-32-10, n={n_way}", hw, T, off, on)


@pytest.mark.slow
def test_lenet5_on_verilator():
    """LeNet-5 (untrained weights, folded as the paper's N = 5, Q = 4, T = 10), n = 2: reuse on
    and off, every layer's activations checked, first-layer counts analytic."""
    _need("verilator")
    torch.manual_seed(0)
    model = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    images = approximate(model, 5, 4, seed=0)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    hw = fold_network(build_spinbayes(images, model, x, 2, 1, seed=0), images)
    off, on = _pair(hw, x[:4], 10, "verilator", progress=True, trace_layers=True)
    _report("LeNet-5, n=2", hw, 10, off, on)
