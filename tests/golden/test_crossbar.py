"""Behavioural multi-level SOT cells, crossbar and flash ADC (golden/crossbar.py)."""

import numpy as np
import pytest

from spinbayes.golden.cells import cells_per_weight
from spinbayes.golden.crossbar import (
    MTJ_SWITCH_VOLTAGE,
    RWL_VOLTAGE_FOR_LEVEL,
    WRITE_CURRENT,
    Crossbar,
    DeviceParams,
    FlashADC,
    NonIdeal,
    switched_mtjs,
    write_failure_probability,
)


def _random_case(rng, Q=4, rows=None, out=None):
    rows = rows or int(rng.integers(1, 71))
    out = out or int(rng.integers(1, 13))
    q = 2 ** (Q - 1) - 1
    return rng.integers(-q, q + 1, (out, rows)), rng.integers(0, 2, rows)


# --- cell levels ---------------------------------------------------------------------------

def test_device_levels_tmr_and_resistances():
    dev = DeviceParams()
    assert dev.tmr == pytest.approx(1.2)
    assert 2.5e6 <= dev.r_p < dev.r_ap <= 5.5e6
    assert dev.mtjs_per_cell == 4
    g = dev.conductance(np.arange(5))
    assert np.all(np.diff(g) > 0)                                   # 5 distinct, monotone
    assert 1 / g.max() == pytest.approx(dev.r_p / 4)                # 4 MTJs in parallel
    assert 1 / g.min() == pytest.approx(dev.r_ap / 4)
    i = dev.current(np.arange(5))
    assert np.diff(i) == pytest.approx(np.full(4, dev.i_unit))
    assert dev.current(4) == pytest.approx(160e-9) and dev.i_unit == pytest.approx(21.818e-9, 1e-4)


def test_pair_gives_nine_signed_levels():
    dev = DeviceParams()
    pairs = [(max(d, 0), max(-d, 0)) for d in range(-4, 5)]
    delta = [dev.current(p) - dev.current(n) for p, n in pairs]
    assert np.allclose(np.array(delta) / dev.i_unit, np.arange(-4, 5))
    assert len({round(x / dev.i_unit) for x in delta}) == 9


# --- ADC -----------------------------------------------------------------------------------

@pytest.mark.parametrize("R, bits", [(1, 4), (4, 6), (8, 7)])
def test_adc_resolution_saturation_and_ties(R, bits):
    adc = FlashADC(R)
    u = adc.device.i_unit
    assert adc.bits == bits and adc.full_scale == 4 * R and adc.references.size == 8 * R
    m = np.arange(-4 * R, 4 * R + 1)
    assert np.array_equal(adc.convert(m * u), m)                            # exact levels
    assert np.array_equal(adc.convert((m + 0.49) * u), m)
    assert np.array_equal(adc.convert(adc.references), m[1:])               # ties go up
    assert np.array_equal(adc.convert(np.nextafter(adc.references, -1)), m[:-1])
    assert adc.convert([1.0, -1.0, np.inf, -np.inf]).tolist() == [4 * R, -4 * R] * 2
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert lo <= -4 * R and 4 * R <= hi and (4 * R).bit_length() + 1 == bits


# --- ideal mode ----------------------------------------------------------------------------

