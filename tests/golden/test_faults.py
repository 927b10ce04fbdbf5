"""Fault maps (golden/faults.py): determinism, realised rates, refused parameters, and the
integer reference under a fault map."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from spinbayes.golden.arbiter import arbiter_choices
from spinbayes.golden.faults import (
    RNG_CURRENT,
    ArbiterStuck,
    FaultSpec,
    build_fault_map,
    fault_choices,
    faulted_network,
    health_alarms,
)
from spinbayes.golden.hardware import HwLayer, HwNetwork
from spinbayes.golden.mtj import p_sw, threshold_for

HEALTHY = threshold_for(float(p_sw(RNG_CURRENT)), 16)


def _codes(seed=0, N=5, out=40, rows=50, Q=4):
    rng = np.random.default_rng(seed)
    q = 2 ** (Q - 1) - 1
    return [rng.integers(-q, q + 1, size=(N, out, rows)), rng.integers(-q, q + 1, (N, 10, out))]


def _within(k, n, p, z=5.0):
    """k ~ Binomial(n, p) lies within z standard deviations (two-sided tail < 6e-7 at 5)."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_zero_rates_give_the_intended_levels_and_healthy_devices():
    codes = _codes()
    fm = build_fault_map(codes, 4, FaultSpec(seed=7))
    for lv, tg, c, e in zip(fm.levels, fm.targets, codes, fm.codes()):
        assert lv.dtype == np.int8 and np.array_equal(lv, tg)
        assert np.array_equal(e, c)
    assert fm.rng_threshold.shape == (2, 3) and (fm.rng_threshold == HEALTHY).all()
    s = fm.summary()
    assert s["cells_wrong"] == s["retries"] == s["verify_caught"] == s["stuck_mtjs"] == 0


def test_a_fault_map_is_a_function_of_its_spec():
    codes = _codes()
    spec = FaultSpec(stuck_mtj=0.05, write_failure=0.1, variation=0.05, rng_stuck=0.3,
                     rng_bias=2e-6, seed=3)
    a, b = build_fault_map(codes, 4, spec), build_fault_map(codes, 4, spec)
    assert all(np.array_equal(x, y) for x, y in zip(a.levels, b.levels))
    assert np.array_equal(a.rng_threshold, b.rng_threshold) and a.stats == b.stats
    c = build_fault_map(codes, 4, dataclasses.replace(spec, seed=4))
    assert not all(np.array_equal(x, y) for x, y in zip(a.levels, c.levels))
    # one kind's rate leaves another kind's draws alone
    d = build_fault_map(codes, 4, dataclasses.replace(spec, write_failure=0.0))
    assert d.stats[0]["stuck_mtjs"] == a.stats[0]["stuck_mtjs"]
    assert np.array_equal(d.rng_threshold, a.rng_threshold)


def test_stuck_mtj_rate_is_realised_and_nested():
    codes = _codes()
    prev = None
    for rate in (0.05, 0.1, 0.2):
        fm = build_fault_map(codes, 4, FaultSpec(stuck_mtj=rate, seed=11))
        n = sum(s["mtjs"] for s in fm.stats)
        k = sum(s["stuck_mtjs"] for s in fm.stats)
        assert _within(k, n, rate), (k, n, rate)
        wrong = sum(s["cells_wrong"] for s in fm.stats)
        assert prev is None or wrong >= prev        # nested faults: never fewer wrong cells
        prev = wrong
        # stuck MTJs cannot be fixed: verify catches every wrong cell and retries to the cap
        assert all(s["verify_fixed"] == 0 and s["verify_failed"] == s["cells_wrong"]
                   for s in fm.stats)
        assert sum(s["retries"] for s in fm.stats) == 3 * wrong


