"""Arbiter: the RTL's selections equal golden.arbiter (Arbiter over a DeviceBank of
EmulatedRng twins, and arbiter_choices from a seed), draw for draw."""

import numpy as np
import pytest
from amaranth.back import verilog

from spinbayes.golden.arbiter import Arbiter as GoldenArbiter
from spinbayes.golden.arbiter import DeviceBank, arbiter_choices, device_seed, expected_draws
from spinbayes.golden.mtj import EmulatedRng, p_sw, threshold_for
from spinbayes.rtl.arbiter import Arbiter

W = 16
THR = threshold_for(float(p_sw(230e-6)), W)    # = EmulatedRng.from_current(...).threshold


async def until_done(ctx, dut, limit=5000):
    """Tick until ``done`` (bounded, so a hung arbiter fails instead of hanging the test)."""
    for _ in range(limit):
        await ctx.tick()
        if ctx.get(dut.done):
            return
    raise AssertionError(f"no done within {limit} cycles")


def unpack(value, width, n):
    return tuple((value >> (s * width)) & ((1 << width) - 1) for s in range(n))


def drive(run_sim, dut, seeds, threshold, n_way, passes, *, gap=0):
    """Seed device d with seeds[d], then run ``passes`` start/done selections, ``gap`` idle
    cycles between them (0: the next start is asserted in the done cycle). Checks the
    handshake on the way; returns per pass (indices, mask, cycles start->done) and the
    final counters."""
    res = {"indices": [], "masks": [], "cycles": []}

    async def tb(ctx):
        ctx.set(dut.threshold, threshold)
        for d, s in enumerate(seeds):
            ctx.set(dut.seed, s)
            ctx.set(dut.seed_dev, d)
            ctx.set(dut.seed_load, 1)
            await ctx.tick()
        ctx.set(dut.seed_load, 0)
        ctx.set(dut.n_way, n_way)
        for _ in range(passes):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                await ctx.tick()
                cycles += 1
                assert cycles < 10_000
            assert not ctx.get(dut.busy)
            mask = ctx.get(dut.mask)
            idx = unpack(ctx.get(dut.indices.as_value()), dut.index_bits, dut.n_max)
            res["masks"].append(mask)
            res["indices"].append(idx)
            res["cycles"].append(cycles)
            for _ in range(gap):        # done is a pulse; mask and indices hold
                await ctx.tick()
                assert not ctx.get(dut.done) and not ctx.get(dut.busy)
                assert ctx.get(dut.mask) == mask
                assert unpack(ctx.get(dut.indices.as_value()), dut.index_bits,
                              dut.n_max) == idx
        res["draws"] = ctx.get(dut.draws)
        res["rejections"] = ctx.get(dut.rejections)
        res["stuck"] = ctx.get(dut.stuck)

    run_sim(dut, tb)
    return res


def check_selection(res, n_way, n_max):
    for idx, mask in zip(res["indices"], res["masks"]):
        chosen = [c for c in range(mask.bit_length()) if mask >> c & 1]
        assert len(chosen) == n_way
        assert list(idx) == chosen + [0] * (n_max - n_way)      # ascending, rest 0


# --- parameters and ports ------------------------------------------------------------------

def test_bad_parameters():
    with pytest.raises(ValueError, match="N must be a positive integer, not 0"):
        Arbiter(0, 1)
    with pytest.raises(ValueError, match="N must be a positive integer, not 2.0"):
        Arbiter(2.0, 1)
    with pytest.raises(ValueError, match=r"n_max must be an integer in 1..N=5, not 6"):
        Arbiter(5, 6)
    with pytest.raises(ValueError, match=r"n_max must be an integer in 1..N=5, not 0"):
        Arbiter(5, 0)
    with pytest.raises(ValueError, match="rng_bits must be a positive integer, not 0"):
        Arbiter(5, 2, 0)
    with pytest.raises(ValueError, match="rng_bits must be at most 32"):
        Arbiter(5, 2, 33)


