"""SOT-MTJ switching (eq. 5, Fig. 4), the behavioural RNG and its emulation (golden/mtj.py)."""

import math

import numpy as np
import pytest

from spinbayes.golden.mtj import (
    DEFAULT,
    X_BARRIER_ZERO,
    EmulatedRng,
    MTJParams,
    MTJRng,
    barrier,
    current_for_probability,
    p_sw,
    plot_mtj,
    solve_ic0,
    threshold_for,
    xorshift32,
)

uA = 1e-6


# --- eq. 5 -----------------------------------------------------------------------------------

def test_fig4_points():
    assert DEFAULT == MTJParams(delta=40.0, tau0=1e-9, ic0=578.1456e-6, t_set=10e-9, t_reset=5e-9)
    assert p_sw(230 * uA) == pytest.approx(0.5, abs=1e-3)
    assert p_sw(300 * uA) >= 0.99
    assert p_sw(300 * uA) == pytest.approx(1 - math.exp(-10))   # barrier gone: 1 - e^(-t/tau0)
    assert abs(solve_ic0() - DEFAULT.ic0) < 0.05e-9                # default = solved, 0.1 nA


def test_monotone_bounded_and_vectorised():
    i = np.linspace(0, 400 * uA, 4001)
    p = p_sw(i)
    assert p.shape == i.shape and np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= 0)
    assert p[0] < 1e-15 and p[-1] > 0.9999
    wide = p_sw(np.linspace(0, 3e-3, 3001))                         # also past pi/4 * Ic0
    assert np.all(np.diff(wide) >= 0)
    assert p_sw(np.array([[100, 230], [260, 300]]) * uA).shape == (2, 2)
    assert p_sw(230 * uA, t=DEFAULT.t_reset) < p_sw(230 * uA)       # shorter pulse, lower p


def test_sign_note_and_barrier_clamp():
    x = np.linspace(0, 0.44, 50)
    literal = DEFAULT.delta * (1 - 2 * x * (np.pi / 2 - x))
    assert np.allclose(barrier(x * DEFAULT.ic0), literal)
    printed = 1 - np.exp(10 * np.exp(-literal))                     # eq. 5 as printed
    assert np.all(printed <= 0) and np.all(printed[x > 0.3] < 0)
    at_230 = 1 - math.exp(10 * math.exp(-float(barrier(230 * uA))))   # printed: -1, not 0.5
    assert at_230 == pytest.approx(-1, abs=1e-5)
    assert np.all(barrier(np.array([0.45, 0.6, 0.8, 1.2, 2.0]) * DEFAULT.ic0) == 0)
    assert X_BARRIER_ZERO == pytest.approx(0.4435644683524968)


@pytest.mark.parametrize("p", [1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 0.9999])
def test_inverse_round_trip(p):
    i = current_for_probability(p)
    assert float(p_sw(i)) == pytest.approx(p, rel=1e-9)
    # closed form: Delta * b = ln(t / (tau0 * -ln(1 - p))), b = 1 - pi x + 2 x^2
    b = math.log(DEFAULT.t_set / (DEFAULT.tau0 * -math.log1p(-p))) / DEFAULT.delta
    x = (math.pi - math.sqrt(math.pi ** 2 - 8 * (1 - b))) / 4
    assert i == pytest.approx(x * DEFAULT.ic0, rel=1e-9)


def test_parameter_errors():
    with pytest.raises(ValueError, match=r"delta must be a positive number, not 0"):
        MTJParams(delta=0)
    with pytest.raises(ValueError, match=r"tau0 must be a positive number, not nan"):
        MTJParams(tau0=float("nan"))
    with pytest.raises(ValueError, match=r"current must be finite and >= 0"):
        p_sw(-1e-6)
    with pytest.raises(ValueError, match=r"t must be a positive number, not -1"):
        p_sw(1e-4, t=-1)
    with pytest.raises(ValueError, match=r"p must be a number in the open interval"):
        current_for_probability(1.0)