def test_write_failure_rate_is_realised_in_the_first_write():
    """From an all-AP array a pair of target (l+, l-) needs l+ + l- switching MTJs; the first
    write is wrong with probability 1 - (1 - p)^(l+ + l-). The count of cells verify catches
    after the first write is a sum of those Bernoullis: within 5 sigma of its mean."""
    codes, p = _codes(), 0.05
    fm = build_fault_map(codes, 4, FaultSpec(write_failure=p, seed=5))
    q = np.concatenate([np.abs(t.astype(np.int64)).ravel() for t in fm.targets])
    probs = 1 - (1 - p) ** q
    caught = sum(s["verify_caught"] for s in fm.stats)
    assert abs(caught - probs.sum()) <= 5 * math.sqrt((probs * (1 - probs)).sum())
    # retries fix almost all; the rest failed 4 times in a row
    failed = sum(s["verify_failed"] for s in fm.stats)
    assert failed < 0.05 * caught and sum(s["verify_fixed"] for s in fm.stats) == caught - failed


def test_write_failure_one_never_switches_hand_computed():
    codes = [np.array([[[3, -2, 0]]]), np.array([[[1]]])]
    fm = build_fault_map(codes, 4, FaultSpec(write_failure=1.0, max_retries=2))
    assert all((lv == 0).all() for lv in fm.levels)
    # cells of 3 = (2, 1), -2 = (-1, -1), 0 = (0, 0), 1 = (1, 0): 5 non-zero cells of 8
    s = fm.summary()
    assert (s["cells"], s["cells_wrong"], s["verify_caught"], s["retries"]) == (8, 5, 5, 10)
    assert s["max_retries_cell"] == 2


def test_stuck_everything_in_p_or_ap_reads_zero():
    codes = _codes()
    for frac in (0.0, 1.0):
        fm = build_fault_map(codes, 4, FaultSpec(stuck_mtj=1.0, stuck_p_fraction=frac))
        assert all((c == 0).all() for c in fm.codes())


def test_variation_misreads_grow_with_sigma():
    codes = _codes()
    wrong = [build_fault_map(codes, 4, FaultSpec(variation=s, seed=2)).summary()["cells_wrong"]
             for s in (0.0, 0.02, 0.1, 0.3)]
    assert wrong[0] == 0 and wrong == sorted(wrong) and wrong[-1] > wrong[1]


def test_rng_faults():
    codes = [np.zeros((5, 2, 3), int)] * 40            # 40 layers: 120 devices
    fm = build_fault_map(codes, 4, FaultSpec(rng_stuck=0.25, seed=1))
    stuck = np.isin(fm.rng_threshold, (0, 2 ** 16))
    assert _within(int(stuck.sum()), stuck.size, 0.25)
    assert (fm.rng_threshold[~stuck] == HEALTHY).all()
    fm = build_fault_map(codes, 4, FaultSpec(rng_bias=2e-6, seed=1))
    p = fm.rng_p.ravel()
    assert np.array_equal(fm.rng_threshold.ravel(), [threshold_for(float(x), 16) for x in p])
    # p_sw rises about 0.038 per uA at 230 uA: the spread of p follows the current's
    assert 0.03 < np.std(p) < 0.12


