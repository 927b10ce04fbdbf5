"""The inference-mode passes (golden/passes.py) against a plain per-pass loop and against the
reference path of golden/inference.py (training mode / autograd on), on random small MLP and
LeNet-5 networks with non-trivial BatchNorm (negative and zero scales)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spinbayes.config import Config
from spinbayes.golden import passes
from spinbayes.golden.approximation import approximate
from spinbayes.golden.inference import SpinBayesNet, recalibrate_bn, sample_choices
from spinbayes.golden.layers import Comparator
from spinbayes.golden.networks import Stage, build_model

#: Tolerance against the per-pass loop: its convolutions and matrix products run on other
#: shapes (one row, one crossbar), so their sums may be rounded differently.
TOL = dict(rtol=1e-5, atol=1e-5)


def _random_bn(bn: nn.Module, g: torch.Generator) -> None:
    """Scales of both signs (one zero), shifts around the comparators' 1/2."""
    C = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.randn(C, generator=g))
        bn.weight[0] = 0.0
        bn.bias.copy_(0.5 + 0.3 * torch.randn(C, generator=g))


def _net(topology: str, n: int, seed: int = 0) -> SpinBayesNet:
    cfg = Config(topology=topology, hidden=(24,), seed=seed)
    shape = (1, 8, 8) if topology == "mlp" else (1, 28, 28)
    model = build_model(cfg, shape, 10).eval()
    g = torch.Generator().manual_seed(seed)
    for stage in model.stages:
        _random_bn(stage.bn, g)
    net = SpinBayesNet(approximate(model, 4, 4, seed=seed), model, n)
    recalibrate_bn(net, torch.rand(64, *shape, generator=g), 2, batch_size=32, generator=g)
    return net


