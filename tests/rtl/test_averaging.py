"""Output scaling, T-sum, floor divider and argmax against the golden HwOutput."""

import numpy as np
import pytest
import torch
from amaranth.back import verilog
from amaranth.sim import Simulator

from spinbayes.golden.hardware import HwOutput
from spinbayes.golden.inference import sample_choices
from spinbayes.rtl.averaging import DIV_BITS, MAC_LATENCY, AveragingBlock, divide_cycles
from spinbayes.rtl.params import RtlParams

PA = RtlParams(rows_max=8, outputs_max=5, groups_total=2)                     # T_max 16
PB = RtlParams(N=2, n_max=1, Q=3, rows_max=3, outputs_max=3, groups_total=1, A_in=2,
               T_max=3, scale_bits=4, offset_bits=5)                          # narrow
PC = RtlParams(rows_max=4, outputs_max=1, groups_total=1, T_max=7, scale_bits=9)
# the trained 64-16-10 digits MLP of conftest, 2-way, T = 10
PNET = RtlParams(n_max=2, rows_max=64, outputs_max=16, groups_total=16, T_max=10)


def m_max(p):
    return 2 ** (p.scale_bits - 1) - 1


def reference(y, n_out):
    """Golden totals, averages and class of per-pass outputs y (T, C); classes < n_out."""
    out = HwOutput(torch.tensor(np.asarray(y, dtype=np.int64))[None], 0,
                   torch.zeros(1, 1, len(y), 1, dtype=torch.long))
    used = HwOutput(out.per_pass[..., :n_out], 0, out.choices)
    return (out.total[0].tolist(), used.averaged[0].tolist(), int(used.prediction[0]))


def configure(ctx, dut, M, B, T, n_out):
    """Drive the ports that hold for a whole image."""
    for port, v in ((dut.M, list(M)), (dut.B, list(B)), (dut.T, T), (dut.n_out, n_out)):
        ctx.set(port, v)


async def one_pass(ctx, dut, s, n, clear=0):
    """pass_valid with S = s (and clear), then the multiply-adds: class c's y appears in
    cycle a + MAC_LATENCY + c (y_count = c + 1), the S port is scrambled after the pass_valid
    cycle (S is latched), classes >= n keep their y. Returns y of this pass."""
    C = dut.params.outputs_max
    ctx.set(dut.S, list(s))
    ctx.set(dut.pass_valid, 1)
    ctx.set(dut.clear, clear)
    await ctx.tick()
    ctx.set(dut.pass_valid, 0)
    ctx.set(dut.clear, 0)
    ctx.set(dut.S, [(-1) ** c * (c + 1) for c in range(C)])   # not read any more
    j = 1                                                      # now in cycle a + 1
    while True:
        assert ctx.get(dut.y_count) == min(n, max(0, j - MAC_LATENCY + 1)), j
        assert ctx.get(dut.busy) == (j <= MAC_LATENCY + n - 1 and n > 0), j
        if j > MAC_LATENCY + n:
            break
        await ctx.tick()
        j += 1
    return list(ctx.get(dut.y))


async def image(ctx, dut, S, M, B, n_out, T=None, y_before=None):
    """Clear, T passes (S: (T, C)), finish, wait for done; checks y, y_count, Y and timing.

    Returns (per-pass y, Y, averaged, cls, cycles from finish to done)."""
    p = dut.params
    C = p.outputs_max
    n = min(n_out, C)
    T = len(S) if T is None else T
    configure(ctx, dut, M, B, T, n_out)
    ctx.set(dut.clear, 1)
    await ctx.tick()
    ctx.set(dut.clear, 0)
    assert list(ctx.get(dut.Y)) == [0] * C and ctx.get(dut.y_count) == 0
    ys, Y = [], np.zeros(C, dtype=np.int64)
    y_prev = list(ctx.get(dut.y))
    for s in S:
        y = await one_pass(ctx, dut, s, n)
        exp = [int(m) * int(v) + int(b) for m, v, b in zip(M, s, B)]
        assert y[:n] == exp[:n] and y[n:] == y_prev[n:]       # unused classes: not computed
        Y[:n] += np.asarray(y[:n])
        assert list(ctx.get(dut.Y)) == Y.tolist()
        ys.append(exp)
        y_prev = y
        await ctx.tick()                                   # a gap between passes
        assert ctx.get(dut.y_count) == n and list(ctx.get(dut.y)) == y
    ctx.set(dut.finish, 1)
    await ctx.tick()
    ctx.set(dut.finish, 0)
    cycles = 1
    while not ctx.get(dut.done):
        assert ctx.get(dut.busy) == 1
        await ctx.tick()
        cycles += 1
        assert cycles < 10_000
    assert ctx.get(dut.busy) == 0
    result = list(ctx.get(dut.averaged)), ctx.get(dut.cls)
    await ctx.tick()
    assert ctx.get(dut.done) == 0                          # a pulse; the results hold
    assert (list(ctx.get(dut.averaged)), ctx.get(dut.cls)) == result
    return ys, Y.tolist(), result[0], result[1], cycles