@pytest.mark.parametrize("name", ["stuck_mtj", "stuck_p_fraction", "write_failure",
                                  "rng_stuck", "variation", "rng_bias"])
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), "0.1", True, None])
def test_bad_rates_are_refused(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be"):
        FaultSpec(**{name: bad})


@pytest.mark.parametrize("kw, match", [
    ({"variation": 1.01}, "variation must be a lognormal sigma in"),
    ({"rng_bias": 1e-3}, "rng_bias must be a current sigma in"),
    ({"max_retries": -1}, "max_retries must be an integer in 0..1000"),
    ({"max_retries": 1.0}, "max_retries must be an integer"),
    ({"seed": -1}, "seed must be an integer in"),
    ({"seed": 2 ** 32}, "seed must be an integer in"),
    ({"device": "x"}, "device must be a DeviceParams")])
def test_bad_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        FaultSpec(**kw)


def test_bad_arguments_of_build_fault_map():
    with pytest.raises(ValueError, match="spec must be a FaultSpec"):
        build_fault_map(_codes(), 4, {"stuck_mtj": 0.1})
    with pytest.raises(ValueError, match="codes must be a non-empty list"):
        build_fault_map([], 4, FaultSpec())
    with pytest.raises(ValueError, match="weight codes must lie in"):
        build_fault_map([np.full((2, 1, 1), 8)], 4, FaultSpec())


def _hand_network():
    """One linear layer, N = 2 crossbars, codes [[3, -2]] and [[1, 1]], y = S (frac 0)."""
    layer = HwLayer(kind="linear", codes=torch.tensor([[[3, -2]], [[1, 1]]]), in_bits=2,
                    scale=torch.tensor([1]), offset=torch.tensor([0]))
    return HwNetwork([layer], input_bits=2, flatten_input=True, N=2, Q=4, n_way=1)


def test_faulted_reference_hand_computed():
    hw = _hand_network()
    fm = build_fault_map([hw.layers[0].codes], 4, FaultSpec())
    # crossbar 0: 3 = (2, 1) in row 0, -2 = (-1, -1) in row 1; one MTJ of row 0's second
    # cell stuck in AP reads level 0: the effective code is 2 instead of 3
    assert fm.levels[0][0].tolist() == [[2, 1], [-1, -1]]
    fm.levels[0][0, 0, 1] = 0
    assert [c.tolist() for c in fm.codes()] == [[[[2, -2]], [[1, 1]]]]
    net = faulted_network(hw, fm)
    x = torch.tensor([[3, 1]])                       # input codes
    for crossbar, expect in ((0, 3 * 2 + 1 * -2), (1, 3 + 1)):
        ch = torch.full((1, 1, 1, 1), crossbar)
        assert net.run(x, ch).per_pass.item() == expect
    assert hw.run(x, torch.zeros(1, 1, 1, 1, dtype=torch.long)).per_pass.item() == 3 * 3 - 2
    with pytest.raises(ValueError, match="the fault map is for codes of shapes"):
        faulted_network(hw, build_fault_map([np.zeros((2, 1, 3), int)], 4, FaultSpec()))


def test_zero_rates_give_exactly_the_unfaulted_outputs(small_mapped, digits):
    hw = small_mapped.hw(1)
    codes = [layer.codes for layer in hw.layers]
    fm = build_fault_map(codes, 4, FaultSpec(seed=9))
    x = digits.x_test[:64]
    ch = fault_choices(fm, len(x), 4, 1, seed=9)
    assert torch.equal(ch, arbiter_choices(len(codes), len(x), 4, 5, 1, seed=9))
    assert torch.equal(faulted_network(hw, fm).run(x, ch).per_pass, hw.run(x, ch).per_pass)
    bad = build_fault_map(codes, 4, FaultSpec(stuck_mtj=0.2, seed=9))
    assert not torch.equal(faulted_network(hw, bad).run(x, ch).per_pass,
                           hw.run(x, ch).per_pass)


def test_stuck_arbiter_and_health_alarms():
    fm = build_fault_map(_codes(), 4, FaultSpec(seed=1))
    ok = fm.rng_threshold.copy()
    # layer 1's devices stuck at 1: every code is 7 >= N = 5, the arbiter never chooses
    fm.rng_threshold[1] = 2 ** 16
    with pytest.raises(ArbiterStuck, match="layer 1's arbiter hangs"):
        fault_choices(fm, 2, 2, 1, seed=0)
    fm.rng_threshold[1] = ok[1]
    fm.rng_threshold[0, 2] = 0                       # one device stuck at 0
    first = health_alarms(fm, seed=0, samples=4096)
    assert first[0, 2] == 21                         # the RCT at its cutoff C = 21
    assert (first[1] == 0).all()
    with pytest.raises(ValueError, match="samples must be an integer"):
        health_alarms(fm, seed=0, samples=0)


def test_with_codes_checks_its_codes():
    hw = _hand_network()
    for codes in ([torch.zeros(2, 1, 3, dtype=torch.long)], []):
        with pytest.raises(ValueError, match="one tensor per layer, each of its layer's shape"):
            hw.with_codes(codes)
    assert hw.with_codes([torch.zeros(2, 1, 2)]).layers[0].codes.dtype == torch.long