def _per_pass(net: SpinBayesNet, x: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """One image and one pass at a time: the n chosen crossbars' mean, then stage.post."""
    _, B, T, n = choices.shape
    out = torch.empty(B, T, 10)
    for b in range(B):
        for t in range(T):
            h = net.prepare_input(x[b:b + 1])
            for layer, (xbar, stage) in enumerate(zip(net.crossbars, net.stages)):
                zs = [F.linear(h, xbar.weight[k]) if xbar.kind == "linear" else
                      F.conv2d(h, xbar.weight[k], stride=xbar.stride, padding=xbar.padding)
                      for k in choices[layer, b, t].tolist()]
                h = stage.post(sum(zs) / n)
            out[b, t] = h[0]
    return out


@pytest.mark.parametrize("topology", ["mlp", "lenet5"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("B", [1, 3])
def test_passes_equal_per_pass_loop_and_reference_path(topology, n, B):
    net = _net(topology, n, seed=B)
    shape = (1, 8, 8) if topology == "mlp" else (1, 28, 28)
    x = torch.rand(B, *shape, generator=torch.Generator().manual_seed(7))
    T = 6
    with torch.no_grad():
        fast = net(x, T, generator=torch.Generator().manual_seed(3), keep_layers=True)
    with torch.enable_grad():   # eval mode with autograd: the reference path of inference.py
        ref = net(x, T, generator=torch.Generator().manual_seed(3), keep_layers=True)
    # the same draws, and the ones sample_choices gives for that seed
    want = sample_choices(net.num_layers, B, T, net.N, n, torch.Generator().manual_seed(3))
    assert torch.equal(fast.choices, want) and torch.equal(ref.choices, want)
    torch.testing.assert_close(fast.logits, ref.logits.detach(), **TOL)
    for got, exp in zip(fast.layers[:-1], ref.layers[:-1]):   # comparator outputs: exact
        assert torch.equal(got, exp.detach())
    with torch.no_grad():
        loop = _per_pass(net, x, fast.choices)
    torch.testing.assert_close(fast.logits, loop, **TOL)
    # recorded choices reproduce the output bit for bit
    with torch.no_grad():
        again = net(x, choices=fast.choices)
    assert torch.equal(again.logits, fast.logits)
    # some comparators fire and some do not, so the test exercises the thresholds
    hidden = torch.cat([h.flatten() for h in fast.layers[:-1]])
    assert 0 < hidden.mean() < 1


def test_each_pass_uses_its_own_choices():
    """Changing one crossbar choice of one (image, pass) row changes that row only."""
    net = _net("lenet5", 1)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x, 5, generator=torch.Generator().manual_seed(2))
        ch = out.choices.clone()
        ch[2, 1, 3, 0] = (ch[2, 1, 3, 0] + 1) % net.N
        other = net(x, choices=ch)
    changed = (other.logits != out.logits).any(-1)
    assert changed[1, 3] and changed.sum() == 1


def _stage(act, pool=0, flatten=False, C=6, conv=True):
    bn = (nn.BatchNorm2d if conv else nn.BatchNorm1d)(C).eval()
    g = torch.Generator().manual_seed(C + pool)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(C, generator=g))
        bn.running_var.copy_(torch.rand(C, generator=g) + 0.1)
    _random_bn(bn, g)
    return Stage(nn.Identity(), bn, act, pool=pool, flatten=flatten).eval()


@pytest.mark.parametrize("act, pool, shape", [
    (Comparator(1), 2, (5, 6, 10, 10)),        # 1-bit comparators, pooled: thresholds
    (Comparator(1), 2, (5, 6, 7, 7)),          # odd size: F.max_pool2d after
    (Comparator(2), 2, (5, 6, 10, 10)),        # 3 comparators: BatchNorm, pooled first
    (nn.ReLU(), 2, (5, 6, 12, 12)),
    (Comparator(1), 0, (40, 6)),               # dense
    (None, 0, (40, 6)),                        # last layer: BatchNorm only
])
def test_post_equals_stage_post_bit_for_bit(act, pool, shape):
    stage = _stage(act, pool, flatten=len(shape) == 4, conv=len(shape) == 4)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(*shape, generator=g) * 2
    with torch.no_grad():
        assert torch.equal(passes.post(stage, z), stage.post(z))


def test_thresholds_are_exact_at_the_boundary():
    """[BN(z) >= 1/2] == [s z >= t], also on t itself and its float neighbours."""
    stage = _stage(Comparator(1), C=40, conv=False)
    bn = stage.bn
    t, s = passes.comparator_thresholds(bn)
    assert s is not None and (s < 0).any() and torch.isinf(t[0, 0])   # channel 0: scale 0
    s1 = s.reshape(-1)
    tt = torch.where(torch.isfinite(t), t, 0.0).reshape(-1)
    edge = torch.stack([tt, torch.nextafter(tt, torch.tensor(-1e30)),
                        torch.nextafter(tt, torch.tensor(1e30))]) * s1
    z = torch.cat([edge, torch.randn(2000, 40) * 3])
    with torch.no_grad():
        ref = stage.post(z)
    assert torch.equal(passes.post(stage, z), ref)
    assert ref[:3].any() and not ref[:3].all()
    # cached, and recomputed when the statistics change
    assert passes.comparator_thresholds(bn)[0] is t
    with torch.no_grad():
        bn.running_mean.add_(1.0)
    assert passes.comparator_thresholds(bn)[0] is not t
    assert torch.equal(passes.post(stage, z), stage.post(z))


@pytest.mark.parametrize("rows", [1, 40])    # im2col below the size limit, oneDNN above
def test_conv_equals_f_conv2d(rows):
    g = torch.Generator().manual_seed(rows)
    x, w = torch.rand(rows, 6, 14, 14, generator=g), torch.randn(16, 6, 5, 5, generator=g)
    torch.testing.assert_close(passes.conv(x, w, 1, 2), F.conv2d(x, w, padding=2), **TOL)


@pytest.mark.parametrize("B", [1, 256])
def test_digits_mlp_probs_equal_reference_path_bit_for_bit(B):
    """The default digits MLP (64-64-10, N = 5, T = 10), the network of the throughput bench:
    the eval-mode passes give exactly the reference path's logits and probabilities (the same
    matrix products on the same rows, comparators as exact thresholds)."""
    cfg = Config()
    model = build_model(cfg, (1, 8, 8), 10).eval()
    g = torch.Generator().manual_seed(B)
    for stage in model.stages:
        _random_bn(stage.bn, g)
    net = SpinBayesNet(approximate(model, cfg.N, cfg.Q, seed=0), model, 1)
    recalibrate_bn(net, torch.rand(128, 1, 8, 8, generator=g), 2, batch_size=64, generator=g)
    x = torch.rand(B, 1, 8, 8, generator=g)
    with torch.no_grad():
        fast = net(x, 10, generator=torch.Generator().manual_seed(5))
    with torch.enable_grad():   # eval mode with autograd: the reference path of inference.py
        ref = net(x, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast.choices, ref.choices)
    assert torch.equal(fast.logits, ref.logits.detach())
    assert torch.equal(fast.probs, ref.probs.detach())
    assert fast.logits.shape == (B, 10, 10) and fast.logits.is_contiguous()


@pytest.mark.parametrize("x, message", [
    (torch.full((2, 1, 8, 8), float("nan")), "contains NaN"),
    (torch.full((2, 1, 8, 8), 1.5), r"inputs must lie in \[0, 1\]"),
    (torch.zeros(2, 1, 8, 7), "must have shape"),
    (torch.zeros(0, 1, 8, 8), "holds no images"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.int64), "must be float images"),
])
def test_refused_inputs_still_say_why(x, message):
    """The quick check of the usual input (float32, right shape, in [0, 1]) leaves every
    refusal to the full check, with its message."""
    net = _net("mlp", 1)
    with pytest.raises(ValueError, match=message), torch.no_grad():
        net(x, 2)
    net.check_input(torch.rand(2, 1, 8, 8, dtype=torch.float64))   # the full check accepts it
