"""rtl/health.py: HealthTests and MonitoredRng against the golden twin
(golden.health.HealthTests), cycle for cycle in Amaranth's simulator: random and biased
streams with valid gaps, clears and cutoff rewrites, stuck streams at the default cutoffs.
MonitoredRng's tests take each step's bit one cycle late: the twin is fed the same way."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog

from spinbayes.golden.health import Cutoffs
from spinbayes.golden.health import HealthTests as Twin
from spinbayes.golden.mtj import EmulatedRng
from spinbayes.rtl.health import HealthTests, MonitoredRng

#: Registered outputs, equal to the twin's attributes of the same names after each edge.
STATE = ("rct_alarm", "apt_alarm", "bias_alarm", "bias_side", "rct_count", "apt_count",
         "bias_count", "rct_run", "apt_index", "apt_matches", "bias_index", "bias_ones")
EVENTS = ("rct_event", "apt_event", "bias_event")


def write_ports(ctx, dut, c: Cutoffs):
    ctx.set(dut.rct_cutoff, c.rct)
    ctx.set(dut.apt_cutoff, c.apt)
    ctx.set(dut.bias_low, c.bias_low)
    ctx.set(dut.bias_high, c.bias_high)


def run_stream(run_sim, dut, cycles, cutoffs=None):
    """Drive ``cycles`` (a list of (valid, sample, clear, cutoffs or None)) into a
    HealthTests; returns per cycle the events (before the edge) and STATE (after it)."""
    got = []

    async def tb(ctx):
        if cutoffs is not None:
            write_ports(ctx, dut, cutoffs)
        for valid, bit, clear, cut in cycles:
            if cut is not None:
                write_ports(ctx, dut, cut)
            ctx.set(dut.valid, valid)
            ctx.set(dut.sample, bit)
            ctx.set(dut.clear, clear)
            ev = tuple(ctx.get(getattr(dut, n)) for n in EVENTS)
            await ctx.tick()
            got.append((ev, tuple(ctx.get(getattr(dut, n)) for n in STATE)))

    run_sim(dut, tb)
    return got


def twin_stream(twin, cycles, cutoffs=None):
    if cutoffs is not None:
        twin.write(cutoffs)
    out = []
    for valid, bit, clear, cut in cycles:
        if cut is not None:
            twin.write(cut)
        if valid:
            ev = twin.step(bit, clear)
        else:
            twin.idle(clear)
            ev = (0, 0, 0)
        out.append((ev, tuple(getattr(twin, n) for n in STATE)))
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"cycle {i}: rtl {g} != twin {w} ({EVENTS} / {STATE})"


def random_cycles(rng, n, p, gap=0.25, clear=0.03, rewrite=None):
    """n cycles of Bernoulli(p) samples, valid low with prob ``gap``, random clears, and
    (``rewrite``: a list of Cutoffs) a cutoff rewrite every 400 cycles."""
    cycles = []
    for i in range(n):
        cut = rewrite[(i // 400) % len(rewrite)] if rewrite and i % 400 == 0 else None
        c = int(rng.integers(1, 8)) if rng.random() < clear else 0
        cycles.append((int(rng.random() >= gap), int(rng.random() < p), c, cut))
    return cycles


def test_bad_parameters():
    for name in ("apt_window", "bias_window", "rct_bits", "count_bits"):
        for bad in (0, -1, 1.5, True, None):
            with pytest.raises(ValueError, match=f"{name} must be a positive integer, not"):
                HealthTests(**{name: bad})
            with pytest.raises(ValueError, match=f"{name} must be a positive integer, not"):
                MonitoredRng(**{name: bad})
    with pytest.raises(ValueError, match="rng_bits must be at most 32"):
        MonitoredRng(33)


def test_ports_defaults_and_verilog():
    dut = HealthTests()
    assert (dut.rct_cutoff.init, dut.apt_cutoff.init) == (21, 589)
    assert (dut.bias_low.init, dut.bias_high.init) == (1891, 2205)
    assert len(dut.apt_cutoff) == 11 and len(dut.bias_high) == 13 and len(dut.rct_run) == 8
    assert len(dut.apt_matches) == 11 and len(dut.apt_index) == 10 and len(dut.clear) == 3
    dut._MustUse__silence = True                 # inspected, not elaborated
    small = HealthTests(apt_window=16, bias_window=1, rct_bits=3)
    assert small.apt_cutoff.init == 17 and small.rct_cutoff.init == 7   # clipped to 3 bits
    assert "module" in verilog.convert(small, emit_src=False)
    assert "rct_alarm" in verilog.convert(MonitoredRng(8), emit_src=False)


@pytest.mark.parametrize("bit", [0, 1])
def test_stuck_stream_at_default_cutoffs(bit, run_sim):
    """Stuck from reset: RCT event in the cycle of sample 21, APT at 589 (and 1024 + 589),
    bias at 2206."""
    cycles = [(1, bit, 0, None)] * 2300
    got = run_stream(run_sim, HealthTests(), cycles)
    assert_same(got, twin_stream(Twin(), cycles))
    for k, samples in enumerate(([21], [589, 1613], [2206])):
        assert [i + 1 for i, (ev, _) in enumerate(got) if ev[k]] == samples
    assert got[19][1][0] == 0 and got[20][1][0] == 1      # rct_alarm after sample 21's edge


@pytest.mark.parametrize(("p", "seed"), [(0.5, 1), (0.75, 2), (0.93, 3), (0.2, 4)])
def test_random_streams_small_windows(p, seed, run_sim):
    """Small windows and counters (saturation reached), cutoffs that fire often and are
    rewritten while the stream runs, valid gaps and random clears."""
    rng = np.random.default_rng(seed)
    rewrite = [Cutoffs(4, 14, 9, 15), Cutoffs(9, 20, 4, 20), Cutoffs(1, 0, 12, 11),
               Cutoffs(15, 31, 0, 24), Cutoffs(3, 17, 7, 17)]
    cycles = random_cycles(rng, 2400, p, rewrite=rewrite)
    kw = dict(apt_window=20, bias_window=24, rct_bits=4, count_bits=5)
    got = run_stream(run_sim, HealthTests(**kw), cycles)
    assert_same(got, twin_stream(Twin(**kw), cycles))
    events = np.array([ev for ev, _ in got]).sum(axis=0)
    assert (events > 0).all(), events


@pytest.mark.parametrize(("p", "seed"), [(0.5, 10), (0.6, 11)])
def test_default_cutoffs_healthy_and_biased(p, seed, run_sim):
    """Default windows and cutoffs on 6000 cycles: p = 0.5 (healthy) and p = 0.6 (the bias
    monitor fires in its first window)."""
    cycles = random_cycles(np.random.default_rng(seed), 6000, p, gap=0.1, clear=0.001)
    got = run_stream(run_sim, HealthTests(), cycles)
    assert_same(got, twin_stream(Twin(), cycles))
    if p == 0.6:
        assert any(ev[2] for ev, _ in got[:4500])


def delayed(cycles):
    """MonitoredRng's tests take a step's (valid, bit) in the next cycle, with that cycle's
    clear: the twin's inputs per cycle, from the cycles as the device saw them."""
    prev = [(0, 0)] + [(valid, bit) for valid, bit, _, _ in cycles[:-1]]
    return [(pv, pb, clear, cut) for (pv, pb), (_, _, clear, cut) in zip(prev, cycles)]