# --- behavioural MTJ RNG ---------------------------------------------------------------------

N_BITS = 200_000
FOUR_SIGMA = 4 * math.sqrt(0.25 / N_BITS)   # 0.00447 on the mean of 2e5 bits


def test_mtj_rng_fair_at_230uA():
    bits = MTJRng(230 * uA, seed=1).bits(N_BITS)
    assert bits.dtype == np.uint8 and set(np.unique(bits)) == {0, 1}
    assert abs(bits.mean() - 0.5) < FOUR_SIGMA
    assert MTJRng().period == pytest.approx(15e-9)


@pytest.mark.parametrize("current, sign", [(220 * uA, -1), (240 * uA, 1)])
def test_mtj_rng_bias_off_target(current, sign):
    p = float(p_sw(current))
    assert sign * (p - 0.5) > 0.1
    mean = MTJRng(current, seed=2).bits(N_BITS).mean()
    assert sign * (mean - 0.5) > 0.1
    assert abs(mean - p) < 4 * math.sqrt(p * (1 - p) / N_BITS)


def test_mtj_rng_drift_and_continuity():
    rng = MTJRng(220 * uA, drift=20 * uA / N_BITS, seed=3)     # 220 -> 240 uA over the run
    first, second = rng.bits(N_BITS // 2), rng.bits(N_BITS // 2)
    assert rng.n_bits == N_BITS
    expected = rng.probability(np.arange(N_BITS))
    assert first.mean() < 0.5 < second.mean()
    for half, e in ((first, expected[:N_BITS // 2]), (second, expected[N_BITS // 2:])):
        assert abs(half.mean() - e.mean()) < 4 * math.sqrt(0.25 / half.size)
    again = MTJRng(220 * uA, drift=20 * uA / N_BITS, seed=3).bits(N_BITS)
    assert np.array_equal(again, np.concatenate([first, second]))
    pd = MTJRng(230 * uA, p_drift=-0.4 / N_BITS, seed=4).bits(N_BITS)   # p: 0.5 -> 0.1
    assert pd[-N_BITS // 10:].mean() < 0.2 < 0.4 < pd[:N_BITS // 10].mean()
    assert MTJRng(1 * uA, drift=-1 * uA).probability(10) == pytest.approx(float(p_sw(0)))


@pytest.mark.parametrize("stuck, value", [("0", 0), ("1", 1), (0, 0), (1, 1)])
def test_mtj_rng_stuck(stuck, value):
    bits = MTJRng(230 * uA, stuck=stuck, seed=5).bits(1000)
    assert np.all(bits == value)


def test_mtj_rng_errors():
    with pytest.raises(ValueError, match=r"stuck must be None, '0' or '1', not 'x'"):
        MTJRng(stuck="x")
    with pytest.raises(ValueError, match=r"drift must be a finite number, not inf"):
        MTJRng(drift=float("inf"))
    with pytest.raises(ValueError, match=r"n must be a non-negative integer, not -1"):
        MTJRng().bits(-1)


# --- emulated generator ----------------------------------------------------------------------

def reference_bits(seed, threshold, w, n):
    """Independent plain-int reference of the RTL contract (docs/HARDWARE.md)."""
    s, out = seed, []
    for _ in range(n):
        s = (s ^ (s << 13)) & 0xFFFFFFFF
        s = s ^ (s >> 17)
        s = (s ^ (s << 5)) & 0xFFFFFFFF
        out.append(1 if (s >> (32 - w)) < threshold else 0)
    return out, s


@pytest.mark.parametrize("seed, w, thr", [(1, 16, None), (0xDEADBEEF, 16, 1 << 15),
                                          (2 ** 32 - 1, 8, 77), (12345, 32, 3 << 30),
                                          (7, 1, 1), (99, 16, 0), (99, 16, 1 << 16)])
def test_twin_matches_reference_bit_for_bit(seed, w, thr):
    thr = threshold_for(float(p_sw(230 * uA)), w) if thr is None else thr
    n = 100_000
    ref, final = reference_bits(seed, thr, w, n)
    rng = EmulatedRng(seed, thr, w)
    assert rng.state == seed
    pieces = [rng.bits(m) for m in (1, 4095, 1, 5000, 8192, n - 17289)]   # block boundaries
    got = np.concatenate(pieces)
    assert got.dtype == np.uint8 and got.size == n
    assert got.tolist() == ref
    assert rng.state == final


def test_threshold_quantisation():
    assert threshold_for(0.5) == 32768 and threshold_for(0.5, 8) == 128
    assert threshold_for(0.0) == 0 and threshold_for(1.0) == 65536
    assert threshold_for(1.5 / 2 ** 16) == 2                       # round half up
    p = float(p_sw(230 * uA))
    assert threshold_for(p) == 32768
    for w in (1, 4, 8, 16, 24, 32):
        for q in np.random.default_rng(w).random(200):
            assert abs(threshold_for(float(q), w) / 2 ** w - q) <= 2.0 ** -(w + 1)
    em = EmulatedRng.from_current(5, 230 * uA)
    assert em.threshold == 32768
    assert 0 <= 32768 / 2 ** 16 - em.p <= 2.0 ** -32                 # missing zero word
    bits = EmulatedRng(11, threshold_for(0.3)).bits(N_BITS)
    assert abs(bits.mean() - 0.3) < 4 * math.sqrt(0.21 / N_BITS)


def test_emulated_errors():
    with pytest.raises(ValueError, match=r"seed must be an integer in 1..2\*\*32-1 .*not 0"):
        EmulatedRng(0, 1)
    with pytest.raises(ValueError, match=r"seed must be an integer .*not 4294967296"):
        EmulatedRng(2 ** 32, 1)
    with pytest.raises(ValueError, match=r"threshold must be an integer in 0..2\*\*16, not 65537"):
        EmulatedRng(1, 2 ** 16 + 1)
    with pytest.raises(ValueError, match=r"threshold_bits must be an integer in 1..32, not 0"):
        EmulatedRng(1, 0, 0)
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\], not 1.5"):
        threshold_for(1.5)


def test_period_reduced_check():
    seed = 0x12345678
    states = EmulatedRng(seed, 1).states(1_000_000)
    assert not np.any(states == 0) and not np.any(states == seed)
    assert np.all(np.diff(np.sort(states)) != 0)                   # no repeat at all


def _mat_apply(cols, x):
    r = 0
    for j in range(32):
        if x >> j & 1:
            r ^= cols[j]
    return r


def _mat_pow(cols, e):
    result = [1 << j for j in range(32)]
    while e:
        if e & 1:
            result = [_mat_apply(cols, c) for c in result]
        cols = [_mat_apply(cols, c) for c in cols]
        e >>= 1
    return result


def test_full_period_by_matrix_order():
    """The step is x -> M x over GF(2); order(M) = 2^32 - 1 means every non-zero seed has
    period exactly 2^32 - 1 (the characteristic polynomial is then primitive)."""
    m = [xorshift32(1 << j) for j in range(32)]
    assert all(_mat_apply(m, x) == xorshift32(x) for x in (3, 0xDEADBEEF, 2 ** 32 - 1))
    period, identity = 2 ** 32 - 1, [1 << j for j in range(32)]
    primes = (3, 5, 17, 257, 65537)
    assert math.prod(primes) == period
    assert _mat_pow(m, period) == identity
    for q in primes:
        assert _mat_pow(m, period // q) != identity


def test_plot_mtj(tmp_path):
    out = plot_mtj(tmp_path / "fig" / "mtj.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["mtj.png"]


def test_known_answer_for_the_rtl():
    """docs/HARDWARE.md's vector: seed 1, 230 µA, W = 16."""
    em = EmulatedRng.from_current(1, 230 * uA)
    assert em.threshold == 32768
    assert em.bits(16).tolist() == [1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0]
    assert em.state == 0xC9C495B1