def check(params, ys, Y, averaged, cls, cycles, n_out):
    """Against the golden HwOutput: totals, averages and class of the classes in use, Y of
    the others 0 (never computed), and the divider's cycle count."""
    n = min(n_out, params.outputs_max)
    total, avg_ref, cls_ref = reference(ys, n_out)
    assert Y[:n] == total[:n] and Y[n:] == [0] * (params.outputs_max - n)
    assert averaged == avg_ref + [0] * (params.outputs_max - n_out)
    assert cls == cls_ref
    assert cycles == (n * divide_cycles(params) + 4 if n else 1)


def test_params_checked():
    with pytest.raises(ValueError, match="params must be an RtlParams, not 3"):
        AveragingBlock(3)


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_ports(params):
    dut = AveragingBlock(params)
    C = params.outputs_max
    widths = {"S": params.sum_bits, "M": params.scale_bits, "B": params.offset_bits,
              "y": params.out_bits, "Y": params.total_bits, "averaged": params.total_bits}
    for name, w in widths.items():
        assert len(getattr(dut, name).as_value()) == C * w, name
    assert len(dut.n_out) == params.output_bits_index + 1 and 2 ** len(dut.n_out) > C
    assert len(dut.T) == params.t_bits and 2 ** len(dut.T) > params.T_max
    assert len(dut.cls) == params.output_bits_index and 2 ** len(dut.cls) >= C
    assert len(dut.mult_ops) == len(dut.avg_ops) == 32
    # out_bits - 1 quotient bits suffice (x < T * 2^(out_bits - 1)), DIV_BITS per cycle
    assert dut.quotient_bits == dut.divide_cycles * DIV_BITS == divide_cycles(params) * DIV_BITS
    assert dut.quotient_bits == max(2 * DIV_BITS, -(-(params.out_bits - 1) // DIV_BITS) * DIV_BITS)
    assert len(dut.y_count) == (params.outputs_max).bit_length()
    Simulator(dut)                      # elaborates


@pytest.mark.parametrize("params", [PA, PB, PC])
def test_random_images_against_golden(params, run_sim):
    """Random S, M, B within the contract, T in {1, 2, 3, 10, T_max}, n_out <= outputs_max;
    counters; small ranges on some images so that ties and halves occur."""
    rng = np.random.default_rng(params.outputs_max * 7 + params.T_max)
    C, w = params.outputs_max, params.widths
    b_lo, b_hi = -(2 ** (params.offset_bits - 1)), 2 ** (params.offset_bits - 1) - 1
    Ts = sorted({t for t in (1, 2, 3, 10, params.T_max) if t <= params.T_max})
    dut = AveragingBlock(params)

    async def tb(ctx):
        mult_ops = avg_ops = 0
        for i in range(3 * len(Ts)):
            T = Ts[i % len(Ts)]
            n_out = int(rng.integers(1, C + 1)) if i % 3 else C
            if i % 2:
                S = rng.integers(-w.sum_max, w.sum_max + 1, (T, C))
                M = rng.integers(-m_max(params), m_max(params) + 1, C)
                B = rng.integers(b_lo, b_hi + 1, C)
            else:                                            # ties and .5 averages
                S = rng.integers(-2, 3, (T, C))
                M = rng.integers(-1, 2, C)
                B = rng.integers(-2, 3, C)
            ys, Y, avg, cls, cycles = await image(ctx, dut, S, M, B, n_out)
            check(params, ys, Y, avg, cls, cycles, n_out)
            mult_ops += T * n_out
            avg_ops += n_out
            assert ctx.get(dut.mult_ops) == mult_ops and ctx.get(dut.avg_ops) == avg_ops

    run_sim(dut, tb)


@pytest.mark.parametrize("total, T, expected", [
    (-5, 10, 0), (-15, 10, -1), (-16, 10, -2), (-14, 10, -1), (-6, 10, -1), (5, 10, 1),
    (4, 10, 0), (15, 10, 2), (-1, 2, 0), (-2, 2, -1), (-3, 2, -1), (3, 2, 2), (-2, 3, -1),
    (-1, 3, 0), (7, 1, 7), (-7, 1, -7), (0, 16, 0), (-8, 16, 0), (-9, 16, -1), (8, 16, 1),
])
def test_negative_totals_and_halves(total, T, expected, run_sim):
    """floor((Y + floor(T/2)) / T) with Python floor semantics: the pass outputs are B only
    (M = 0), the first pass carries the whole total."""
    params = PA
    C = params.outputs_max
    assert (total + T // 2) // T == expected
    dut = AveragingBlock(params)

    async def tb(ctx):
        S = np.zeros((T, C), dtype=np.int64)
        B = [total, -total, 0, 1, -1]
        ys, Y, avg, cls, cycles = await image(ctx, dut, S[:1], [0] * C, B, C, T=T)
        assert Y == B and avg[0] == expected
        check(params, ys * 1 + [[0] * C] * (T - 1), Y, avg, cls, cycles, C)

    run_sim(dut, tb)


def test_argmax_ties_and_unused_classes(run_sim):
    params = PA
    C = params.outputs_max
    dut = AveragingBlock(params)
    cases = [                                   # (Y per class, n_out, class)
        ([3, 3, 1, 0, 0], 5, 0), ([1, 3, 3, 0, 0], 5, 1), ([-4, -4, -4, -4, -4], 5, 0),
        ([-9, -3, -3, -7, -3], 5, 1), ([0, 0, 0, 0, 5], 5, 4),
        ([1, 2, 0, 9, 9], 3, 1),                # a larger unused class is ignored
        ([-5, -6, 100, 100, 100], 2, 0), ([7, 9, 9, 9, 9], 1, 0), ([2, 1, 2, 8, 8], 3, 0),
    ]

    async def tb(ctx):
        for Yc, n_out, expected in cases:
            ys, Y, avg, cls, cycles = await image(ctx, dut, [[0] * C], [0] * C, Yc, n_out)
            assert cls == expected
            check(params, ys, Y, avg, cls, cycles, n_out)

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [PA, PB, PC, PNET])
def test_width_extremes_without_overflow(params, run_sim):
    """T_max passes of max |M| * sum_max + max |B| with either sign: |Y| reaches T_max *
    out_max (the bound total_bits is sized for) and y reaches +-out_max."""
    C, w, mm = params.outputs_max, params.widths, m_max(params)
    b_lo, b_hi = -(2 ** (params.offset_bits - 1)), 2 ** (params.offset_bits - 1) - 1
    # class 0: -out_max (the exact bound), 1: +out_max - 1, 2: alternating signs
    M = np.array([mm, -mm, mm] * C)[:C]
    B = np.array([b_lo, b_hi, b_lo] * C)[:C]
    S = np.tile(np.array([-w.sum_max, -w.sum_max, w.sum_max] * C)[:C], (params.T_max, 1))
    if C > 2:
        S[1::2, 2] = -w.sum_max
    dut = AveragingBlock(params)

    async def tb(ctx):
        for n_out in sorted({1, C}):
            ys, Y, avg, cls, cycles = await image(ctx, dut, S, M, B, n_out)
            assert ys[0][0] == -w.out_max
            assert Y[0] == -params.T_max * w.out_max
            check(params, ys, Y, avg, cls, cycles, n_out)

    run_sim(dut, tb)


def test_every_T_divides_a_spread_of_totals(run_sim):
    """One pass (y = M S + B anywhere in +-out_max) divided by every T in 1 .. T_max."""
    params = PC                                  # one class: short divisions
    w, mm = params.widths, m_max(params)
    rng = np.random.default_rng(11)
    dut = AveragingBlock(params)

    async def tb(ctx):
        for T in range(1, params.T_max + 1):
            for _ in range(4):
                S = [[int(rng.integers(-w.sum_max, w.sum_max + 1))]]
                M = [int(rng.integers(-mm, mm + 1))]
                B = [int(rng.integers(-(2 ** 23), 2 ** 23))]
                _, Y, avg, _, _ = await image(ctx, dut, S, M, B, 1, T=T)
                assert avg == [(Y[0] + T // 2) // T]

    run_sim(dut, tb)


def test_clear_with_pass_abort_empty_finish_and_finish_while_busy(run_sim):
    params = PB
    C = params.outputs_max
    dut = AveragingBlock(params)

    async def tb(ctx):
        configure(ctx, dut, [1] * C, [0] * C, 2, C)
        for _ in range(2):
            await one_pass(ctx, dut, [5, -3, 2], C)
        assert list(ctx.get(dut.Y)) == [10, -6, 4]
        # clear and a pass: Y starts with the pass
        assert await one_pass(ctx, dut, [1, 2, 3], C, clear=1) == [1, 2, 3]
        assert list(ctx.get(dut.Y)) == [1, 2, 3]
        # clear while the multiply-adds run drops them: Y stays 0, y_count 0
        ctx.set(dut.S, [7, 7, 7])
        ctx.set(dut.pass_valid, 1)
        await ctx.tick()
        ctx.set(dut.pass_valid, 0)
        await ctx.tick()
        assert ctx.get(dut.busy) == 1
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for _ in range(MAC_LATENCY + C + 2):
            assert ctx.get(dut.busy) == 0 and list(ctx.get(dut.Y)) == [0] * C
            assert ctx.get(dut.y_count) == 0
            await ctx.tick()
        await one_pass(ctx, dut, [1, 2, 3], C)
        ctx.set(dut.finish, 1)                    # clear during a division aborts it
        await ctx.tick()
        ctx.set(dut.finish, 0)
        for _ in range(5):
            await ctx.tick()
        assert ctx.get(dut.busy) == 1
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for _ in range(4 * (params.total_bits + 1)):
            assert ctx.get(dut.busy) == 0 and ctx.get(dut.done) == 0
            await ctx.tick()
        assert list(ctx.get(dut.Y)) == [0] * C
        ctx.set(dut.n_out, 0)                     # no class in use: done at once, class 0
        ctx.set(dut.finish, 1)
        await ctx.tick()
        ctx.set(dut.finish, 0)
        assert ctx.get(dut.done) == 1 and ctx.get(dut.cls) == 0
        assert list(ctx.get(dut.averaged)) == [0] * C
        await ctx.tick()
        assert ctx.get(dut.done) == 0
        # finish while the multiply-adds of a pass run (busy) is ignored: no division
        configure(ctx, dut, [2] * C, [1] * C, 1, C)
        ctx.set(dut.S, [1, 2, 3])
        ctx.set(dut.pass_valid, 1)
        await ctx.tick()
        ctx.set(dut.pass_valid, 0)
        ctx.set(dut.finish, 1)
        await ctx.tick()
        ctx.set(dut.finish, 0)
        for _ in range(MAC_LATENCY + C + 40):
            assert ctx.get(dut.done) == 0
            await ctx.tick()
        assert ctx.get(dut.busy) == 0 and list(ctx.get(dut.Y)) == [3, 5, 7]

    run_sim(dut, tb)


def test_trained_network_outputs(small_mapped, digits, run_sim):
    """The last layer of the trained 64-16-10 MLP (2-way, T = 10): its n-way sums from the
    golden run, through the block, give the golden per-pass y, averages and class."""
    hw = small_mapped.hw(2)
    last, B_img, T = hw.layers[-1], 6, 10
    C = last.scale.shape[0]
    assert hw.widths(T)[-1].total_bits <= PNET.total_bits
    assert int(last.offset.abs().max()) < 2 ** (PNET.offset_bits - 1)
    choices = sample_choices(2, B_img, T, 5, 2, torch.Generator().manual_seed(9))
    out = hw.run(digits.x_test[:B_img], choices)
    pad = PNET.outputs_max - C
    M = np.pad(last.scale.numpy(), (0, pad)).tolist()
    B = np.pad(last.offset.numpy(), (0, pad)).tolist()
    dut = AveragingBlock(PNET)

    async def tb(ctx):
        for i in range(B_img):
            S = np.pad(out.layers[-1][i].numpy(), ((0, 0), (0, pad)))
            ys, _, avg, cls, _ = await image(ctx, dut, S, M, B, C)
            assert np.array_equal(np.asarray(ys)[:, :C], out.per_pass[i].numpy())
            assert avg[:C] == out.averaged[i].tolist() and cls == int(out.prediction[i])

    run_sim(dut, tb)


@pytest.mark.parametrize("params", [PA, PB, PNET, RtlParams()])
def test_converts_to_verilog(params):
    text = verilog.convert(AveragingBlock(params), emit_src=False)
    assert "module" in text and "averaged" in text
