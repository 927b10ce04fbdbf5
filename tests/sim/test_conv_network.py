"""Convolution networks co-verified under cocotb: the exported core (in CoverifyHarness)
against the integer reference, outputs and every hidden layer's activations.

Default run: a small random convolution network on Icarus with random stalls, its layer
trace logged by the harness, and one image through the per-cycle CoreDriver. Slow: LeNet-5
(untrained weights, folded as the paper's N = 5, Q = 4, T = 10) on Verilator, n = 1 and 2.
"""

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.geometry import geometry_of
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.networks import build_model
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.runner import simulator_available


def _need(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


def _vectors(hw, T):
    """Output vectors of the hidden layers per image: T x their pooled positions."""
    return T * sum(g.H_pool * g.W_pool for g in geometry_of(hw) if not g.is_output)


def test_random_conv_network_on_icarus(conv_case):
    _need("icarus")
    hw, x, T = conv_case(4, n_way=2, A_in=2, A=1, B=3, convs=2, dense_hidden=True)
    res = run_images(hw, x, params=params_for(hw, T), T=T, seed=3, simulator="icarus",
                     stall=0.2, progress=False, trace_layers=True, driver_images=1)
    assert res.mismatches == 0, res.details[:5]
    assert res.passed and res.vfy_errors == 0 and res.vfy_checked > 0
    assert (res.act_beats == _vectors(hw, T)).all()
    assert res.driver["mismatches"] == 0


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    images = approximate(model, 5, 4, seed=0)
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return model, images, x


@pytest.mark.slow
@pytest.mark.parametrize("n_way", [1, 2])
def test_lenet5_on_verilator(lenet, n_way):
    """LeNet-5 (conv 5x5 1->6 pad 2, pool 2, conv 5x5 6->16, pool 2, 400-120-84-10), N = 5,
    Q = 4, T = 10: 3 images bit-exact, every layer, on the RTL's own arbiter draws."""
    _need("verilator")
    model, images, x = lenet
    hw = fold_network(build_spinbayes(images, model, x, n_way, 1, seed=0), images)
    T, B = 10, 3
    res = run_images(hw, x[:B], params=params_for(hw, T), T=T, seed=7, simulator="verilator",
                     progress=False, trace_layers=True)
    assert res.mismatches == 0, res.details[:5]
    assert res.passed and (res.act_beats == _vectors(hw, T)).all()
    reads = res.counters["cnt_xbar_reads"]
    assert (reads == T * n_way * (784 * 7 * 4 + 100 * 38 + 100 + 30 + 21)).all()
    ratio = res.counters["cnt_cycles"] / (reads / n_way)
    print(f"\nLeNet-5 n={n_way}: cycles per image {res.cycles.tolist()}, crossbar reads "
          f"{reads.tolist()} (reads of one crossbar: {(reads // n_way).tolist()}), busy "
          f"cycles per read {np.round(ratio, 3).tolist()}, "
          f"{res.timings['images_per_min']:.2f} images/min")
