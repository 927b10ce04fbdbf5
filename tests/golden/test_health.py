"""golden/health.py: the cutoffs from (H, α), checked by hand and in exact integer arithmetic;
the twin on hand-made streams; the vectorised tests equal to the twin; false alarms over
10^6 healthy samples (numpy Bernoulli and the xorshift-emulated device) consistent with α."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, poisson

from spinbayes.golden import health as h
from spinbayes.golden.health import Cutoffs, HealthTests, first_event
from spinbayes.golden.mtj import EmulatedRng, p_sw, threshold_for


def exact_tail_k(n: int, alpha_log2: int) -> int:
    """Smallest k with P[Bin(n, 1/2) > k] <= 2^alpha_log2, in Python integers (no floats)."""
    tail, total = 0, 2 ** n
    for k in range(n, -1, -1):                       # tail = sum_{j > k} C(n, j)
        if tail * 2 ** -alpha_log2 > total:
            return k + 1
        tail += math.comb(n, k)
    return 0


# --- cutoffs ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("H", "alpha", "C"), [
    (1, 2 ** -20, 21), (1, 2 ** -40, 41), (0.5, 2 ** -20, 41), (0.25, 2 ** -20, 81),
    (0.1, 2 ** -20, 201),          # 20 / 0.1: exactly 200
    (0.3, 2 ** -30, 101),          # float 30 / 0.3 = 100.00000000000001 would give 102
    (1, 1e-6, 21),                 # -log2(1e-6) = 19.93
    (0.9, 2 ** -20, 24),           # 20 / 0.9 = 22.2
])
def test_rct_cutoff_by_hand(H, alpha, C):
    assert h.rct_cutoff(H, alpha) == C


def test_apt_cutoff_589_exactly():
    """C - 1 is the smallest k with P[Bin(1024, 1/2) > k] <= α, found in integers."""
    assert exact_tail_k(1024, -20) == 588 and h.apt_cutoff(1, 2 ** -20) == 589
    assert exact_tail_k(1024, -40) == 624 and h.apt_cutoff(1, 2 ** -40) == 625
    assert exact_tail_k(512, -20) + 1 == h.apt_cutoff(1, 2 ** -20, 512)
    assert h.apt_cutoff() == 589 and h.rct_cutoff() == 21


@pytest.mark.parametrize(("H", "alpha"), [(0.5, 2 ** -20), (0.8, 2 ** -30), (1, 1e-3)])
def test_apt_cutoff_is_the_smallest_k(H, alpha):
    """CRITBINOM's definition: P[X <= k] >= 1 - α and P[X <= k - 1] < 1 - α (tails via sf)."""
    k = h.apt_cutoff(H, alpha) - 1
    p = 2.0 ** -H
    assert binom.sf(k, 1024, p) <= alpha < binom.sf(k - 1, 1024, p)


def test_critbinom_by_hand():
    # Bin(4, 1/2): P[X > 2] = 5/16, P[X > 3] = 1/16, P[X > 4] = 0
    assert h.critbinom(4, 0.5, 1 / 16) == 3
    assert h.critbinom(4, 0.5, 0.06) == 4
    assert h.critbinom(4, 0.5, 5 / 16) == 2
    assert h.critbinom(1000, 0.3, 0.01) == int(binom.ppf(0.99, 1000, 0.3))
    assert h.apt_cutoff(1, 2 ** -20, 16) == 17          # a window of 16 can never fire


def test_bias_watermarks():
    low, high = h.bias_watermarks()
    assert (low, high) == (1891, 2205) and low == 4096 - high
    assert exact_tail_k(4096, -21) == 2205               # α/2 per side, in integers
    lo2, hi2 = h.bias_watermarks(4096, 2 ** -20, p=0.6)  # the general (asymmetric) case
    assert binom.cdf(lo2 - 1, 4096, 0.6) <= 2 ** -21 < binom.cdf(lo2, 4096, 0.6)
    assert binom.sf(hi2, 4096, 0.6) <= 2 ** -21 < binom.sf(hi2 - 1, 4096, 0.6)
    assert Cutoffs.derive() == Cutoffs(21, 589, 1891, 2205)
    assert h.bias_window_fail_probability(low, high) <= 2 ** -20


def test_apt_exact_window_probability_exceeds_alpha_slightly():
    """90B bounds P[Bin(W, 1/2) >= C] by α; the algorithm's B counts A itself, so a window
    fails with P[Bin(W - 1, 1/2) >= C - 1], 1.011 α at the defaults."""
    p = h.apt_window_fail_probability(589)
    assert p == pytest.approx(binom.sf(587, 1023, 0.5))
    assert binom.sf(588, 1024, 0.5) <= 2 ** -20 < p < 1.02 * 2 ** -20


