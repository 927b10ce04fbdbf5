"""The arbiter's health tests (Arbiter(health=True)) against the golden twins, pass by pass.

Each device's stream is the EmulatedRng twin's, so golden.health.HealthTests fed with it must
give the RTL's alarms, event counts and bias sides after every pass; the pair tests are
golden.health.rct_events on the XOR of adjacent devices. Cutoffs are lowered so that every test
fires many times in a few thousand draws; the selections equal those without health tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinbayes.golden.health import Cutoffs, HealthTests, rct_events
from spinbayes.golden.mtj import EmulatedRng
from spinbayes.rtl.arbiter import CUTOFF_PORTS, HEALTH_COUNT_BITS, Arbiter

W = 16
N, N_MAX = 5, 2
LOW = Cutoffs(rct=6, apt=505, bias_low=2030, bias_high=2066)


SEEDS = (0x1234567, 0xBADC0DE, 0x2545F491)


async def _seed(ctx, dut, seeds):
    """Load seeds[d] into device d, one per cycle."""
    ctx.set(dut.seed_load, 1)
    for d, s in enumerate(seeds):
        ctx.set(dut.seed, s)
        ctx.set(dut.seed_dev, d)
        await ctx.tick()
    ctx.set(dut.seed_load, 0)


def _health(ctx, dut) -> dict:
    return dict(alarms=ctx.get(dut.dev_alarms), pairs=ctx.get(dut.pair_alarms),
                pair_count=ctx.get(dut.pair_count), sides=ctx.get(dut.bias_sides),
                counts=[int(v) for v in ctx.get(dut.dev_counts)])


def _run(run_sim, dut, seeds, thr, cutoffs, passes):
    """``passes`` back-to-back 2-way passes; per pass the draws so far, the mask, and (health)
    the health outputs in the done cycle and in the cycle after it."""
    rec = []

    async def tb(ctx):
        ctx.set(dut.threshold, thr)
        if dut.health:
            for name, v in zip(CUTOFF_PORTS, (cutoffs.rct, cutoffs.apt, cutoffs.bias_low,
                                              cutoffs.bias_high)):
                ctx.set(getattr(dut, name), v)
        await _seed(ctx, dut, seeds)
        ctx.set(dut.n_way, N_MAX)
        ctx.set(dut.start, 1)
        row = None
        for _ in range(passes):
            await ctx.tick()
            ctx.set(dut.start, 0)
            if row is not None and dut.health:
                row["next"] = _health(ctx, dut)
            while not ctx.get(dut.done):
                await ctx.tick()
            ctx.set(dut.start, 1)           # the next pass starts in the done cycle
            row = {"draws": ctx.get(dut.draws), "mask": ctx.get(dut.mask)}
            if dut.health:
                row["done"] = _health(ctx, dut)
            rec.append(row)

    run_sim(dut, tb)
    return rec[:-1]                         # the last pass has no cycle after its done


@pytest.mark.parametrize("thr", [2 ** (W - 1), 40000])      # p = 0.5 and p = 0.61
def test_health_tests_equal_the_twins_pass_by_pass(run_sim, thr):
    seeds = list(SEEDS)
    dut = Arbiter(N, N_MAX, W, health=True)
    rec = _run(run_sim, dut, seeds, thr, LOW, passes=1200)
    plain = _run(run_sim, Arbiter(N, N_MAX, W), seeds, thr, LOW, passes=1200)
    assert [r["mask"] for r in rec] == [r["mask"] for r in plain]
    k = dut.k
    D = rec[-1]["draws"]
    assert D > 4096                          # a bias window (and four APT windows) completed
    bits = [EmulatedRng(s, thr, W).bits(D) for s in seeds]
    twins = [HealthTests(count_bits=HEALTH_COUNT_BITS) for _ in range(k)]
    for t in twins:
        t.write(LOW)
    pair_ev = np.stack([rct_events(bits[d] ^ bits[d + 1], LOW.rct)[1] for d in range(k - 1)])
    any_pair = pair_ev.any(axis=0)
    taken = [0]

    def check(got, n):
        """The health outputs after the first n draws' samples."""
        for d, t in enumerate(twins):
            for x in bits[d][taken[0]:n]:
                t.step(int(x))
        taken[0] = n
        want_alarms = sum((t.rct_alarm | t.apt_alarm << 1 | t.bias_alarm << 2) << 3 * d
                          for d, t in enumerate(twins))
        assert got["alarms"] == want_alarms, n
        assert got["counts"] == [c for t in twins for c in (t.rct_count, t.apt_count,
                                                            t.bias_count)], n
        assert got["sides"] == sum(t.bias_side << 2 * d for d, t in enumerate(twins)), n
        assert got["pairs"] == sum(int(pair_ev[d, :n].any()) << d for d in range(k - 1)), n
        assert got["pair_count"] == int(any_pair[:n].sum()), n

    fired, late = set(), 0
    for r in rec:
        # the tests take a draw's sample in the next cycle: in the done cycle they have the
        # pass's draws but its last, one cycle later (the next pass's first draw) all of them
        late += r["done"] != r["next"]
        check(r["done"], r["draws"] - 1)
        check(r["next"], r["draws"])
        fired |= {i for i in range(3 * k) if r["next"]["counts"][i]}
    assert fired == set(range(3 * k))        # every test of every device fired
    assert rec[-1]["next"]["pair_count"] > 0
    assert late > 0                          # some passes' last draw fired a test


def test_health_ports_only_with_health():
    plain, health = Arbiter(N, N_MAX), Arbiter(N, N_MAX, health=True)
    plain._MustUse__silence = health._MustUse__silence = True     # inspected, not elaborated
    assert "dev_alarms" not in plain.signature.members
    members = health.signature.members
    assert members["rct_cutoff"].init == 21 and members["apt_cutoff"].init == 589
    assert (members["bias_low"].init, members["bias_high"].init) == (1891, 2205)


def test_per_device_threshold_override_and_revert(run_sim):
    """thr_load gives device 1 (the code's middle bit) threshold 0: every chosen crossbar then
    has bit 1 clear (0, 1 or 4); a load of -1 returns it to the shared threshold."""
    dut = Arbiter(N, 1, W, thr_override=True)
    seen = {"forced": set(), "shared": set()}

    async def tb(ctx):
        ctx.set(dut.threshold, 2 ** (W - 1))
        ctx.set(dut.n_way, 1)
        await _seed(ctx, dut, SEEDS)                 # distinct streams
        for phase, value in (("forced", 0), ("shared", -1)):
            ctx.set(dut.seed_dev, 1)
            ctx.set(dut.seed, value & 0xFFFFFFFF)
            ctx.set(dut.thr_load, 1)
            await ctx.tick()
            ctx.set(dut.thr_load, 0)
            for _ in range(60):
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                while not ctx.get(dut.done):
                    await ctx.tick()
                seen[phase].add(int(ctx.get(dut.indices.as_value())))

    run_sim(dut, tb)
    assert seen["forced"] == {0, 1, 4}
    assert seen["shared"] & {2, 3}
