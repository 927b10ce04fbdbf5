"""Adder-accumulator against a Python model and, end to end, against the golden AAC."""

import numpy as np
import pytest
import torch
from amaranth import Module, Signal
from amaranth.back import verilog
from amaranth.sim import Simulator

from spinbayes.golden.cells import encode_weights
from spinbayes.golden.hardware import crossbar_mvm_bitserial
from spinbayes.rtl.aac import AdderAccumulator
from spinbayes.rtl.crossbar import CrossbarMemory
from spinbayes.rtl.params import RtlParams

PA = RtlParams(N=3, n_max=3, Q=4, R=4, A_in=3, rows_max=10, outputs_max=4, groups_total=3)
PB = RtlParams(N=2, n_max=2, Q=3, R=3, A_in=4, rows_max=7, outputs_max=3, groups_total=3)
PC = RtlParams(N=4, n_max=2, Q=5, R=2, A_in=2, A=3, rows_max=5, outputs_max=2,
               groups_total=4)


def wrap(x, bits):
    return (x + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)


def set_p(ctx, dut, params, p):
    """p: (n_max, cols_max) ints."""
    for x in range(params.n_max):
        for c in range(params.cols_max):
            ctx.set(dut.p[x][c], int(p[x][c]))


def get_S(ctx, dut, params):
    return [ctx.get(dut.S[j]) for j in range(params.outputs_max)]


def test_params_checked():
    with pytest.raises(ValueError, match="params must be an RtlParams"):
        AdderAccumulator(None)


def test_ports():
    dut = AdderAccumulator(PA)
    assert len(dut.S.as_value()) == PA.outputs_max * PA.sum_bits
    assert len(dut.p.as_value()) == PA.n_max * PA.cols_max * PA.adc_bits
    assert len(dut.p_mask) == PA.n_max and len(dut.ops) == 32
    assert 2 ** len(dut.plane) >= PA.A_max
    Simulator(dut)                      # elaborates (no UnusedElaboratable warning)


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_random_reads_against_model(params, run_sim):
    """Random codes, planes, masks, clear/valid patterns; S one cycle after each read."""
    rng = np.random.default_rng(params.R * 100 + params.Q)
    k, R = params.k_cells, params.R
    dut = AdderAccumulator(params)

    async def tb(ctx):
        S = np.zeros(params.outputs_max, dtype=np.int64)
        ops = 0
        for step in range(150):
            valid = int(rng.random() < 0.8)
            clear = int(rng.random() < 0.1 or step == 0)
            plane = int(rng.integers(0, params.A_max))
            mask = rng.integers(0, 2, size=params.n_max)
            p = rng.integers(-4 * R, 4 * R + 1, size=(params.n_max, params.cols_max))
            ctx.set(dut.valid, valid)
            ctx.set(dut.clear, clear)
            ctx.set(dut.plane, plane)
            ctx.set(dut.p_mask, int(sum(int(b) << x for x, b in enumerate(mask))))
            set_p(ctx, dut, params, p)
            assert get_S(ctx, dut, params) == S.tolist()      # registered: not yet
            contrib = (mask[:, None] * p).sum(0).reshape(params.outputs_max, k).sum(1)
            if clear:
                S[:] = 0
            if valid:
                S = wrap(S + (contrib << plane), params.sum_bits)
                ops += 1
            await ctx.tick()
            assert get_S(ctx, dut, params) == S.tolist()
            assert ctx.get(dut.ops) == ops
        # clear alone zeroes; ops keeps counting across clears
        ctx.set(dut.valid, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert get_S(ctx, dut, params) == [0] * params.outputs_max
        assert ctx.get(dut.ops) == ops

    run_sim(dut, tb)


def _golden_reads(params, a, codes):
    """Golden p of every (plane, group) read for each crossbar, and the per-crossbar acc.

    a: (rows,) input codes (A_max bits); codes: (n, out, rows). Returns p (n, A, G, cols) and
    acc (n, out).
    """
    ps, accs = [], []
    for c in codes:
        acc, p = crossbar_mvm_bitserial(torch.from_numpy(a[None]), torch.from_numpy(c),
                                        params.A_max, params.Q, params.R)
        assert torch.equal(acc[0], torch.from_numpy(a) @ torch.from_numpy(c).T)
        ps.append(p[0].numpy())
        accs.append(acc[0].numpy())
    return np.stack(ps), np.stack(accs)


async def _feed(ctx, dut, params, p, n, S_expect):
    """Feed every read LSB-plane first, groups inner (the reference order), check S."""
    nA, G = p.shape[1], p.shape[2]
    ctx.set(dut.p_mask, 2 ** n - 1)
    first = True
    for b in range(nA):
        for g in range(G):
            ctx.set(dut.valid, 1)
            ctx.set(dut.clear, int(first))
            ctx.set(dut.plane, b)
            slots = np.zeros((params.n_max, params.cols_max), dtype=np.int64)
            slots[:n] = p[:, b, g]
            slots[n:] = np.random.default_rng(b * G + g).integers(-4 * params.R,
                                                                  4 * params.R + 1,
                                                                  size=slots[n:].shape)
            set_p(ctx, dut, params, slots)    # unused slots carry junk: masked off
            first = False
            await ctx.tick()
    ctx.set(dut.valid, 0)
    ctx.set(dut.clear, 0)
    assert get_S(ctx, dut, params) == S_expect.tolist()


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_end_to_end_against_golden(params, run_sim):
    """S == sum over the chosen crossbars of a @ codes.T, for every n = 1 .. n_max."""
    rng = np.random.default_rng(11 + params.R)
    q_max = 2 ** (params.Q - 1) - 1
    rows, out = params.rows_max, params.outputs_max
    dut = AdderAccumulator(params)

    async def tb(ctx):
        for _ in range(3):
            for n in range(1, params.n_max + 1):
                codes = rng.integers(-q_max, q_max + 1, size=(n, out, rows))
                a = rng.integers(0, 2 ** params.A_max, size=rows)
                p, acc = _golden_reads(params, a, codes)
                await _feed(ctx, dut, params, p, n, acc.sum(0))

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [PA, PB, PC, RtlParams(N=2, n_max=2, rows_max=16,
                                                          outputs_max=2, groups_total=4)])
