"""Eq. 3 quantization and the in-memory approximation (section 3.2)."""

import pytest
import torch

from spinbayes.golden.approximation import CrossbarLayer, approximate, quantize_eq3
from spinbayes.golden.layers import bayes_layers


@pytest.mark.parametrize("theta, expected", [
    # Q = 4: round(clip(theta, -1, 1) * 7)
    (0.0, 0), (1.0, 7), (-1.0, -7), (1.7, 7), (-3.0, -7),
    (0.5, 4),            # 3.5 -> 4: ties away from zero
    (-0.5, -4),          # -3.5 -> -4
    (0.3, 2),            # 2.1 -> 2
    (0.95, 7),           # 6.65 -> 7
    (-0.2, -1),          # -1.4 -> -1
    (1 / 14, 1),         # 0.5 -> 1 (torch.round would give 0)
    (-1 / 14, -1),
])
def test_eq3_hand_picked_values_q4(theta, expected):
    assert quantize_eq3(torch.tensor([theta]), 4).item() == expected


@pytest.mark.parametrize("Q, q_max", [(2, 1), (3, 3), (4, 7), (8, 127)])
def test_eq3_range_follows_Q(Q, q_max):
    codes = quantize_eq3(torch.linspace(-2, 2, 1001), Q)
    assert codes.dtype == torch.int8
    assert codes.min().item() == -q_max and codes.max().item() == q_max
    assert len(codes.unique()) == 2 * q_max + 1


def test_eq3_rejects_nan_and_bad_Q():
    with pytest.raises(ValueError, match="NaN"):
        quantize_eq3(torch.tensor([0.1, float("nan")]), 4)
    with pytest.raises(ValueError, match="Q must be an integer in 2..8, not 1"):
        quantize_eq3(torch.zeros(3), 1)


def test_approximate_maps_posterior_samples(small_model):
    images = approximate(small_model, N=5, Q=4, seed=3)
    layers = bayes_layers(small_model)
    assert len(images) == len(layers) and images.N == 5 and images.Q == 4
    for layer, xbar in zip(layers, images.layers):
        assert xbar.weights.shape == (5, *layer.weight_mu.shape)
        assert xbar.weights.dtype == torch.int8
        assert xbar.weights.abs().max() <= 7
        # the scale is max |mu|, so the mean itself is never clipped
        assert xbar.scale == pytest.approx(layer.weight_mu.abs().max().item())
        # each crossbar is within one quantization step plus the sample's noise of mu
        step = xbar.scale / 7
        mu_codes = layer.weight_mu / step
        dev = (xbar.weights.float() - mu_codes).abs()
        sigma_codes = (layer.weight_sigma / step).detach()
        assert (dev <= 0.5 + 6 * sigma_codes + 1e-4).all()
    # the N samples differ (the posterior has sigma > 0)
    w = images.layers[0].weights
    assert not torch.equal(w[0], w[1])
    # same seed, same images; another seed, other images
    again = approximate(small_model, N=5, Q=4, seed=3)
    assert all(torch.equal(a.weights, b.weights) for a, b in zip(images.layers, again.layers))
    other = approximate(small_model, N=5, Q=4, seed=4)
    assert not torch.equal(other.layers[0].weights, w)


def test_crossbar_layer_checks_codes():
    with pytest.raises(ValueError, match="must lie in -7..7 for Q=4, found 8"):
        CrossbarLayer("linear", torch.full((2, 3, 4), 8, dtype=torch.int8), 1.0, 4)
    with pytest.raises(ValueError, match="must be int8"):
        CrossbarLayer("linear", torch.zeros(2, 3, 4), 1.0, 4)
    with pytest.raises(ValueError, match="must be 3-D"):
        CrossbarLayer("linear", torch.zeros(2, 3, dtype=torch.int8), 1.0, 4)