@pytest.mark.parametrize(("call", "msg"), [
    (lambda: h.rct_cutoff(0, 2 ** -20), "H must be a number in"),
    (lambda: h.rct_cutoff(1.5, 2 ** -20), "H must be a number in"),
    (lambda: h.rct_cutoff(1, 0), "alpha must be a number in"),
    (lambda: h.apt_cutoff(1, float("nan")), "alpha must be a number in"),
    (lambda: h.apt_cutoff(1, 2 ** -20, 0), "window must be a positive integer, not 0"),
    (lambda: h.bias_watermarks(1.5), "window must be a positive integer, not 1.5"),
    (lambda: HealthTests(apt_window=True), "apt_window must be a positive integer, not True"),
    (lambda: HealthTests(count_bits=-1), "count_bits must be a positive integer, not -1"),
    (lambda: HealthTests().step(2), "bit must be 0 or 1"),
    (lambda: HealthTests().write(Cutoffs(256, 1, 1, 1)), "rct cutoff must be an integer in"),
    (lambda: h.rct_events([0, 2], 3), "bits must be a 1-D array of 0/1"),
])
def test_bad_input(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


# --- the twin on hand-made streams ------------------------------------------------------------

@pytest.mark.parametrize("bit", [0, 1])
def test_stuck_stream_fires_at_21_589_2206(bit):
    t = HealthTests()
    ev = t.feed(np.full(2300, bit))
    assert np.flatnonzero(ev[:, 0]).tolist() == [20]            # sample 21, once per run
    assert np.flatnonzero(ev[:, 1]).tolist() == [588, 1024 + 588]
    assert np.flatnonzero(ev[:, 2]).tolist() == [2205]          # the 2206th equal bit
    assert t.bias_side == (2 if bit else 1)
    assert (t.rct_count, t.apt_count, t.bias_count) == (1, 2, 1)
    assert t.rct_run == 255                                      # saturated
    s = HealthTests()
    assert s.feed(np.full(20, bit)).sum() == 0 and s.rct_run == 20 and not s.rct_alarm


def test_rct_runs_by_hand():
    t = HealthTests()
    t.write(Cutoffs(4, 2000, 0, 4096))                           # APT and bias never fire
    bits = [1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    ev = t.feed(bits)[:, 0]
    # runs: 1 | 000 | 111111 (4th one = sample 8) | 0000 (4th zero = sample 14) | 1
    assert [i + 1 for i in np.flatnonzero(ev)] == [8, 14]
    assert t.rct_run == 1 and t.rct_count == 2 and t.rct_alarm == 1


def test_apt_windows_by_hand():
    t = HealthTests(apt_window=8)
    t.write(Cutoffs(255, 5, 0, 4096))
    w1 = [1, 1, 0, 1, 0, 1, 0, 0]        # A = 1, B = 1 2 2 3 3 4 4 4: no event
    w2 = [0, 0, 1, 0, 0, 1, 1, 1]        # A = 0, B = 1 2 2 3 4: B = 5 never reached
    w3 = [0, 1, 1, 1, 1, 1, 1, 1]        # A = 0: seven ones do not count (one-sided test)
    w4 = [1, 0, 1, 1, 1, 1, 0, 0]        # A = 1, B = 1 1 2 3 4 5: event at its 6th sample
    ev = t.feed(w1 + w2 + w3 + w4)[:, 1]
    assert [i + 1 for i in np.flatnonzero(ev)] == [24 + 6]
    assert t.apt_index == 0 and t.apt_matches == 5
    u = HealthTests(apt_window=8)
    u.write(Cutoffs(255, 5, 0, 4096))
    assert [i + 1 for i in np.flatnonzero(u.feed([1] * 13)[:, 1])] == [5, 13]   # no carry


def test_bias_watermarks_by_hand():
    t = HealthTests(bias_window=10)
    t.write(Cutoffs(255, 2000, 3, 7))    # healthy iff 3..7 ones in 10
    windows = [[1] * 8 + [0, 0],         # 8th one > 7: sample 8, high
               [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],   # 8 zeros: fewer than 3 ones certain: low
               [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],   # 3 ones: healthy
               [1] * 7 + [0] * 3]        # 7 ones: healthy
    ev = t.feed(np.concatenate(windows))[:, 2]
    assert [i + 1 for i in np.flatnonzero(ev)] == [8, 20]
    assert t.bias_side == 3 and t.bias_count == 2


def test_alarm_clear_and_saturation():
    t = HealthTests(count_bits=2)
    t.write(Cutoffs(2, 2000, 0, 4096))
    for _ in range(5):                   # runs of two or more: an event each; stops at 3
        t.feed([0, 0, 1])
        t.step(1)
        t.step(0)
    assert t.rct_count == 3 and t.rct_alarm == 1
    t.idle(clear=1)
    assert t.rct_alarm == 0 and t.rct_count == 3
    assert t.step(0, clear=1) == (1, 0, 0) and t.rct_alarm == 1   # the event wins the clear
    t.reset()
    assert t.rct_count == 0 and t.rct_run == 0


# --- vectorised = twin ------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "cut"), [(0.5, Cutoffs(5, 20, 12, 36)),
                                        (0.8, Cutoffs(9, 25, 20, 30)),
                                        (0.1, Cutoffs(3, 28, 5, 47)),
                                        (0.5, Cutoffs(1, 0, 30, 18))])
