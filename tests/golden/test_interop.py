"""Mapping posteriors from bayesian-torch and plain nn.Modules onto crossbars."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spinbayes.golden.approximation import approximate, approximate_posterior, quantize_eq3
from spinbayes.golden.inference import SpinBayesNet
from spinbayes.golden.interop import bayesnet_from_sequential, posterior_from_module


def _plain_mlp(bias=True):
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, bias=bias), nn.BatchNorm1d(16),
                        nn.ReLU(), nn.Linear(16, 10, bias=bias), nn.BatchNorm1d(10))
    with torch.no_grad():
        for m in seq:
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return seq.eval()


def test_plain_module_maps_to_the_same_function():
    seq = _plain_mlp()
    net = bayesnet_from_sequential(seq, input_bits=4)
    net.set_sampling(False)
    x = torch.randint(0, 16, (32, 1, 8, 8)).float() / 15  # already on the 4-bit input grid
    torch.testing.assert_close(net(x), seq(x), rtol=1e-5, atol=1e-5)  # biases folded into BN


def test_deterministic_module_gives_identical_crossbars():
    """sigma = 0: N copies of the same quantized weights, so every pass agrees."""
    seq = _plain_mlp()
    images = approximate_posterior(posterior_from_module(seq), N=5, Q=4, seed=0)
    for layer in images.layers:
        assert all(torch.equal(layer.weights[0], layer.weights[k]) for k in range(5))
    net = bayesnet_from_sequential(seq)
    spin = SpinBayesNet(approximate(net, 5, 4), net, 1)
    out = spin(torch.rand(8, 1, 8, 8), 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.logits, out.logits[:, :1].expand_as(out.logits))


def test_user_sigma_places_a_posterior():
    seq = _plain_mlp()
    post = posterior_from_module(seq, sigma=lambda w: 0.1 * w.abs())
    torch.testing.assert_close(post[0].sigma, 0.1 * seq[1].weight.abs())
    images = approximate_posterior(post, N=5, Q=4, seed=0)
    assert not torch.equal(images.layers[0].weights[0], images.layers[0].weights[1])


def test_bayesian_torch_posterior_is_mapped_exactly():
    bt = pytest.importorskip("bayesian_torch.layers")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), bt.LinearReparameterization(64, 16),
                          nn.BatchNorm1d(16), nn.ReLU(), bt.LinearReparameterization(16, 10),
                          nn.BatchNorm1d(10))
    with torch.no_grad():
        model[1].mu_weight.uniform_(-1, 1)
        model[1].rho_weight.fill_(-3.0)
    post = posterior_from_module(model)
    assert [p.kind for p in post] == ["linear", "linear"]
    torch.testing.assert_close(post[0].mu, model[1].mu_weight.detach())
    torch.testing.assert_close(post[0].sigma, torch.log1p(torch.exp(model[1].rho_weight)).detach())
    # The codes are eq. 3 of the very samples mu + sigma * eps drawn from the seeded generator.
    images = approximate_posterior(post, N=3, Q=4, seed=11)
    g = torch.Generator().manual_seed(11)
    for p, layer in zip(post, images.layers):
        scale = float(p.mu.abs().max())
        for k in range(3):
            eps = torch.randn(p.mu.shape, generator=g)
            assert torch.equal(layer.weights[k], quantize_eq3((p.mu + p.sigma * eps) / scale, 4))
    # Statistically, with fine quantization the N samples recover mu and sigma.
    fine = approximate_posterior(post[:1], N=400, Q=8, seed=1).layers[0]
    w = fine.dequantized()
    inside = post[0].mu.abs() < 0.8 * fine.scale   # away from the clip
    assert (w.mean(0) - post[0].mu)[inside].abs().max() < 0.02
    ratio = (w.std(0) / post[0].sigma)[inside]
    assert 0.85 < ratio.mean() < 1.15


def test_bayesian_torch_lenet_runs_through_spinbayes():
    bt = pytest.importorskip("bayesian_torch.layers")
    model = nn.Sequential(bt.Conv2dReparameterization(1, 6, 5, padding=2), nn.BatchNorm2d(6),
                          nn.ReLU(), nn.MaxPool2d(2), bt.Conv2dReparameterization(6, 16, 5),
                          nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          bt.LinearReparameterization(400, 10), nn.BatchNorm1d(10)).eval()
    net = bayesnet_from_sequential(model)
    images = approximate(net, 3, 4)
    assert [layer.kind for layer in images.layers] == ["conv2d", "conv2d", "linear"]
    assert images.layers[0].padding == 2
    out = SpinBayesNet(images, net, 1)(torch.rand(2, 1, 28, 28), 4)
    assert out.logits.shape == (2, 4, 10)
    torch.testing.assert_close(net.stages[0].weight.weight_sigma,
                               F.softplus(model[0].rho_kernel.detach()))


@pytest.mark.parametrize("seq, msg", [
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU()), "must be followed by BatchNorm"),
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Softmax(-1)),
     r"module 2 \(Softmax\): expected ReLU or Comparator"),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU()),
     "the last weight layer must end with BatchNorm"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.BatchNorm2d(4)), "grouped convolutions"),
    (nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2)), "cannot be mapped onto crossbars"),
])
def test_unsupported_structures_are_named(seq, msg):
    with pytest.raises(ValueError, match=msg):
        bayesnet_from_sequential(seq)


def test_module_without_weight_layers():
    with pytest.raises(ValueError, match="holds no Linear or Conv2d layer"):
        posterior_from_module(nn.Sequential(nn.ReLU()))