@pytest.mark.parametrize(("N", "n_max", "k", "dev_bits", "idx_bits", "nway_bits"), [
    (1, 1, 0, 1, 1, 1), (2, 1, 1, 1, 1, 1), (3, 2, 2, 1, 2, 2), (5, 2, 3, 2, 3, 2),
    (8, 8, 3, 2, 3, 4), (9, 3, 4, 2, 4, 2),
])
def test_ports_and_verilog(N, n_max, k, dev_bits, idx_bits, nway_bits):
    dut = Arbiter(N, n_max)
    assert dut.k == k and dut.max_redraws == 64 << k
    assert len(dut.seed_dev) == dev_bits and len(dut.ext_bits) == max(k, 1)
    assert len(dut.n_way) == nway_bits and len(dut.threshold) == W + 1
    assert len(dut.mask) == N and len(dut.indices.as_value()) == n_max * idx_bits
    assert len(dut.draws) == len(dut.rejections) == 32 and len(dut.seed) == 32
    text = verilog.convert(dut, emit_src=False)
    assert "module" in text and "indices" in text


# --- golden equivalence --------------------------------------------------------------------

@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("N", [2, 3, 5, 8])
@pytest.mark.parametrize("n_way", [1, 2])
def test_choices_equal_arbiter_choices(layer, N, n_way, run_sim):
    """Seeded as firmware does (device_seed), B*T back-to-back selections equal
    arbiter_choices; the draw/rejection counters and the cycles per selection equal the
    golden Arbiter's, pass by pass."""
    seed, B, T = 11 + N, 4, 16
    k = (N - 1).bit_length()
    dut = Arbiter(N, 2)
    seeds = [device_seed(seed, layer, d, k) for d in range(k)]
    res = drive(run_sim, dut, seeds, THR, n_way, B * T)
    expect = arbiter_choices(layer + 1, B, T, N, n_way, seed=seed)[layer].reshape(-1, n_way)
    got = np.array([idx[:n_way] for idx in res["indices"]])
    assert np.array_equal(got, expect.numpy())
    check_selection(res, n_way, 2)

    gold = GoldenArbiter(N, n_way, DeviceBank([EmulatedRng(s, THR, W) for s in seeds]))
    per_pass = []
    for _ in range(B * T):
        before = gold.draws
        gold.choose(1)
        per_pass.append(gold.draws - before)
    assert res["cycles"] == [d + 1 for d in per_pass]          # latency: draws + 1
    assert res["draws"] == gold.draws and res["rejections"] == gold.rejections
    assert not res["stuck"]


@pytest.mark.parametrize(("N", "n_max", "n_way", "threshold", "gap"), [
    (5, 5, 5, 2 ** 15, 0),      # all of N: many rejections of held crossbars
    (6, 3, 3, 19661, 2),        # biased devices (p = 0.3), idle cycles between passes
    (7, 2, 2, 45875, 1),        # biased the other way (p = 0.7)
    (4, 4, 3, 2 ** 15, 0),      # power of two: only repeats are rejected
])
def test_more_shapes_equal_golden(N, n_max, n_way, threshold, gap, run_sim):
    k = (N - 1).bit_length()
    seeds = [0x1000 * (d + 1) + N for d in range(k)]
    passes = 25
    res = drive(run_sim, Arbiter(N, n_max), seeds, threshold, n_way, passes, gap=gap)
    gold = GoldenArbiter(N, n_way, DeviceBank([EmulatedRng(s, threshold, W) for s in seeds]))
    expect = gold.choose(passes)
    assert np.array_equal(np.array([i[:n_way] for i in res["indices"]]), expect)
    check_selection(res, n_way, n_max)
    assert res["draws"] == gold.draws and res["rejections"] == gold.rejections
    assert sum(res["cycles"]) == gold.draws + passes


def test_mean_draws_near_expected(run_sim):
    """Over 400 N = 5 one-way selections the mean draws per pass is near 8/5."""
    k, passes = 3, 400
    res = drive(run_sim, Arbiter(5, 1), [device_seed(7, 0, d, k) for d in range(k)], THR, 1, passes)
    mean = res["draws"] / passes
    assert abs(mean - float(expected_draws(5, 1))) < 0.2
    counts = np.bincount([i[0] for i in res["indices"]], minlength=5)
    assert counts.min() > 50                                     # every crossbar is used


# --- external bits, stuck device, N = 1 ------------------------------------------------------