def test_vectorised_equals_twin(p, cut):
    bits = (np.random.default_rng(7).random(6000) < p).astype(np.uint8)
    t = HealthTests(apt_window=32, bias_window=48, rct_bits=4)
    t.write(cut)
    ev = t.feed(bits)
    _, rct = h.rct_events(bits, cut.rct, max_run=15)
    _, apt = h.apt_events(bits, cut.apt, 32)
    lo, hi = h.bias_events(bits, cut.bias_low, cut.bias_high, 48)
    assert np.array_equal(ev[:, 0], rct) and np.array_equal(ev[:, 1], apt)
    assert np.array_equal(ev[:, 2], lo | hi)
    assert ev.sum() > 20
    assert first_event(ev[:, 0]) == int(np.flatnonzero(rct)[0]) + 1


# --- false alarms on healthy streams ----------------------------------------------------------

TAIL = 1e-6    # a test fails only if the observed count lies in a tail of probability < 1e-6


def consistent(observed: int, dist) -> bool:
    """``observed`` is outside neither tail of probability < TAIL of ``dist`` (scipy)."""
    return dist.cdf(observed) >= TAIL and dist.sf(observed - 1) >= TAIL


def healthy(source: str, n: int, seed: int) -> np.ndarray:
    if source == "bernoulli":
        return (np.random.default_rng(seed).random(n) < 0.5).astype(np.uint8)
    thr = threshold_for(float(p_sw(230e-6)), 16)            # the 230 uA device, p = 1/2
    return EmulatedRng(seed, thr, 16).bits(n)


def count_alarms(bits, cut: Cutoffs):
    fail, rct = h.rct_events(bits, cut.rct)
    lo, hi = h.bias_events(bits, cut.bias_low, cut.bias_high)
    return int(fail.sum()), int(rct.sum()), int(h.apt_events(bits, cut.apt)[1].sum()), \
        int((lo | hi).sum())


def check_false_alarms(bits, alpha_rct, alpha_apt, alpha_bias):
    n = bits.size
    c = Cutoffs(h.rct_cutoff(1, alpha_rct), h.apt_cutoff(1, alpha_apt),
                *h.bias_watermarks(h.BIAS_WINDOW, alpha_bias))
    fails, rct, apt, bias = count_alarms(bits, c)
    lam = h.rct_expected_events(c.rct, n)
    # fails: (n - C + 1) 2^-(C-1) expected, <= n α; clusters of mean 2 (E[S^2] = 6)
    exp_fails = (n - c.rct + 1) * 2.0 ** -(c.rct - 1)
    assert exp_fails <= n * alpha_rct
    assert abs(fails - exp_fails) <= 5 * math.sqrt(6 * lam) + 1, (fails, exp_fails)
    assert consistent(rct, poisson(lam)), (rct, lam)
    pa = binom(n // h.APT_WINDOW, h.apt_window_fail_probability(c.apt))
    pb = binom(n // h.BIAS_WINDOW, h.bias_window_fail_probability(c.bias_low, c.bias_high))
    assert consistent(apt, pa), (apt, pa.mean())
    assert consistent(bias, pb), (bias, pb.mean())
    return {"rct_fails": (fails, exp_fails), "rct": (rct, lam), "apt": (apt, pa.mean()),
            "bias": (bias, pb.mean())}


@pytest.mark.parametrize("source", ["bernoulli", "device"])
def test_false_alarms_at_default_alpha(source):
    """10^6 samples, the default cutoffs (α = 2^-20): expected 0.48 RCT events, 0.95 failing
    samples, 9e-4 APT and 2e-4 bias events; the observed counts within the 1e-6 tails."""
    check_false_alarms(healthy(source, 10 ** 6, 2024), 2 ** -20, 2 ** -20, 2 ** -20)


@pytest.mark.parametrize("source", ["bernoulli", "device"])
def test_false_alarm_rate_at_large_alpha(source):
    """Cutoffs from larger α, so the 10^6 samples see hundreds of alarms: RCT α = 2^-10
    (488 events expected), APT α = 2^-3 (127 windows), bias α = 2^-2 (59 windows)."""
    r = check_false_alarms(healthy(source, 10 ** 6, 99), 2 ** -10, 2 ** -3, 2 ** -2)
    assert r["rct"][0] > 300 and r["apt"][0] > 60 and r["bias"][0] > 25


@pytest.mark.parametrize("source", ["bernoulli", "device"])
def test_no_alarm_at_alpha_2_40(source):
    c = Cutoffs.derive(alpha=2 ** -40)
    assert c == Cutoffs(41, 625, 1820, 2276)
    assert count_alarms(healthy(source, 10 ** 6, 7), c) == (0, 0, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["bernoulli", "device"])
def test_false_alarms_10_7_samples(source):
    """10^7 samples at the default cutoffs: 4.8 RCT events and 9.5 failing samples expected."""
    r = check_false_alarms(healthy(source, 10 ** 7, 5), 2 ** -20, 2 ** -20, 2 ** -20)
    assert r["rct"][1] > 4
    assert count_alarms(healthy(source, 10 ** 7, 6), Cutoffs.derive(alpha=2 ** -40)) == \
        (0, 0, 0, 0)
