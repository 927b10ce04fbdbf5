"""Max-pooling on the fly against golden's own pooling (HwLayer.activate) on random shapes."""

import numpy as np
import pytest
import torch
from amaranth.back import verilog

from spinbayes.golden.hardware import HwLayer
from spinbayes.rtl.maxpool import MaxPool


def golden_pool(codes, pool, A):
    """HwLayer.activate on comparators whose counts are ``codes`` (C, H, W): thresholds
    1 .. 2^A - 1 and sign +1 make the thermometer count of S = code equal the code, then the
    layer pools them as the integer reference does."""
    C = codes.shape[0]
    L = 2 ** A - 1
    layer = HwLayer("conv2d", torch.zeros(1, C, 1, 1, 1, dtype=torch.long), 1,
                    thresholds=torch.arange(1, L + 1).repeat(C, 1),
                    sign=torch.ones(C, dtype=torch.long), out_bits=A, pool=pool)
    a = layer.activate(torch.from_numpy(codes)[None])[0].numpy()
    return a


def run(run_sim, dut, layers, *, gap_p=0.0, seed=0):
    """Stream each layer's (C, H, W) codes in raster order, with idle cycles in between at
    probability ``gap_p``; per layer the (out_pos, codes, last, cycle) beats and the cycle
    of each input position."""
    rng = np.random.default_rng(seed)
    got = []

    async def tb(ctx):
        for codes, pool in layers:
            _, H, W = codes.shape
            ctx.set(dut.pool, pool)
            ctx.set(dut.H_out, H)
            ctx.set(dut.W_out, W)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            beats, fed, cycle = [], [], 0
            stream = [codes[:, y, x] for y in range(H) for x in range(W)]
            while stream or ctx.get(dut.out_valid):
                if ctx.get(dut.out_valid):
                    beats.append((ctx.get(dut.out_pos), list(ctx.get(dut.out_codes)),
                                  ctx.get(dut.out_last), cycle))
                if stream and rng.random() >= gap_p:
                    ctx.set(dut.in_valid, 1)
                    ctx.set(dut.in_codes, [int(v) for v in stream.pop(0)])
                    fed.append(cycle)
                else:
                    ctx.set(dut.in_valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.in_valid, 0)
            await ctx.tick()
            assert not ctx.get(dut.out_valid)
            got.append((beats, fed))

    run_sim(dut, tb)
    return got


def check(codes, pool, A, result):
    """The beats equal golden's pooling, in raster order, each one cycle after the input
    position that completes its window."""
    beats, fed = result
    want = golden_pool(codes, pool, A)                       # (C, Hp, Wp)
    C, Hp, Wp = want.shape
    p, W = max(pool, 1), codes.shape[2]
    done = [(yp * p + p - 1) * W + xp * p + p - 1 for yp in range(Hp) for xp in range(Wp)]
    assert [b[3] for b in beats] == [fed[i] + 1 for i in done]
    assert [b[0] for b in beats] == list(range(Hp * Wp))     # raster order, every one once
    assert [b[2] for b in beats] == [0] * (Hp * Wp - 1) + [1]
    got = np.array([b[1] for b in beats]).T.reshape(C, Hp, Wp)
    assert np.array_equal(got, want), (codes.shape, pool)


def test_random_shapes_against_golden(run_sim):
    """Random C (1-4), A (1-3), H_out and W_out (1-12), pool 0-3, layers back to back, the
    producer idle in 30 % of the cycles; then back to back at one position per cycle."""
    rng = np.random.default_rng(14)
    dut = MaxPool(channels=4, code_bits=3, width_max=12, height_max=12, pool_max=3)
    cases = []
    while len(cases) < 40:
        C, A = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        H, W, pool = int(rng.integers(1, 13)), int(rng.integers(1, 13)), int(rng.integers(0, 4))
        if pool > min(H, W):
            continue
        codes = rng.integers(0, 2 ** A, (C, H, W))
        codes = np.concatenate([codes, np.zeros((4 - C, H, W), dtype=codes.dtype)])
        cases.append((codes, pool, A))
    cases.append((rng.integers(0, 8, (4, 12, 12)), 3, 3))              # the extremes
    cases.append((rng.integers(0, 8, (4, 11, 12)), 2, 3))
    layers = [(c, p) for c, p, _ in cases]
    for gap_p, seed in ((0.3, 1), (0.0, 2)):
        results = run(run_sim, dut, layers, gap_p=gap_p, seed=seed)
        for (codes, pool, A), beats in zip(cases, results, strict=True):
            check(codes, pool, A, beats)


def test_lenet5_shapes_and_latency(run_sim):
    """LeNet-5's pooled layers (28x28 and 10x10 positions, pool 2, 1-bit codes): every
    pooled output one cycle after the position that completes its window."""
    rng = np.random.default_rng(5)
    dut = MaxPool(channels=16, code_bits=1, width_max=28, height_max=28, pool_max=2)
    assert dut.line_depth == 14
    c1 = np.concatenate([rng.integers(0, 2, (6, 28, 28)), np.zeros((10, 28, 28), int)])
    c2 = rng.integers(0, 2, (16, 10, 10))
    beats1, beats2 = run(run_sim, dut, [(c1, 2), (c2, 2)])
    check(c1, 2, 1, beats1)
    check(c2, 2, 1, beats2)


def test_ports_and_verilog():
    dut = MaxPool(channels=6, code_bits=2, width_max=28, height_max=20, pool_max=2)
    assert len(dut.in_codes.as_value()) == 12 and len(dut.out_codes.as_value()) == 12
    assert len(dut.pool) == 2 and len(dut.W_out) == 5 and len(dut.out_pos) == 10
    text = verilog.convert(dut, emit_src=False)
    assert "module top" in text and "out_codes" in text


@pytest.mark.parametrize("kw, match", [
    (dict(channels=0), "channels must be a positive integer, not 0"),
    (dict(code_bits=None), "code_bits must be a positive integer, not None"),
    (dict(pool_max=-2), "pool_max must be a positive integer, not -2"),
])
def test_parameters_checked(kw, match):
    base = dict(channels=2, code_bits=1, width_max=4, height_max=4, pool_max=2)
    with pytest.raises(ValueError, match=match):
        MaxPool(**{**base, **kw})