def test_ideal_reads_equal_integer_partial_sums_and_mvm():
    """200 random crossbars: every ADC code == exact partial sum; AAC of the codes == codes @ x."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        Q, R = int(rng.choice([3, 4, 5])), int(rng.choice([1, 4, 4, 8]))
        codes, x = _random_case(rng, Q)
        xb = Crossbar.from_weights(codes, Q, rows_parallel=R)
        k = cells_per_weight(Q)
        assert xb.shape == (codes.shape[1], codes.shape[0] * k)
        p = xb.mvm_bitplane(x)
        assert np.array_equal(p, xb.ideal_partial_sums(x))
        assert np.abs(p).max(initial=0) <= 4 * R
        g = int(rng.integers(xb.n_groups))
        xg = np.pad(x, (0, xb.n_groups * R - x.size))[g * R:(g + 1) * R]
        assert np.array_equal(xb.read(g, xg), p[g])
        assert np.array_equal(p.sum(0).reshape(-1, k).sum(1), codes @ x)


def test_from_levels_and_last_partial_group():
    lp = np.array([[4, 0], [2, 1], [3, 3], [0, 4], [1, 0]])
    ln = np.array([[0, 4], [0, 0], [1, 0], [0, 0], [0, 2]])
    xb = Crossbar(lp, ln)
    assert xb.n_groups == 2 and np.array_equal(xb.levels_pos, lp)
    assert xb.read(0, [1, 1, 1, 1]).tolist() == [4 + 2 + 2 + 0, -4 + 1 + 3 + 4]
    assert xb.read(1, [1, 1, 1, 1]).tolist() == [1, -2]          # rows 5..7 missing: input 0


# --- non-ideal mode ------------------------------------------------------------------------

def _error_rate(nonideal, reads=20):
    rng = np.random.default_rng(1)
    codes, _ = _random_case(rng, 4, rows=64, out=16)
    xb = Crossbar.from_weights(codes, 4, nonideal=nonideal)
    wrong = total = 0
    for _ in range(reads):
        x = rng.integers(0, 2, 64)
        p = xb.mvm_bitplane(x)
        wrong += int((p != xb.ideal_partial_sums(x)).sum())
        total += p.size
    return wrong / total


def test_resistance_variation_errors_grow_with_sigma_and_are_seeded():
    rates = [_error_rate(NonIdeal(sigma_r=s, seed=3)) for s in (0.0, 0.03, 0.06, 0.12)]
    assert rates[0] == 0 and 0 < rates[1] < 0.01                   # about 0.1 %, 8 %, 34 %
    assert rates[1] < rates[2] < rates[3] and rates[3] > 0.2
    assert _error_rate(NonIdeal(sigma_r=0.06, seed=3)) == rates[2]
    assert _error_rate(NonIdeal(sigma_r=0.06, seed=4)) != rates[2]


def test_read_noise_errors_grow_and_are_seeded():
    rates = [_error_rate(NonIdeal(read_noise=s, seed=5)) for s in (0.1, 0.3, 0.6)]
    # P(|N(0, s)| > 1/2): 5.7e-7, 0.096, 0.40
    assert rates[0] < 0.005 and 0.05 < rates[1] < 0.15 and 0.3 < rates[2] < 0.5
    assert _error_rate(NonIdeal(read_noise=0.3, seed=5)) == rates[1]
    # a read error is a few LSB at most
    xb = Crossbar.from_weights(np.full((4, 8), 7), 4, nonideal=NonIdeal(read_noise=0.3))
    p = xb.mvm_bitplane(np.ones(8, int))
    assert np.abs(p - xb.ideal_partial_sums(np.ones(8, int))).max() <= 2


def test_stuck_mtjs_change_the_stored_levels():
    rng = np.random.default_rng(2)
    codes, _ = _random_case(rng, 4, rows=40, out=10)
    ideal = Crossbar.from_weights(codes, 4)
    xp = Crossbar.from_weights(codes, 4, nonideal=NonIdeal(stuck_p=0.05, seed=1))
    xa = Crossbar.from_weights(codes, 4, nonideal=NonIdeal(stuck_ap=0.05, seed=1))
    assert np.array_equal(xp.target_pos, ideal.levels_pos)
    assert (xp.levels_pos >= ideal.levels_pos).all() and (xp.levels_pos > ideal.levels_pos).any()
    assert (xa.levels_neg <= ideal.levels_neg).all() and (xa.levels_neg < ideal.levels_neg).any()
    x = np.ones(40, int)
    assert np.array_equal(xp.mvm_bitplane(x), xp.ideal_partial_sums(x))   # exact read of them
    assert not np.array_equal(xp.ideal_partial_sums(x), ideal.ideal_partial_sums(x))
    all_p = Crossbar(np.zeros((3, 2), int), np.zeros((3, 2), int), nonideal=NonIdeal(stuck_p=1))
    assert (all_p.levels_pos == 4).all() and (all_p.levels_neg == 4).all()


# --- programming (Fig. 5b) -----------------------------------------------------------------

def test_rwl_table_switches_m4_first():
    assert RWL_VOLTAGE_FOR_LEVEL[0] == 0.0 and RWL_VOLTAGE_FOR_LEVEL[4] == 1.0
    order = ("M4", "M3", "M2", "M1")
    for level, v in RWL_VOLTAGE_FOR_LEVEL.items():
        assert switched_mtjs(v) == order[:level]
    assert switched_mtjs(1.0) == order and switched_mtjs(0.1) == ()
    assert list(MTJ_SWITCH_VOLTAGE) == list(order) and WRITE_CURRENT == 500e-6
    volts = np.linspace(0, 1.2, 121)
    counts = [len(switched_mtjs(float(v))) for v in volts]
    assert np.all(np.diff(counts) >= 0)


def test_write_failure_probability_vs_current():
    """1 - p_sw of eq. 5 (golden/mtj.py): floor exp(-t/tau0) = 4.5e-5 from 256 uA up."""
    assert write_failure_probability(500e-6) == pytest.approx(np.exp(-10), rel=1e-6)
    assert write_failure_probability(300e-6) == write_failure_probability(500e-6)
    assert write_failure_probability(230e-6) == pytest.approx(0.5, abs=0.01)   # Fig. 4
    assert write_failure_probability(10e-6) > 0.999
    currents = np.linspace(10e-6, 2e-3, 200)
    assert np.all(np.diff([write_failure_probability(float(i)) for i in currents]) <= 0)


def _reduced_current():
    """A current with a clear per-MTJ failure probability, 0.1 .. 0.3 (bisection)."""
    lo, hi = 100e-6, 500e-6
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if write_failure_probability(mid) > 0.2 else (lo, mid)
    return hi


def test_programming_verifies_at_500ua():
    rng = np.random.default_rng(3)
    codes, x = _random_case(rng, 4, rows=30, out=6)
    xb = Crossbar(np.full((30, 12), 4), np.full((30, 12), 2), nonideal=NonIdeal(seed=1))
    assert xb.program_weights(codes, 4).shape == (0, 2)
    ref = Crossbar.from_weights(codes, 4)
    assert np.array_equal(xb.levels_pos, ref.levels_pos)
    assert np.array_equal(xb.levels_neg, ref.levels_neg)
    assert np.array_equal(xb.mvm_bitplane(x), ref.mvm_bitplane(x))


def test_reduced_current_fails_and_retries_help():
    i = _reduced_current()
    assert 0.1 < write_failure_probability(i) < 0.3
    codes = np.random.default_rng(4).integers(-7, 8, (10, 40))
    failed = []
    for retries in (0, 1, 3, 8):
        xb = Crossbar(np.zeros((40, 20), int), np.zeros((40, 20), int), nonideal=NonIdeal(seed=2))
        bad = xb.program_weights(codes, 4, i_write=i, max_retries=retries)
        ok = np.ones(xb.shape, bool)
        ok[tuple(bad.T)] = False
        assert np.array_equal((xb.levels_pos == xb.target_pos) & (xb.levels_neg == xb.target_neg),
                              ok)
        failed.append(len(bad))
    assert failed[0] > 50 and failed[0] > failed[1] > failed[2] > failed[3]


def test_tiny_current_never_verifies_and_is_reported():
    xb = Crossbar(np.zeros((2, 3), int), np.zeros((2, 3), int))
    failed = xb.program([0, 1], [2, 0], [3, 0], [0, 0], i_write=10e-6)
    assert failed.tolist() == [True, False]                  # (1, 0): level 0 = nothing to do
    assert xb.levels_pos[0, 2] == 0 and xb.target_pos[0, 2] == 3
    assert xb.program(0, 2, 3, 0).item() is False and xb.levels_pos[0, 2] == 3


def test_stuck_mtj_cell_is_reported_by_verify():
    xb = Crossbar(np.zeros((4, 4), int), np.zeros((4, 4), int),
                  nonideal=NonIdeal(stuck_ap=0.2, seed=0))
    bad = xb.program_weights(np.full((2, 4), 7), 4)
    assert len(bad) > 0
    for r, c in bad:
        assert xb.levels_pos[r, c] < xb.target_pos[r, c]


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"r_p": 0.0}, "r_p must be a positive number, not 0.0"),
    ({"r_ap": 2e6}, "r_ap must be greater than r_p"),
    ({"v_read": float("nan")}, "v_read must be a positive number, not nan"),
])
def test_bad_device(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeviceParams(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma_r": -0.1}, r"sigma_r must be a number >= 0, not -0.1"),
    ({"read_noise": float("nan")}, "read_noise must be a number >= 0, not nan"),
    ({"stuck_p": 1.5}, r"stuck_p must be a number in \[0, 1\], not 1.5"),
    ({"stuck_p": 0.6, "stuck_ap": 0.6}, r"stuck_p \+ stuck_ap must be <= 1"),
    ({"seed": -1}, "seed must be an integer >= 0, not -1"),
])
def test_bad_nonideal(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonIdeal(**kwargs)


def test_bad_adc_and_currents():
    for R in (0, -1, 2.0, True):
        msg = f"rows_parallel must be a positive integer, not {R!r}"
        with pytest.raises(ValueError, match=msg):
            FlashADC(R)
    with pytest.raises(ValueError, match="differential current must not be NaN"):
        FlashADC().convert([0.0, float("nan")])
    with pytest.raises(ValueError, match="i_write must be a positive number, not 0"):
        write_failure_probability(0)
    with pytest.raises(ValueError, match="v_rwl must be a number >= 0, not -0.5"):
        switched_mtjs(-0.5)


def test_bad_levels_codes_and_bits():
    z = np.zeros((5, 3), int)
    with pytest.raises(ValueError, match=r"level_pos must lie in 0..4, found 0..5"):
        Crossbar(z + np.eye(5, 3, dtype=int) * 5, z)
    with pytest.raises(ValueError, match="level_neg must be integers, not float64"):
        Crossbar(z, z.astype(float))
    with pytest.raises(ValueError, match=r"one shape, not \(5, 3\) and \(5, 2\)"):
        Crossbar(z, z[:, :2])
    with pytest.raises(ValueError, match=r"weight codes must lie in -7..7 for Q=4, found 8"):
        Crossbar.from_weights(np.full((2, 3), 8), 4)
    with pytest.raises(ValueError, match=r"codes must be a non-empty 2-D array \(out, in\)"):
        Crossbar.from_weights(np.zeros(3, int), 4)
    xb = Crossbar(z, z)
    with pytest.raises(ValueError, match=r"input_bits must have shape \(4,\), not \(3,\)"):
        xb.read(0, [1, 0, 1])
    with pytest.raises(ValueError, match="input_bits must be 0 or 1"):
        xb.read(0, [0, 2, 0, 1])
    with pytest.raises(ValueError, match=r"input_bits must have shape \(5,\), not \(4,\)"):
        xb.mvm_bitplane([1, 0, 1, 1])
    with pytest.raises(ValueError, match=r"row_group must be an integer in 0..1, not 2"):
        xb.read(2, [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"row must be integers in 0..4"):
        xb.program(5, 0, 1, 0)
    with pytest.raises(ValueError, match=r"level_neg must lie in 0..4, found -1..-1"):
        xb.program(0, 0, 1, -1)
    with pytest.raises(ValueError, match="max_retries must be an integer >= 0, not -1"):
        xb.program(0, 0, 1, 0, max_retries=-1)
    with pytest.raises(ValueError, match=r"codes give a \(3, 2\) array, the crossbar is \(5, 3\)"):
        xb.program_weights(np.zeros((1, 3), int), 4)