def test_monitored_rng_stuck_from_reset_fires_one_cycle_after_the_step(run_sim):
    """Threshold 0 from reset, one step per cycle (step s in cycle s - 1): the RCT's event is
    in cycle 21, the cycle after step 21, and rct_alarm reads 1 from cycle 22 on."""
    dut = MonitoredRng(16)
    seen = []

    async def tb(ctx):
        ctx.set(dut.threshold, 0)
        ctx.set(dut.step, 1)
        for _ in range(24):
            seen.append((ctx.get(dut.bit), ctx.get(dut.rct_event), ctx.get(dut.rct_alarm)))
            await ctx.tick()

    run_sim(dut, tb)
    assert {bit for bit, _, _ in seen} == {0}
    assert [t for t, (_, ev, _) in enumerate(seen) if ev] == [21]
    assert [alarm for _, _, alarm in seen] == [0] * 22 + [1] * 2


def test_monitored_rng_flags_stuck_devices(run_sim):
    """MonitoredRng: the emulated bits equal EmulatedRng's; then the device at threshold 0,
    at 2^W, and with a forced stuck-at external bit: every cycle equal to the twin fed with
    the bits handed out one cycle late (a step with load is no sample), and the RCT fires,
    in the cycle after the step, within 21 bits of each fault (earlier when the run began
    before it)."""
    dut = MonitoredRng(16)
    log, faults = [], {}

    async def tb(ctx):
        async def cycle(load=0, step=1, clear=0):
            ctx.set(dut.load, load)
            ctx.set(dut.step, step)
            ctx.set(dut.clear, clear)
            bit, ev = ctx.get(dut.bit), tuple(ctx.get(getattr(dut, n)) for n in EVENTS)
            await ctx.tick()
            log.append(((int(step and not load), bit, clear, None), ev,
                        tuple(ctx.get(getattr(dut, n)) for n in STATE)))
            return bit, ev

        ctx.set(dut.seed, 99)
        await cycle(load=1, step=1)
        ctx.set(dut.threshold, 2 ** 15)
        for _ in range(500):
            await cycle()
        for name, thr, ext in (("thr0", 0, None), ("thr_max", 2 ** 16, None),
                               ("ext1", 2 ** 15, 1)):
            await cycle(step=0, clear=0b111)
            ctx.set(dut.threshold, thr)
            ctx.set(dut.ext_en, ext is not None)
            ctx.set(dut.ext_bit, ext or 0)
            n, bit, prev = 0, None, None
            while n < 40:
                n += 1
                prev, (bit, ev) = bit, await cycle()
                if ev[0]:
                    break
            faults[name] = (n - 1, prev)            # the event is the previous step's
            ctx.set(dut.ext_en, 0)
            ctx.set(dut.threshold, 2 ** 15)
            for _ in range(30):
                await cycle()

    run_sim(dut, tb)
    bits = [c[0][1] for c in log[1:501]]
    assert bits == EmulatedRng(99, 2 ** 15, 16).bits(500).tolist()
    want = twin_stream(Twin(), delayed([c[0] for c in log]))
    assert_same([(ev, st) for _, ev, st in log], want)
    assert sum(ev[0] for _, ev, _ in log[:501]) == 0
    for name, stuck in (("thr0", 0), ("thr_max", 1), ("ext1", 1)):
        n, bit = faults[name]
        assert bit == stuck and n <= 21, (name, n)
