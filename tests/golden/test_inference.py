"""SpinBayes inference: uniform crossbar choice, reproducibility from recorded choices."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from spinbayes.golden.approximation import CrossbarImages, CrossbarLayer, approximate
from spinbayes.golden.inference import SpinBayesNet, recalibrate_bn, sample_choices


@pytest.mark.parametrize("N, n", [(2, 1), (3, 1), (5, 1), (5, 2), (7, 3), (8, 1)])
def test_choice_is_uniform_over_n_subsets(N, n):
    """Chi-square test over all C(N, n) subsets, fixed seed, significance 0.001."""
    g = torch.Generator().manual_seed(1234)
    ch = sample_choices(2, 500, 20, N, n, g).reshape(-1, n)
    assert (ch[:, 1:] > ch[:, :-1]).all() if n > 1 else True  # sorted and distinct
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(N), n))}
    counts = np.bincount([subsets[tuple(r)] for r in ch.tolist()], minlength=len(subsets))
    assert stats.chisquare(counts).pvalue > 1e-3


def test_chi_square_catches_a_biased_choice():
    """The uniformity test above can fail: a modulo-mapped 3-bit code for N = 5 is biased."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 8, (20000,), generator=g) % 5
    assert stats.chisquare(np.bincount(codes.numpy(), minlength=5)).pvalue < 1e-6


def _net(model, n=1):
    return SpinBayesNet(approximate(model, 5, 4, seed=0), model, n)


def test_recorded_choices_reproduce_output_exactly(small_model, digits):
    net = _net(small_model, 2)
    x = digits.x_test[:37]
    out = net(x, 10, generator=torch.Generator().manual_seed(5))
    assert out.logits.shape == (37, 10, 10)
    assert out.choices.shape == (2, 37, 10, 2)
    again = net(x, choices=out.choices)
    assert torch.equal(again.logits, out.logits)
    # and other choices give another output
    other = net(x, 10, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other.logits, out.logits)


def test_vectorised_passes_equal_one_pass_at_a_time(small_model, digits):
    """The grouped, vectorised forward equals a plain per-image, per-pass loop."""
    net = _net(small_model, 2)
    x = digits.x_test[:6]
    out = net(x, 4, generator=torch.Generator().manual_seed(1))
    for b in range(6):
        for t in range(4):
            h = net.prepare_input(x[b:b + 1])
            for layer, (xbar, stage) in enumerate(zip(net.crossbars, net.stages)):
                ks = out.choices[layer, b, t].tolist()
                z = sum(torch.nn.functional.linear(h, xbar.weight[k]) for k in ks) / len(ks)
                h = stage.post(z)
            torch.testing.assert_close(out.logits[b, t], h[0], rtol=1e-5, atol=1e-5)


def test_each_pass_uses_only_the_chosen_crossbars(small_model, digits):
    """Setting crossbar 4 to zero changes exactly the passes that chose it in layer 0."""
    images = approximate(small_model, 5, 4, seed=0)
    net = SpinBayesNet(images, small_model, 1)
    x = digits.x_test[:20]
    out = net(x, 10, generator=torch.Generator().manual_seed(2))
    images.layers[0].weights[4].zero_()
    after = SpinBayesNet(images, small_model, 1)(x, choices=out.choices)
    used4 = out.choices[0, :, :, 0] == 4
    changed = (after.logits != out.logits).any(-1)
    assert used4.any() and torch.equal(changed, used4)


def test_bad_choices_are_refused(small_model, digits):
    net = _net(small_model, 2)
    x = digits.x_test[:3]
    good = net(x, 2, generator=torch.Generator().manual_seed(0)).choices
    with pytest.raises(ValueError, match=r"choices must have shape \(L=2, B=3, T, n\)"):
        net(x, choices=good[:, :2])
    with pytest.raises(ValueError, match="must lie in 0..4, got 0..5"):
        net(x, choices=torch.where(good == good.max(), 5, good))
    dup = good.clone()
    dup[..., 1] = dup[..., 0]
    with pytest.raises(ValueError, match="names the same crossbar twice"):
        net(x, choices=dup)
    with pytest.raises(ValueError, match="must be integer crossbar indices"):
        net(x, choices=good.float())
    with pytest.raises(ValueError, match="n_way must be an integer in 1..N=5, not 6"):
        _net(small_model, 6)
    with pytest.raises(ValueError, match="NaN"):
        net(torch.full((1, 1, 8, 8), float("nan")), 2)
    with pytest.raises(ValueError, match=r"inputs must lie in \[0, 1\]"):
        net(torch.full((1, 1, 8, 8), 2.0), 2)


def test_bn_recalibration_changes_only_statistics(small_model, digits):
    net = _net(small_model, 1)
    before = [b.clone() for b in net.buffers()]
    recalibrate_bn(net, digits.x_train, 3, generator=torch.Generator().manual_seed(0))
    bn = net.stages[0].bn
    assert not torch.equal(bn.running_mean, small_model.stages[0].bn.running_mean)
    # the trained model's own statistics are untouched (the net holds a copy)
    assert bn.momentum == small_model.stages[0].bn.momentum
    assert not net.training
    # zero batches is a no-op
    snap = [b.clone() for b in net.buffers()]
    recalibrate_bn(net, digits.x_train, 0)
    assert all(torch.equal(a, b) for a, b in zip(snap, net.buffers()))
    assert len(before) == len(snap)


def test_conv_crossbars_match_dense_loop():
    """LeNet-style conv crossbars: grouped forward equals per-pass F.conv2d."""
    from spinbayes.config import Config
    from spinbayes.golden.networks import build_model

    cfg = Config(topology="lenet5", dataset="digits")
    model = build_model(cfg, (1, 28, 28), 10).eval()
    net = SpinBayesNet(approximate(model, 3, 4, seed=0), model, 1)
    x = torch.rand(2, 1, 28, 28)
    out = net(x, 3, generator=torch.Generator().manual_seed(0))
    assert out.logits.shape == (2, 3, 10)
    h = net.prepare_input(x[1:2])
    for layer, (xbar, stage) in enumerate(zip(net.crossbars, net.stages)):
        z = xbar._apply(h, out.choices[layer, 1, 2, 0].item())
        h = stage.post(z)
    torch.testing.assert_close(out.logits[1, 2], h[0], rtol=1e-5, atol=1e-5)


def test_images_and_model_must_agree(small_model):
    images = approximate(small_model, 5, 4)
    short = CrossbarImages(images.layers[:1], 5, 4, 0)
    with pytest.raises(ValueError, match="the images hold 1 layers, the model 2"):
        SpinBayesNet(short, small_model, 1)
    with pytest.raises(ValueError, match="layer 0 holds N=5"):
        CrossbarImages([CrossbarLayer("linear", images.layers[0].weights, 1.0, 4)], 3, 4, 0)
