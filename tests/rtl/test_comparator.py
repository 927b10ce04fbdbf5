"""Comparator activations against the golden HwLayer.activate and a numpy model."""

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.sim import Simulator

from spinbayes.config import Config
from spinbayes.golden.approximation import CrossbarImages, CrossbarLayer
from spinbayes.golden.hardware import HwLayer, fold_network
from spinbayes.golden.inference import SpinBayesNet, sample_choices
from spinbayes.golden.networks import build_model
from spinbayes.rtl.comparator import ComparatorBank
from spinbayes.rtl.params import RtlParams

PA = RtlParams(rows_max=8, outputs_max=5, groups_total=2)                 # A = 1
PB = RtlParams(rows_max=5, outputs_max=3, groups_total=2, A=2, A_in=2)    # 3 levels
PC = RtlParams(N=3, n_max=3, Q=3, rows_max=3, outputs_max=2, groups_total=1, A=3, A_in=3)
# the trained 64-16-10 digits MLP of conftest, 2-way
PNET = RtlParams(n_max=2, rows_max=64, outputs_max=16, groups_total=16)


def model(S, theta, sign):
    """numpy: act_j = sum_m [sigma_j S_j >= theta_jm], sigma = -1 where sign is 1."""
    s = np.where(sign == 1, -S, S)
    return (s[:, None] >= theta).sum(1)


def golden(S, theta, sign):
    layer = HwLayer("linear", torch.zeros(1, len(S), 1, dtype=torch.long), 1,
                    thresholds=torch.from_numpy(theta), sign=torch.from_numpy(1 - 2 * sign),
                    out_bits=1)
    return layer.activate(torch.from_numpy(S)[None])[0].numpy()


def pack_bits(bits):
    return int(sum(int(b) << j for j, b in enumerate(bits)))


def test_params_checked():
    with pytest.raises(ValueError, match="params must be an RtlParams, not None"):
        ComparatorBank(None)


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_ports(params):
    dut = ComparatorBank(params)
    C = params.outputs_max
    assert len(dut.S.as_value()) == C * params.sum_bits
    assert len(dut.theta.as_value()) == C * params.levels * params.threshold_bits
    assert len(dut.sign) == C and len(dut.act.as_value()) == C * params.A
    assert len(dut.n_out) == params.output_bits_index + 1 and len(dut.ops) == 32
    assert 2 ** len(dut.n_out) > C
    Simulator(dut)                      # elaborates


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_random_against_golden_and_extremes(params, run_sim):
    """Random S, thresholds (clamp values and the register's extremes) and signs, with fixed
    seeds; S at +-sum_max and at the most negative sum_bits value (whose negation needs one
    more bit)."""
    rng = np.random.default_rng(params.A * 10 + params.outputs_max)
    C, L = params.outputs_max, params.levels
    w = params.widths
    s_lo, s_hi = -(2 ** (params.sum_bits - 1)), 2 ** (params.sum_bits - 1) - 1
    t_lo, t_hi = -(2 ** (params.threshold_bits - 1)), 2 ** (params.threshold_bits - 1) - 1
    s_special = [s_lo, s_hi, -w.sum_max, w.sum_max, 0, -1, 1]
    t_special = [-w.sum_max, w.sum_max + 1, t_lo, t_hi, 0, 1, -1]
    dut = ComparatorBank(params)

    async def tb(ctx):
        for step in range(120):
            if step % 3 == 0:       # near each other so comparisons are close calls
                S = rng.integers(-20, 21, C)
                theta = S[:, None] + rng.integers(-2, 3, (C, L))
                theta = np.clip(theta, t_lo, t_hi)
            else:
                S = rng.integers(s_lo, s_hi + 1, C)
                theta = rng.integers(-w.sum_max, w.sum_max + 2, (C, L))
            pick = rng.random(C) < 0.3
            S = np.where(pick, rng.choice(s_special, C), S)
            pick = rng.random((C, L)) < 0.3
            theta = np.where(pick, rng.choice(t_special, (C, L)), theta)
            theta = np.sort(theta, 1) if step % 2 else theta    # thermometer or any order
            sign = rng.integers(0, 2, C)
            ctx.set(dut.S, S.tolist())
            ctx.set(dut.theta, theta.tolist())
            ctx.set(dut.sign, pack_bits(sign))
            act = list(ctx.get(dut.act))
            assert act == model(S, theta, sign).tolist()
            in_contract = (np.abs(S) <= w.sum_max).all()
            if in_contract:
                assert act == golden(S, theta, sign).tolist()

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_clamped_thresholds_always_on_and_off(params, run_sim):
    """theta = -sum_max fires for every in-contract S and sign; sum_max + 1 never fires."""
    C, L, w = params.outputs_max, params.levels, params.widths
    dut = ComparatorBank(params)

    async def tb(ctx):
        for s in (-w.sum_max, -w.sum_max + 1, -1, 0, 1, w.sum_max - 1, w.sum_max):
            for sign in (0, 2 ** C - 1):
                ctx.set(dut.S, [s] * C)
                ctx.set(dut.sign, sign)
                ctx.set(dut.theta, [[-w.sum_max] * L] * C)
                assert list(ctx.get(dut.act)) == [L] * C
                ctx.set(dut.theta, [[w.sum_max + 1] * L] * C)
                assert list(ctx.get(dut.act)) == [0] * C

    run_sim(dut, tb)


