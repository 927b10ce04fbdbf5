"""The stochastic arbiter (paper sections 3.3, 3.5.1): n of N crossbars per layer and pass.

Per draw it takes k = ceil(log2 N) bits from a random bit source (an :class:`~.mtj.MTJRng`,
an :class:`~.mtj.EmulatedRng` or anything with ``.bits(n)``) and forms the DEMUX code, first
bit = MSB: code = sum_i b_i 2^(k-1-i). A code >= N is rejected and redrawn, so every crossbar
is chosen with probability exactly 1/N (a modulo mapping would not be uniform). In n-way mode
the arbiter repeats draws until it holds n distinct crossbars, rejecting repeats as well; the
pass's crossbars are reported sorted ascending, as ``inference.sample_choices`` does. The
contract for the RTL is written out in docs/HARDWARE.md ("Arbiter").
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["code_bits", "expected_draws", "choice_probabilities", "Arbiter", "DeviceBank",
           "device_seed", "arbiter_choices"]


def _check_int(name, value, lo, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return int(value)


def code_bits(N: int) -> int:
    """k = ceil(log2 N) bits per draw (0 for N = 1)."""
    N = _check_int("N", N, 1, "a positive integer")
    return (N - 1).bit_length()


def expected_draws(N: int, n_way: int = 1) -> Fraction:
    """Expected codes drawn per pass: sum over j < n of 2^k / (N - j) (exact, a Fraction).

    With j distinct crossbars held, a draw is accepted with probability (N - j) / 2^k, so the
    number of draws for the next one is geometric with mean 2^k / (N - j). For n = 1 this is
    2^k / N, e.g. 8/5 for the paper's N = 5. Multiply by k for the expected bits.
    """
    k = code_bits(N)
    n_way = _check_int("n_way", n_way, 1, f"an integer in 1..N={N}")
    if n_way > N:
        raise ValueError(f"n_way must be an integer in 1..N={N}, not {n_way!r}")
    return sum((Fraction(2 ** k, N - j) for j in range(n_way)), Fraction(0)) if k else Fraction(0)


def choice_probabilities(N: int, p_one: float) -> np.ndarray:
    """Exact P(crossbar c), n = 1, when every bit is independently 1 with probability p_one.

    P(code c) = p^w (1-p)^(k-w), w = popcount(c); rejection renormalises over c < N. With
    p_one = 0.5 this is 1/N; otherwise crossbars whose code has more 1 bits are favoured for
    p_one > 0.5 (and disfavoured for p_one < 0.5).
    """
    k = code_bits(N)
    if isinstance(p_one, bool) or not isinstance(p_one, (int, float)) or not 0 < p_one < 1:
        raise ValueError(f"p_one must be a number in (0, 1), not {p_one!r}")
    w = np.array([bin(c).count("1") for c in range(N)])
    prob = p_one ** w * (1 - p_one) ** (k - w)
    return prob / prob.sum()


class Arbiter:
    """One layer's arbiter: ``choose(passes)`` -> (passes, n_way) crossbar indices.

    Parameters
    ----------
    N : int
        Crossbars in the layer (the DEMUX has 2^k outputs, k = ceil(log2 N); N = 1 uses no
        bits and always returns crossbar 0).
    n_way : int
        Distinct crossbars per pass, 1..N.
    rng_bits_source : object with ``bits(n) -> array of 0/1``
        Consumed strictly in order, k bits per draw, pass after pass. The arbiter never reads
        ahead: after any call the source has advanced by exactly the bits counted in
        :attr:`bits_used`, so a twin source with the same seed reproduces the RTL's choices.
    max_redraws : int or None
        Guard against a hung arbiter: more consecutive rejected draws than this raises
        RuntimeError (a stuck-at-1 device with N not a power of two, or a stuck device with
        n > 1, never completes a selection). Default 64 * 2^k: a draw is rejected with
        probability <= 1 - 2^-k under fair bits, so a false alarm has probability <= e^-64.

    Attributes
    ----------
    draws : int
        Codes drawn so far, including rejected ones.
    rejections : int
        Codes rejected (code >= N, or a crossbar already chosen in this pass).
    bits_used : int
        Bits taken from the source, k * draws.
    """

    def __init__(self, N: int, n_way: int = 1, rng_bits_source=None,
                 max_redraws: int | None = None):
        self.k = code_bits(N)
        self.N = int(N)
        expected_draws(N, n_way)  # checks n_way
        self.n_way = int(n_way)
        if not callable(getattr(rng_bits_source, "bits", None)):
            raise ValueError("rng_bits_source must be an object with a .bits(n) method, not "
                             f"{rng_bits_source!r}")
        self.source = rng_bits_source
        self.max_redraws = (64 << self.k if max_redraws is None else
                            _check_int("max_redraws", max_redraws, 1, "a positive integer"))
        self.draws = self.rejections = self.bits_used = 0

    def _codes(self, m: int) -> list[int]:
        bits = np.asarray(self.source.bits(m * self.k)).astype(np.int64)
        if bits.shape != (m * self.k,) or np.any((bits != 0) & (bits != 1)):
            raise ValueError(f"rng_bits_source.bits({m * self.k}) must return that many 0/1 "
                             "values")
        self.draws += m
        self.bits_used += m * self.k
        weights = 1 << np.arange(self.k - 1, -1, -1, dtype=np.int64)  # first bit = MSB
        return (bits.reshape(m, self.k) @ weights).tolist()

    def choose(self, passes: int) -> np.ndarray:
        """Crossbar choices for ``passes`` forward passes, int64 (passes, n_way), rows sorted."""
        passes = _check_int("passes", passes, 0, "a non-negative integer")
        n = self.n_way
        out = np.zeros((passes, n), dtype=np.int64)
        if self.k == 0:
            return out
        p, held, streak = 0, [], 0
        while p < passes:
            # Every outstanding slot needs at least one more draw: fetching exactly that many
            # codes never reads past what the sequential hardware would consume.
            for code in self._codes((passes - p) * n - len(held)):
                if code >= self.N or code in held:
                    self.rejections += 1
                    streak += 1
                    if streak > self.max_redraws:
                        raise RuntimeError(
                            f"arbiter rejected {streak} draws in a row (N={self.N}, "
                            f"n_way={n}); is the random bit source stuck?")
                    continue
                held.append(code)
                streak = 0
                if len(held) == n:
                    out[p] = sorted(held)
                    p, held = p + 1, []
        return out

    @property
    def expected_draws(self) -> Fraction:
        """Expected draws per pass, :func:`expected_draws` (N, n_way)."""
        return expected_draws(self.N, self.n_way)

    def __repr__(self):
        return (f"Arbiter(N={self.N}, n_way={self.n_way}, k={self.k}, draws={self.draws}, "
                f"bits_used={self.bits_used})")



class DeviceBank:
    """The k stochastic devices of one arbiter, read in parallel (paper: log2 N RNGs/layer).

    ``bits(n)`` returns, draw after draw, device 0's bit (the code's MSB), device 1's bit, ...
    device k-1's bit; n must be a multiple of k. Each device is any ``bits(n)`` source.
    """

    def __init__(self, sources: list):
        self.sources = list(sources)

    def bits(self, n: int) -> np.ndarray:
        k = len(self.sources)
        if k == 0:
            if n:
                raise ValueError("a bank without devices cannot produce bits")
            return np.zeros(0, dtype=np.uint8)
        if n % k:
            raise ValueError(f"a bank of {k} devices produces bits in multiples of {k}, "
                             f"not {n}")
        cols = [np.asarray(s.bits(n // k), dtype=np.uint8) for s in self.sources]
        return np.stack(cols, axis=1).reshape(-1)


def device_seed(seed: int, layer: int, device: int, k: int) -> int:
    """The xorshift32 seed of device ``device`` of layer ``layer``'s arbiter.

    A firmware convention, so one integer seeds a whole network:
    (seed * 0x9E3779B1 + (layer * k + device + 1) * 0x85EBCA77) mod 2^32, and 1 if that is 0.
    """
    s = (int(seed) * 0x9E3779B1 + (layer * k + device + 1) * 0x85EBCA77) % 2 ** 32
    return s or 1


def arbiter_choices(L: int, B: int, T: int, N: int, n_way: int = 1, *, seed: int,
                    current: float = 230e-6, threshold_bits: int = 16):
    """The crossbar choices (L, B, T, n) the RTL's emulated arbiters make from ``seed``.

    Layer l's arbiter has k = ceil(log2 N) emulated SOT-MTJ devices
    (:class:`~spinbayes.golden.mtj.EmulatedRng` at the bias ``current``, seeds from
    :func:`device_seed`) and serves image after image, pass after pass. Feed the result to
    ``SpinBayesNet(..., choices=...)`` or ``HwNetwork.run`` to reproduce the RTL's draws from
    the seed alone.
    """
    import torch

    from .mtj import EmulatedRng

    for name, v in (("L", L), ("B", B), ("T", T)):
        _check_int(name, v, 0, "a non-negative integer")
    k = code_bits(N)
    out = np.zeros((L, B, T, n_way), dtype=np.int64)
    for layer in range(L):
        bank = DeviceBank([EmulatedRng.from_current(device_seed(seed, layer, d, k), current,
                                                    threshold_bits=threshold_bits)
                           for d in range(k)])
        out[layer] = Arbiter(N, n_way, bank).choose(B * T).reshape(B, T, n_way)
    return torch.from_numpy(out)