def test_external_bits_code_order(run_sim):
    """ext_bits[d] is device d's bit and device 0 is the MSB: 0b001 -> code 4, 0b100 -> 1."""
    dut = Arbiter(5, 1)
    got = []

    async def tb(ctx):
        ctx.set(dut.ext_en, 1)
        ctx.set(dut.n_way, 1)
        for bits in (0b001, 0b100, 0b110, 0b000, 0b010):
            ctx.set(dut.ext_bits, bits)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()
            assert ctx.get(dut.done)
            got.append((ctx.get(dut.mask), ctx.get(dut.indices.as_value())))

    run_sim(dut, tb)
    assert got == [(1 << 4, 4), (1 << 1, 1), (1 << 3, 3), (1 << 0, 0), (1 << 2, 2)]


def test_stuck_device_raises_stuck_and_never_completes(run_sim):
    """All ext bits 1 with N = 5: code 7 is rejected forever. stuck rises on the
    (64 * 2^k + 1)-th consecutive rejection, as golden max_redraws; it stays set after the
    source recovers and a fresh selection completes."""
    dut = Arbiter(5, 2)
    limit = dut.max_redraws                                      # 512
    seen = {}

    async def tb(ctx):
        ctx.set(dut.threshold, THR)
        ctx.set(dut.n_way, 1)
        ctx.set(dut.ext_en, 1)
        ctx.set(dut.ext_bits, 0b111)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().repeat(limit)
        seen["before"] = (ctx.get(dut.draws), ctx.get(dut.rejections), ctx.get(dut.stuck))
        await ctx.tick()
        seen["after"] = (ctx.get(dut.draws), ctx.get(dut.rejections), ctx.get(dut.stuck))
        done = 0
        for _ in range(50):
            await ctx.tick()
            done |= ctx.get(dut.done)
        seen["hung"] = (done, ctx.get(dut.busy), ctx.get(dut.mask), ctx.get(dut.stuck))
        ctx.set(dut.ext_en, 0)                                   # the source recovers
        ctx.set(dut.start, 1)                                    # restart while busy
        await ctx.tick()
        ctx.set(dut.start, 0)
        await until_done(ctx, dut)
        seen["recovered"] = (ctx.get(dut.mask).bit_count(), ctx.get(dut.stuck))

    run_sim(dut, tb)
    assert seen["before"] == (limit, limit, 0)
    assert seen["after"] == (limit + 1, limit + 1, 1)
    assert seen["hung"] == (0, 1, 0, 1)
    assert seen["recovered"] == (1, 1)


def test_stuck_at_zero_two_way_hangs(run_sim):
    """A stuck-at-0 source holds crossbar 0, then repeats it forever with n = 2."""
    dut = Arbiter(3, 2)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.n_way, 2)
        ctx.set(dut.ext_en, 1)
        ctx.set(dut.ext_bits, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().repeat(dut.max_redraws + 2)
        seen["state"] = (ctx.get(dut.busy), ctx.get(dut.mask), ctx.get(dut.stuck),
                         ctx.get(dut.draws) - ctx.get(dut.rejections))

    run_sim(dut, tb)
    assert seen["state"] == (1, 1, 1, 1)


def test_single_crossbar(run_sim):
    """N = 1: done the cycle after start, mask 1, index 0, no draws, no devices."""
    dut = Arbiter(1, 1)
    seen = []

    async def tb(ctx):
        ctx.set(dut.n_way, 1)
        for _ in range(3):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            seen.append((ctx.get(dut.done), ctx.get(dut.busy), ctx.get(dut.mask),
                         ctx.get(dut.indices.as_value()), ctx.get(dut.draws),
                         ctx.get(dut.rejections), ctx.get(dut.stuck)))
            await ctx.tick()
            assert not ctx.get(dut.done)

    run_sim(dut, tb)
    assert dut.k == 0
    assert seen == [(1, 0, 1, 0, 0, 0, 0)] * 3


def test_n_way_clamped(run_sim):
    """n_way 0 acts as 1 and values above n_max as n_max, so a bad register cannot hang."""
    dut = Arbiter(5, 2)
    got = []

    async def tb(ctx):
        ctx.set(dut.threshold, THR)
        for d in range(3):
            ctx.set(dut.seed, device_seed(5, 0, d, 3))
            ctx.set(dut.seed_dev, d)
            ctx.set(dut.seed_load, 1)
            await ctx.tick()
        ctx.set(dut.seed_load, 0)
        for n in (0, 3, 2, 1):
            ctx.set(dut.n_way, n)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await until_done(ctx, dut)
            got.append(ctx.get(dut.mask).bit_count())

    run_sim(dut, tb)
    assert got == [1, 2, 2, 1]