@pytest.mark.parametrize("sign", [1, -1])
def test_width_extremes_do_not_overflow(params, sign, run_sim):
    """All inputs at 2^A_max - 1 against all weights at +-q_max on n_max crossbars: S is
    exactly +-sum_max, which needs every one of sum_bits (no overflow, the width is tight)."""
    q_max = 2 ** (params.Q - 1) - 1
    rows, out, n = params.rows_max, params.outputs_max, params.n_max
    codes = np.full((n, out, rows), sign * q_max)
    a = np.full(rows, 2 ** params.A_max - 1)
    p, acc = _golden_reads(params, a, codes)
    sum_max = params.widths.sum_max
    assert (acc.sum(0) == sign * sum_max).all()
    assert sum_max.bit_length() + 1 == params.sum_bits
    dut = AdderAccumulator(params)

    async def tb(ctx):
        await _feed(ctx, dut, params, p, n, acc.sum(0))

    run_sim(dut, tb)


def test_crossbars_into_aac(run_sim):
    """n CrossbarMemory blocks programmed through their write ports, read every (plane,
    group) with p_valid driving the AAC one cycle later, as the network controller does."""
    params = PA
    rng = np.random.default_rng(5)
    q_max = 2 ** (params.Q - 1) - 1
    n, k, R = params.n_max, params.k_cells, params.R
    rows = params.rows_max
    G = -(-rows // R)
    out = params.outputs_max
    codes = rng.integers(-q_max, q_max + 1, size=(n, out, rows))
    a = rng.integers(0, 2 ** params.A_max, size=rows)
    _, acc = _golden_reads(params, a, codes)

    m = Module()
    xbars = []
    for x in range(n):
        xb = CrossbarMemory(params)
        m.submodules[f"xbar{x}"] = xb
        xbars.append(xb)
    m.submodules.aac = aac = AdderAccumulator(params)
    for x, xb in enumerate(xbars):
        m.d.comb += aac.p[x].eq(xb.p)
    plane = Signal(range(params.A_max))
    m.d.comb += [aac.valid.eq(xbars[0].p_valid), aac.p_mask.eq(2 ** n - 1)]
    m.d.sync += aac.plane.eq(plane)                 # the read's plane, one cycle later

    async def tb(ctx):
        for x, xb in enumerate(xbars):
            lv = encode_weights(codes[x], params.Q)               # (out, rows, k)
            ctx.set(xb.w_en, 1)
            for i in range(rows):
                for j in range(out):
                    for c in range(k):
                        ctx.set(xb.w_row, i)
                        ctx.set(xb.w_col, j * k + c)
                        ctx.set(xb.w_level, int(lv[j, i, c]))
                        await ctx.tick()
            ctx.set(xb.w_en, 0)
        ctx.set(aac.clear, 1)
        await ctx.tick()
        ctx.set(aac.clear, 0)
        for b in range(params.A_max):
            for g in range(G):
                bits = sum(((int(a[g * R + r]) >> b) & 1) << r
                           for r in range(R) if g * R + r < rows)
                for xb in xbars:
                    ctx.set(xb.rd_en, 1)
                    ctx.set(xb.rd_group, g)
                    ctx.set(xb.rd_bits, bits)
                ctx.set(plane, b)
                await ctx.tick()
        for xb in xbars:
            ctx.set(xb.rd_en, 0)
        await ctx.tick()
        assert [ctx.get(aac.S[j]) for j in range(out)] == acc.sum(0).tolist()
        assert ctx.get(aac.ops) == params.A_max * G

    run_sim(m, tb)


@pytest.mark.parametrize("params", [PC, RtlParams()])
def test_converts_to_verilog(params):
    text = verilog.convert(AdderAccumulator(params), emit_src=False)
    assert "module" in text
