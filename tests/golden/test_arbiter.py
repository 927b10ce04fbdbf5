"""The stochastic arbiter: rejection sampling, n-way, bias and stuck devices (golden/arbiter.py)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import chisquare

from spinbayes.golden.arbiter import Arbiter, choice_probabilities, code_bits, expected_draws
from spinbayes.golden.mtj import EmulatedRng, MTJRng, current_for_probability, threshold_for

uA = 1e-6
P_MIN = 1e-3


def fair(seed):
    return MTJRng(230 * uA, seed=seed)


def counts(choices, N):
    return np.bincount(choices.ravel(), minlength=N)


@pytest.mark.parametrize("N", [2, 3, 5, 7, 8])
def test_uniform_single_way(N):
    passes = 3000 * N
    arb = Arbiter(N, 1, fair(seed=100 + N))
    ch = arb.choose(passes)
    assert ch.shape == (passes, 1) and ch.dtype == np.int64
    assert ch.min() >= 0 and ch.max() < N
    assert chisquare(counts(ch, N)).pvalue > P_MIN
    assert arb.bits_used == arb.k * arb.draws == arb.source.n_bits   # never reads ahead


@pytest.mark.parametrize("N", [3, 5, 7])
def test_uniform_with_emulated_source(N):
    src = EmulatedRng(0xC0FFEE + N, threshold_for(0.5))
    ch = Arbiter(N, 1, src).choose(3000 * N)
    assert chisquare(counts(ch, N)).pvalue > P_MIN


def test_uniform_two_of_five_subsets():
    passes = 20_000
    arb = Arbiter(5, 2, fair(seed=7))
    ch = arb.choose(passes)
    assert ch.shape == (passes, 2)
    assert np.all(ch[:, 0] < ch[:, 1])                               # distinct, sorted
    subsets = list(itertools.combinations(range(5), 2))
    index = {s: i for i, s in enumerate(subsets)}
    c = np.bincount([index[tuple(r)] for r in ch.tolist()], minlength=10)
    assert c.size == 10 and chisquare(c).pvalue > P_MIN
    assert abs(arb.draws / passes - 3.6) < 4 * math.sqrt((0.96 + 2.0) / passes)


def test_modulo_mapping_would_fail():
    """The same bits mapped by code % 5 are visibly non-uniform: the chi-square can fail."""
    bits = fair(seed=11).bits(3 * 15_000).reshape(-1, 3)
    codes = bits @ np.array([4, 2, 1])
    modulo = counts(codes % 5, 5)
    assert chisquare(modulo).pvalue < 1e-12
    rejected = counts(Arbiter(5, 1, fair(seed=11)).choose(15_000), 5)
    assert chisquare(rejected).pvalue > P_MIN


def test_mean_draws_n5():
    passes = 20_000
    arb = Arbiter(5, 1, fair(seed=12))
    arb.choose(passes)
    # draws per pass ~ geometric(5/8): mean 8/5, variance (3/8)/(5/8)^2 = 0.96
    assert abs(arb.draws / passes - 1.6) < 4 * math.sqrt(0.96 / passes)
    assert arb.rejections == arb.draws - passes
    assert arb.expected_draws == Fraction(8, 5)


def test_expected_draws_table():
    table = {N: expected_draws(N) for N in range(1, 9)}
    assert table == {1: 0, 2: 1, 3: Fraction(4, 3), 4: 1, 5: Fraction(8, 5), 6: Fraction(4, 3),
                     7: Fraction(8, 7), 8: 1}
    assert [code_bits(N) for N in range(1, 10)] == [0, 1, 2, 2, 3, 3, 3, 3, 4]
    assert expected_draws(5, 2) == Fraction(8, 5) + Fraction(8, 4)
    assert expected_draws(8, 8) == sum(Fraction(8, 8 - j) for j in range(8))


def exact_distribution(N, p):
    """Enumerate every k-bit string, keep codes < N (rejection), renormalise."""
    k = max(1, math.ceil(math.log2(N))) if N > 1 else 0
    prob = np.zeros(N)
    for bits in itertools.product((0, 1), repeat=k):
        code = int("".join(map(str, bits)), 2)
        if code < N:
            prob[code] += math.prod(p if b else 1 - p for b in bits)
    return prob / prob.sum()


@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_bias_sweep(p):
    N, passes = 5, 40_000
    src = MTJRng(current_for_probability(p), seed=int(p * 100))
    freq = counts(Arbiter(N, 1, src).choose(passes), N)
    exact = exact_distribution(N, p)
    assert np.allclose(choice_probabilities(N, p), exact, atol=1e-12)
    assert chisquare(freq, exact * passes).pvalue > P_MIN             # matches the analysis
    assert np.abs(freq / passes - exact).max() < 0.01
    if p == 0.5:
        assert np.allclose(exact, 0.2) and chisquare(freq).pvalue > P_MIN
        return
    assert chisquare(freq).pvalue < 1e-6                              # detectably skewed
    ones = np.array([bin(c).count("1") for c in range(N)])            # codes 000..100
    # p > 0.5 favours crossbars whose codes have more 1 bits (3 = 011), p < 0.5 fewer (0 = 000)
    favoured = 3 if p > 0.5 else 0
    assert freq.argmax() == exact.argmax() == favoured
    assert np.sign(np.corrcoef(ones, freq)[0, 1]) == np.sign(p - 0.5)
    # p = 0.7: P(3) = .7^2 .3 / (.3^3 + 3 .7 .3^2 + .7^2 .3) = 0.147 / 0.363 = 0.405 vs 1/5;
    # p = 0.3: P(0) = 0.343 / (0.343 + 3 * 0.147 + 0.063) = 0.343 / 0.847 = 0.405
    expected_top = {0.7: 0.147 / 0.363, 0.3: 0.343 / 0.847}[p]
    assert exact[favoured] == pytest.approx(expected_top, rel=1e-3)


def test_stuck_device_detected():
    ch = Arbiter(4, 1, MTJRng(stuck="0", seed=0)).choose(2000)
    assert np.all(ch == 0)
    assert chisquare(counts(ch, 4)).pvalue < 1e-6
    assert np.all(Arbiter(8, 1, MTJRng(stuck="1", seed=0)).choose(100) == 7)
    with pytest.raises(RuntimeError, match=r"arbiter rejected 513 draws in a row .*stuck"):
        Arbiter(5, 1, MTJRng(stuck="1", seed=0)).choose(10)         # code 7 >= 5 forever
    with pytest.raises(RuntimeError, match=r"rejected 11 draws in a row"):
        Arbiter(4, 2, MTJRng(stuck="0", seed=0), max_redraws=10).choose(3)


def test_single_crossbar_uses_no_bits():
    src = fair(seed=0)
    arb = Arbiter(1, 1, src)
    assert arb.k == 0
    assert np.array_equal(arb.choose(50), np.zeros((50, 1), dtype=np.int64))
    assert arb.draws == arb.bits_used == 0 and src.n_bits == 0


def test_reproducible_from_seed_and_split_calls():
    a = Arbiter(5, 2, EmulatedRng(42, threshold_for(0.5)))
    whole = a.choose(500)
    b = Arbiter(5, 2, EmulatedRng(42, threshold_for(0.5)))
    parts = np.concatenate([b.choose(1), b.choose(0), b.choose(199), b.choose(300)])
    assert np.array_equal(whole, parts)
    assert (a.draws, a.bits_used) == (b.draws, b.bits_used)
    twin = EmulatedRng(42, threshold_for(0.5))
    twin.bits(a.bits_used)
    assert twin.state == a.source.state                               # consumed exactly bits_used


def test_msb_first_bit_order():
    class Fixed:
        def __init__(self, bits):
            self.stream = list(bits)

        def bits(self, n):
            out, self.stream = self.stream[:n], self.stream[n:]
            return np.array(out, dtype=np.uint8)

    # N = 5, k = 3: 110 (6, rejected), 011 (3), 100 (4), 001 (1)
    arb = Arbiter(5, 1, Fixed([1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1]))
    assert arb.choose(3).ravel().tolist() == [3, 4, 1]
    assert (arb.draws, arb.rejections, arb.bits_used) == (4, 1, 12)
    # 2-way, N = 3, k = 2: 01, 01 (repeat), 11 (>= 3), 00 -> {0, 1}
    arb = Arbiter(3, 2, Fixed([0, 1, 0, 1, 1, 1, 0, 0]))
    assert arb.choose(1).tolist() == [[0, 1]] and arb.rejections == 2


def test_arbiter_errors():
    with pytest.raises(ValueError, match=r"N must be a positive integer, not 0"):
        Arbiter(0, 1, fair(0))
    with pytest.raises(ValueError, match=r"n_way must be an integer in 1..N=5, not 6"):
        Arbiter(5, 6, fair(0))
    with pytest.raises(ValueError, match=r"rng_bits_source must be an object with a .bits\(n\)"):
        Arbiter(5, 1)
    with pytest.raises(ValueError, match=r"passes must be a non-negative integer, not 2.5"):
        Arbiter(5, 1, fair(0)).choose(2.5)
    with pytest.raises(ValueError, match=r"p_one must be a number in \(0, 1\), not 1"):
        choice_probabilities(5, 1)


# --- The RTL's emulated arbiters, reproduced from a seed -----------------------------------

def test_arbiter_choices_drive_the_golden_model(small_model, digits):
    import torch

    from spinbayes.golden.approximation import approximate
    from spinbayes.golden.arbiter import arbiter_choices
    from spinbayes.golden.hardware import fold_network
    from spinbayes.golden.inference import SpinBayesNet

    ch = arbiter_choices(2, 30, 10, 5, 1, seed=7)
    assert ch.shape == (2, 30, 10, 1) and ch.dtype == torch.int64
    assert torch.equal(ch, arbiter_choices(2, 30, 10, 5, 1, seed=7))      # from the seed alone
    assert not torch.equal(ch, arbiter_choices(2, 30, 10, 5, 1, seed=8))
    assert not torch.equal(ch[0], ch[1])                                  # layers independent
    images = approximate(small_model, 5, 4)
    net = SpinBayesNet(images, small_model, 1)
    out = net(digits.x_test[:30], choices=ch)
    hw = fold_network(net, images).run(digits.x_test[:30], ch)
    assert out.logits.shape == hw.per_pass.shape == (30, 10, 10)


def test_arbiter_choices_are_uniform_for_N5():
    from spinbayes.golden.arbiter import arbiter_choices

    ch = arbiter_choices(1, 400, 10, 5, 1, seed=1).reshape(-1).numpy()
    assert chisquare(np.bincount(ch, minlength=5)).pvalue > 1e-3
    pairs = arbiter_choices(1, 200, 10, 5, 2, seed=2).reshape(-1, 2).numpy()
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(5), 2))}
    counts = np.bincount([subsets[tuple(r)] for r in pairs.tolist()], minlength=10)
    assert chisquare(counts).pvalue > 1e-3


def test_device_bank_interleaves_devices():
    from spinbayes.golden.arbiter import DeviceBank, device_seed

    class Const:
        def __init__(self, v):
            self.v = v

        def bits(self, n):
            return np.full(n, self.v, dtype=np.uint8)

    bank = DeviceBank([Const(1), Const(0), Const(1)])
    assert bank.bits(6).tolist() == [1, 0, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="multiples of 3, not 4"):
        bank.bits(4)
    seeds = {device_seed(0, layer, d, 3) for layer in range(4) for d in range(3)}
    assert len(seeds) == 12 and 0 not in seeds