def test_ops_counts_active_outputs_times_levels(run_sim):
    params = PB
    C, L = params.outputs_max, params.levels
    dut = ComparatorBank(params)
    rng = np.random.default_rng(1)

    async def tb(ctx):
        ops = 0
        for _ in range(40):
            valid = int(rng.random() < 0.7)
            n_out = int(rng.integers(0, 2 ** len(dut.n_out)))
            ctx.set(dut.valid, valid)
            ctx.set(dut.n_out, n_out)
            assert ctx.get(dut.ops) == ops                  # registered
            await ctx.tick()
            ops += valid * min(n_out, C) * L
            assert ctx.get(dut.ops) == ops

    run_sim(dut, tb)


def test_trained_network_thresholds(small_mapped, digits, run_sim):
    """fold_network's thresholds and signs of the trained 64-16-10 MLP, 2-way; the hidden
    layer's n-way sums of 40 images x 3 passes give exactly the golden activations."""
    hw = small_mapped.hw(2)
    layer = hw.layers[0]
    C = layer.thresholds.shape[0]
    assert C <= PNET.outputs_max and layer.thresholds.shape[1] == PNET.levels
    assert hw.widths()[0].sum_bits <= PNET.sum_bits
    choices = sample_choices(2, 40, 3, 5, 2, torch.Generator().manual_seed(4))
    out = hw.run(digits.x_test[:40], choices)
    S = out.layers[0].reshape(-1, C).numpy()
    expected = out.activations[0].reshape(-1, C).numpy()
    pad = PNET.outputs_max - C
    theta = np.pad(layer.thresholds.numpy(), ((0, pad), (0, 0)))
    sign = np.pad((layer.sign.numpy() < 0).astype(int), (0, pad))
    dut = ComparatorBank(PNET)

    async def tb(ctx):
        ctx.set(dut.theta, theta.tolist())
        ctx.set(dut.sign, pack_bits(sign))
        ctx.set(dut.n_out, C)
        for s, e in zip(S, expected):
            ctx.set(dut.S, np.pad(s, (0, pad)).tolist())
            assert list(ctx.get(dut.act))[:C] == e.tolist()

    run_sim(dut, tb)
    assert len(np.unique(expected)) == 2                  # both outputs occur


def _hand_folded_layer(act_bits):
    """fold_network on a dense 4 -> 3 layer with hand-set BatchNorm: gamma = 1, -1 (sigma =
    -1) and 0 with beta = 0.7 (a constant comparator: thresholds clamp to -sum_max)."""
    cfg = Config(hidden=(3,), act_bits=act_bits, input_bits=2)
    model = build_model(cfg, (1, 2, 2), 2).eval()
    bn = model.stages[0].bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -1.0, 0.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.1, 0.7]))
        bn.running_mean.copy_(torch.tensor([0.5, -2.0, 0.0]))
        bn.running_var.copy_(torch.tensor([1.0, 4.0, 1.0]))
    codes = torch.tensor([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]] * 2, dtype=torch.int8)
    out = torch.ones(2, 2, 3, dtype=torch.int8)
    images = CrossbarImages([CrossbarLayer("linear", codes, 7.0, 4),
                             CrossbarLayer("linear", out, 7.0, 4)], 2, 4, 0)
    hw = fold_network(SpinBayesNet(images, model, 1), images)
    return hw.layers[0], hw.widths()[0].sum_max


@pytest.mark.parametrize("act_bits", [1, 2])
def test_hand_folded_thresholds_over_the_whole_range(act_bits, run_sim):
    """Every S in -sum_max .. sum_max on each output against HwLayer.activate."""
    layer, sum_max = _hand_folded_layer(act_bits)
    params = RtlParams(N=2, n_max=1, rows_max=4, outputs_max=3, groups_total=1, A_in=2,
                       A=act_bits)
    assert layer.sign.tolist() == [1, -1, 1]
    assert int(layer.thresholds[2].min()) == -sum_max       # gamma = 0, beta >= every t_m
    assert layer.thresholds.shape[1] == params.levels and sum_max <= params.widths.sum_max
    S = torch.arange(-sum_max, sum_max + 1)[:, None].expand(-1, 3)
    expected = layer.activate(S)
    assert expected[:, 1].unique().numel() == 2 ** act_bits   # every count occurs
    dut = ComparatorBank(params)

    async def tb(ctx):
        ctx.set(dut.theta, layer.thresholds.tolist())
        ctx.set(dut.sign, pack_bits((layer.sign < 0).tolist()))
        for s, e in zip(S.tolist(), expected.tolist()):
            ctx.set(dut.S, s)
            assert list(ctx.get(dut.act)) == e

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [PA, PB, PNET, RtlParams()])
def test_converts_to_verilog(params):
    text = verilog.convert(ComparatorBank(params), emit_src=False)
    assert "module" in text and "act" in text
