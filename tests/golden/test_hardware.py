"""The integer hardware mode: the bit-exact contract of docs/HARDWARE.md."""

import numpy as np
import pytest
import torch
from torch import nn

from spinbayes.config import Config
from spinbayes.golden.approximation import CrossbarImages, CrossbarLayer, approximate
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.hardware import (
    HwOutput,
    compare_with_float,
    crossbar_mvm_bitserial,
    fold_network,
    layer_widths,
    signed_bits,
)
from spinbayes.golden.inference import SpinBayesNet, sample_choices
from spinbayes.golden.networks import build_model


@pytest.mark.parametrize("max_abs, bits", [(0, 1), (1, 2), (7, 4), (8, 5), (16, 6), (6720, 14)])
def test_signed_bits(max_abs, bits):
    assert signed_bits(max_abs) == bits
    assert -(2 ** (bits - 1)) <= -max_abs and max_abs <= 2 ** (bits - 1) - 1


def test_bitserial_read_and_aac_equal_the_integer_mvm():
    """200 random crossbars: ADC codes within +-4R, shift-add of reads == a @ W.T exactly."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        Q, R, A = int(rng.integers(2, 6)), int(rng.choice([1, 3, 4, 8])), int(rng.integers(1, 9))
        rows, out, B = int(rng.integers(1, 70)), int(rng.integers(1, 12)), 3
        q = 2 ** (Q - 1) - 1
        codes = torch.from_numpy(rng.integers(-q, q + 1, (out, rows)))
        a = torch.from_numpy(rng.integers(0, 2 ** A, (B, rows)))
        acc, p = crossbar_mvm_bitserial(a, codes, A, Q, R)
        assert torch.equal(acc, a @ codes.T)
        assert p.abs().max() <= 4 * R


@pytest.mark.parametrize("Q, A, n, rows", [(4, 4, 1, 64), (4, 4, 5, 64), (4, 1, 2, 400),
                                           (3, 8, 3, 784), (5, 2, 1, 7)])
def test_widths_hold_the_extremes_and_are_tight(Q, A, n, rows):
    """All inputs at full scale against all weights at +-q_max, on every chosen crossbar."""
    N, q = max(n, 2), 2 ** (Q - 1) - 1
    w = layer_widths(rows, 3, A, Q, 4, n)
    for sign in (1, -1):
        codes = torch.full((N, 3, rows), sign * q, dtype=torch.int8)
        layer = CrossbarLayer("linear", codes, 1.0, Q)
        images = CrossbarImages([layer], N, Q, 0)
        a = torch.full((1, rows), 2 ** A - 1, dtype=torch.int64)
        acc, _ = crossbar_mvm_bitserial(a, codes[0].long(), A, Q)
        S = acc * n  # n chosen crossbars, all identical here
        assert int(S.abs().max()) == w.sum_max
        assert -(2 ** (w.sum_bits - 1)) <= int(S.min()) and int(S.max()) < 2 ** (w.sum_bits - 1)
        assert w.sum_max >= 2 ** (w.sum_bits - 2)  # one bit fewer would overflow
        assert len(images) == 1
    assert w.acc_max == rows * (2 ** A - 1) * q and w.adc_bits == signed_bits(16)


def test_output_widths_hold_the_extremes():
    w = layer_widths(64, 10, 1, 4, 4, 2, T=10, m_max=32767, b_max=10 ** 6)
    assert w.out_max == 32767 * w.sum_max + 10 ** 6
    assert w.out_max < 2 ** (w.out_bits - 1) and 10 * w.out_max < 2 ** (w.total_bits - 1)


def _one_layer_net(gamma, beta, mean, var, act_bits=1):
    """Dense 4 -> 3 hidden layer (with a dummy 3 -> 2 output layer) and hand-set BatchNorm."""
    cfg = Config(hidden=(3,), act_bits=act_bits, input_bits=2)
    model = build_model(cfg, (1, 2, 2), 2).eval()
    bn = model.stages[0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.copy_(torch.tensor(mean))
        bn.running_var.copy_(torch.tensor(var))
    codes = torch.tensor([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]] * 2, dtype=torch.int8)
    out = torch.ones(2, 2, 3, dtype=torch.int8)
    images = CrossbarImages([CrossbarLayer("linear", codes, 7.0, 4),
                             CrossbarLayer("linear", out, 7.0, 4)], 2, 4, 0)
    return SpinBayesNet(images, model, 1), images


def test_folded_thresholds_by_hand():
    """alpha = s / (q_max (2^A - 1)) = 7 / (7 * 3) = 1/3, so z = S / 3 for n = 1.

    neuron 0: g = 1/sqrt(1+eps) ~ 1, mu 0, beta 0: fires iff S/3 >= 1/2 -> S >= 2 (ceil 1.5)
    neuron 1: gamma = -1: fires iff -(S/3) >= 1/2 -> S <= -1.5 -> -S >= 2
    neuron 2: gamma = 0, beta = 0.7 >= 1/2: always fires (threshold clamps to -sum_max)
    """
    net, images = _one_layer_net([1.0, -1.0, 0.0], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0],
                                 [1.0, 1.0, 1.0])
    hw = fold_network(net, images)
    layer = hw.layers[0]
    assert layer.sign.tolist() == [1, -1, 1]
    sum_max = hw.widths()[0].sum_max
    assert layer.thresholds[:, 0].tolist() == [2, 2, -sum_max]
    S = torch.tensor([[1, 0, 5], [2, -2, -9], [3, -1, 0]])
    assert layer.activate(S).tolist() == [[0, 0, 1], [1, 1, 1], [1, 0, 1]]


def test_thermometer_thresholds_by_hand():
    """A = 2: thresholds t = 1/6, 1/2, 5/6 on z = S/3 -> S >= 0.5, 1.5, 2.5 -> 1, 2, 3."""
    net, images = _one_layer_net([1.0, 1.0, 1.0], [0.0] * 3, [0.0] * 3, [1.0] * 3, act_bits=2)
    layer = fold_network(net, images).layers[0]
    assert layer.thresholds[0].tolist() == [1, 2, 3]
    S = torch.tensor([[0, 1, 3], [2, 4, -1]])
    assert layer.activate(S).tolist() == [[0, 1, 3], [2, 3, 0]]


def test_averaging_rounds_half_up():
    y = torch.tensor([[[-5, 5, 15, 7]] + [[0, 0, 0, 0]] * 9])       # B=1, T=10, C=4
    out = HwOutput(y, 0, torch.zeros(1, 1, 10, 1, dtype=torch.long))
    assert out.total.tolist() == [[-5, 5, 15, 7]]
    assert out.averaged.tolist() == [[0, 1, 2, 1]]   # -0.5 -> 0, 0.5 -> 1, 1.5 -> 2, 0.7 -> 1
    assert out.prediction.tolist() == [2]
    tie = HwOutput(torch.tensor([[[3, 3, 1]]]), 0, torch.zeros(1, 1, 1, 1, dtype=torch.long))
    assert tie.prediction.tolist() == [0]            # lowest index on ties


@pytest.mark.parametrize("n_way", [1, 2])
def test_hardware_mode_agrees_with_float_on_digits(small_model, digits, n_way):
    images = approximate(small_model, 5, 4, seed=0)
    net = build_spinbayes(images, small_model, digits.x_train, n_way, 4, seed=0)
    hw = fold_network(net, images)
    agr = compare_with_float(net, hw, digits.x_test, digits.y_test, 10,
                             torch.Generator().manual_seed(0))
    assert all(h >= 99.9 for h in agr.hidden_agreement)   # comparator outputs
    # host eq. 4 from the integer outputs, and the hardware's class against the same
    # quantity in float (the mean of logits), agree but for rounding of M_c, B_c to 2^-F;
    # the hardware class against eq. 4 (mean of probabilities) is a different statistic.
    assert agr.host_agreement >= 99.0 and agr.logit_agreement >= 99.0
    assert agr.hw_agreement >= 90.0
    assert agr.max_logit_error < 1e-2
    assert abs(agr.host_accuracy - agr.float_accuracy) <= 1.0


def test_recorded_choices_reproduce_the_integer_outputs(small_model, digits):
    images = approximate(small_model, 5, 4, seed=0)
    net = build_spinbayes(images, small_model, digits.x_train, 2, 2, seed=0)
    hw = fold_network(net, images)
    ch = sample_choices(2, 20, 10, 5, 2, torch.Generator().manual_seed(3))
    a, b = hw.run(digits.x_test[:20], ch), hw.run(digits.x_test[:20], ch)
    assert torch.equal(a.per_pass, b.per_pass) and a.per_pass.dtype == torch.int64
    with pytest.raises(ValueError, match=r"choices must have shape \(L=2, B=20, T, n=2\)"):
        hw.run(digits.x_test[:20], ch[:, :5])


def test_lenet_integer_mode_matches_float_activations():
    """Convolution via im2col and max-pooling of thermometer codes, against the float net."""
    cfg = Config(topology="lenet5", dataset="digits")
    model = build_model(cfg, (1, 28, 28), 10).eval()
    images = approximate(model, 3, 4, seed=0)
    x = torch.rand(64, 1, 28, 28)
    net = SpinBayesNet(images, model, 1)
    from spinbayes.golden.inference import recalibrate_bn
    recalibrate_bn(net, x, 2, batch_size=32, generator=torch.Generator().manual_seed(0))
    hw = fold_network(net, images)
    agr = compare_with_float(net, hw, x[:8], torch.zeros(8, dtype=torch.long), 3,
                             torch.Generator().manual_seed(1))
    assert len(agr.hidden_agreement) == 4
    assert all(h >= 99.9 for h in agr.hidden_agreement)


def test_relu_networks_are_refused(digits):
    model = build_model(Config(activation="relu", hidden=(8,)), digits.image_shape, 10).eval()
    images = approximate(model, 2, 4)
    with pytest.raises(ValueError, match="needs comparator activations, not ReLU"):
        fold_network(SpinBayesNet(images, model, 1), images)
    assert isinstance(model.stages[0].act, nn.ReLU)


def test_analog_crossbar_in_ideal_mode_equals_the_integer_reference():
    """Every ADC code of the behavioural array equals the reference's p, read by read."""
    from spinbayes.golden.crossbar import Crossbar

    rng = np.random.default_rng(5)
    for _ in range(40):
        Q, A = int(rng.choice([3, 4, 5])), int(rng.integers(1, 5))
        rows, out, q = int(rng.integers(1, 40)), int(rng.integers(1, 6)), 2 ** (Q - 1) - 1
        codes = rng.integers(-q, q + 1, (out, rows))
        a = torch.from_numpy(rng.integers(0, 2 ** A, (1, rows)))
        _, p = crossbar_mvm_bitserial(a, torch.from_numpy(codes), A, Q, 4)
        xbar = Crossbar.from_weights(codes, Q)
        for b in range(A):
            bits = ((a[0] >> b) & 1).numpy()
            assert np.array_equal(xbar.mvm_bitplane(bits), p[0, b].numpy())
