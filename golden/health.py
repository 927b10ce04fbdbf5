"""Online health tests of one RNG device's bit stream: NIST SP 800-90B section 4.4 and a
windowed bias monitor; the cutoffs from (H, α) and the bit-exact twin of rtl/health.py.

Numbering: the samples a test sees are numbered 1, 2, 3, ... from reset (only samples with
``valid``). "Fires at sample n" means that the n-th sample is the one whose arrival makes
the test fail: the twin's event array is True at index n - 1, and the RTL's ``*_event``
output is high in the cycle that carries the n-th sample (its ``*_alarm`` from the next
cycle on).

* **Repetition Count Test** (RCT, 90B 4.4.1). B = length of the current run of identical
  samples, 1 for the sample that starts a run (the first sample after reset starts one),
  B + 1 for a sample equal to the previous one; a sample **fails** when B >= C. A stream
  stuck from reset fails first at sample C (B = C), so with C = 21 at sample 21. An
  **event** (an alarm, counted once) is the first failing sample of a run. Cutoff
  C = 1 + ceil(-log2(α) / H): a healthy sample fails with probability 2^-H(C-1) <= α.
* **Adaptive Proportion Test** (APT, 90B 4.4.2). Non-overlapping windows of W samples from
  reset; A = the window's first sample, B = 1 at that sample and B + 1 at each later sample
  of the window equal to A; a sample fails when B >= C, and the window's first failing
  sample is its event (one per window; 90B stops the window there). Cutoff
  C = 1 + CRITBINOM(W, 2^-H, 1 - α), where CRITBINOM(n, p, q) is the smallest k with
  P[X <= k] >= q for X ~ Binomial(n, p) (Excel's CRITBINOM, the definition 90B uses);
  computed as the smallest k with P[X > k] <= α, from scipy's survival function (no
  cancellation in 1 - cdf). H = 1, α = 2^-20, W = 1024 gives C = 589.
* **Bias monitor** (OpenTitan's two-sided adaptive-proportion form, with watermarks). Non-
  overlapping windows of Wb samples; a window is healthy iff its count of ones lies in
  [low, high]. It fails at the first sample at which the outcome is certain: the ones reach
  high + 1, or the zeros reach Wb - low + 1 (then the window must end with fewer than low
  ones). One event per window. high >= Wb disables the high side, low = 0 the low side.

The twins keep their counters as the RTL does: B of the RCT saturates at 2^rct_bits - 1, the
event counters at 2^count_bits - 1; alarms latch on an event and are cleared by ``clear``
(an event in the same cycle wins: the alarm stays set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["DEFAULT_ALPHA", "DEFAULT_H", "APT_WINDOW", "BIAS_WINDOW", "Cutoffs", "critbinom",
           "rct_cutoff", "apt_cutoff", "bias_watermarks", "apt_window_fail_probability",
           "bias_window_fail_probability", "rct_expected_events", "rct_runs", "rct_events",
           "apt_events", "bias_events", "first_event", "HealthTests"]

#: Default false-alarm probability of each test (per sample for the RCT, per window else).
DEFAULT_ALPHA = 2.0 ** -20
#: Default min-entropy per sample claimed for a device, bits (one bit per binary sample).
DEFAULT_H = 1.0
#: APT window for binary samples (90B 4.4.2).
APT_WINDOW = 1024
#: Bias monitor window: at α = 2^-20 it accepts 1891..2205 ones (46.2 .. 53.8 %), so it
#: catches a device at p = 0.55 in its first window with probability 0.93.
BIAS_WINDOW = 4096


def _positive_int(name, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return int(v)


def _check_alpha(alpha) -> float:
    ok = isinstance(alpha, (int, float, np.floating)) and not isinstance(alpha, bool)
    if not (ok and math.isfinite(alpha) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in the open interval (0, 1), not {alpha!r}")
    return float(alpha)


def _check_h(H) -> float:
    ok = isinstance(H, (int, float, np.floating)) and not isinstance(H, bool)
    if not (ok and math.isfinite(H) and 0 < H <= 1):
        raise ValueError(f"H must be a number in (0, 1] (bits of min-entropy per binary "
                         f"sample), not {H!r}")
    return float(H)


def _minus_log2(alpha: float):
    """-log2(α): exact (a Fraction) when α is a power of two, else a float."""
    mant, exp = math.frexp(alpha)
    return Fraction(1 - exp) if mant == 0.5 else -math.log2(alpha)


def rct_cutoff(H: float = DEFAULT_H, alpha: float = DEFAULT_ALPHA) -> int:
    """C = 1 + ceil(-log2(α) / H) (90B 4.4.1). H is taken as the decimal it is written as
    (0.1 is 1/10) and -log2(α) exactly when α is a power of two, so the ceiling is exact
    (20 / 0.1 = 200, not 200.00000000000003); H = 1, α = 2^-20 gives 21."""
    H, alpha = _check_h(H), _check_alpha(alpha)
    q = _minus_log2(alpha)
    if isinstance(q, Fraction):
        return 1 + math.ceil(q / Fraction(repr(H)))
    return 1 + math.ceil(q / H)


def critbinom(n: int, p: float, alpha: float) -> int:
    """CRITBINOM(n, p, 1 - α): the smallest k with P[X <= k] >= 1 - α, X ~ Binomial(n, p).

    Evaluated as the smallest k with P[X > k] <= α (the same set of k) with
    ``scipy.stats.binom.sf``, so that α down to 1e-300 is resolved."""
    from scipy.stats import binom  # here: testbenches import this module

    n, alpha = _positive_int("n", n), _check_alpha(alpha)
    if not (isinstance(p, (int, float, np.floating)) and 0 < p < 1):
        raise ValueError(f"p must be a number in the open interval (0, 1), not {p!r}")
    k = int(min(max(binom.isf(alpha, n, p), 0), n))
    while k > 0 and binom.sf(k - 1, n, p) <= alpha:
        k -= 1
    while binom.sf(k, n, p) > alpha:
        k += 1
    return k


def apt_cutoff(H: float = DEFAULT_H, alpha: float = DEFAULT_ALPHA,
               window: int = APT_WINDOW) -> int:
    """C = 1 + CRITBINOM(W, 2^-H, 1 - α) (90B 4.4.2); H = 1, α = 2^-20, W = 1024 gives 589.
    A C above W means the test can never fire (too small a window for α)."""
    H, alpha = _check_h(H), _check_alpha(alpha)
    return 1 + critbinom(_positive_int("window", window), 2.0 ** -H, alpha)


def bias_watermarks(window: int = BIAS_WINDOW, alpha: float = DEFAULT_ALPHA,
                    p: float = 0.5) -> tuple[int, int]:
    """(low, high) for a window false-alarm probability <= α at P(one) = p, α/2 per side:
    high = the smallest h with P[X > h] <= α/2, low = the largest l with P[X < l] <= α/2,
    X ~ Binomial(window, p). Defaults: (1891, 2205)."""
    from scipy.stats import binom

    window, alpha = _positive_int("window", window), _check_alpha(alpha)
    high = critbinom(window, p, alpha / 2)
    low = int(max(binom.ppf(alpha / 2, window, p), 0))
    while low > 0 and binom.cdf(low - 1, window, p) > alpha / 2:      # P[X < low]
        low -= 1
    while low < window and binom.cdf(low, window, p) <= alpha / 2:    # P[X < low + 1]
        low += 1
    return low, high


def apt_window_fail_probability(cutoff: int, window: int = APT_WINDOW, p: float = 0.5):
    """Exact P(a window of the APT fails) for i.i.d. samples with P(one) = p: A is one with
    probability p, then B = 1 + Binomial(W - 1, P(A)); so P[B >= C] =
    p P[Bin(W-1, p) >= C-1] + (1-p) P[Bin(W-1, 1-p) >= C-1]. (90B's α bounds
    P[Bin(W, p) >= C]; at p = 1/2 and C = 589 this exact value is 9.644e-7 = 1.011 α.)"""
    from scipy.stats import binom

    if cutoff <= 1:
        return 1.0
    return float(p * binom.sf(cutoff - 2, window - 1, p)
                 + (1 - p) * binom.sf(cutoff - 2, window - 1, 1 - p))


def bias_window_fail_probability(low: int, high: int, window: int = BIAS_WINDOW,
                                 p: float = 0.5) -> float:
    """Exact P(a bias-monitor window fails) = P[X > high] + P[X < low], X ~ Bin(window, p)
    (both at once is impossible for low <= high + 1)."""
    from scipy.stats import binom

    return float(binom.sf(high, window, p) + (binom.cdf(low - 1, window, p) if low else 0.0))


def rct_expected_events(cutoff: int, n: int, p: float = 0.5) -> float:
    """Expected RCT events (runs reaching C) in n i.i.d. samples from reset, cutoff >= 2: the
    first C samples equal (p^C + q^C), or sample i - C differs and C equal follow."""
    q = 1 - p
    if n < cutoff:
        return 0.0
    return p ** cutoff + q ** cutoff + (n - cutoff) * (q * p ** cutoff + p * q ** cutoff)


@dataclass(frozen=True)
class Cutoffs:
    """The four values the firmware writes: RCT C, APT C, bias (low, high)."""

    rct: int
    apt: int
    bias_low: int
    bias_high: int

    @classmethod
    def derive(cls, H: float = DEFAULT_H, alpha: float = DEFAULT_ALPHA,
               apt_window: int = APT_WINDOW, bias_window: int = BIAS_WINDOW,
               bias_alpha: float | None = None) -> Cutoffs:
        """All cutoffs from (H, α); the bias monitor at ``bias_alpha`` (default α) per window
        (it tests p = 1/2, so H does not enter it)."""
        low, high = bias_watermarks(bias_window, alpha if bias_alpha is None else bias_alpha)
        return cls(rct_cutoff(H, alpha), apt_cutoff(H, alpha, apt_window), low, high)


# --- vectorised tests (a stream from reset) ---------------------------------------------------

def _bits(bits) -> np.ndarray:
    b = np.asarray(bits)
    if b.ndim != 1 or (b.size and not np.isin(b, (0, 1)).all()):
        raise ValueError("bits must be a 1-D array of 0/1 samples")
    return b.astype(np.uint8)


def rct_runs(bits, max_run: int = 255) -> np.ndarray:
    """B after each sample: the run length so far, saturating at ``max_run``."""
    b = _bits(bits)
    idx = np.arange(b.size)
    start = np.ones(b.size, dtype=bool)
    start[1:] = b[1:] != b[:-1]
    first = np.maximum.accumulate(np.where(start, idx, 0))
    return np.minimum(idx - first + 1, max_run)


def rct_events(bits, cutoff: int, max_run: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(fail, event) per sample for a fixed cutoff: fail = B >= C; event = fail and not a
    continuation of a run that already failed."""
    b = _bits(bits)
    fail = rct_runs(b, max_run) >= cutoff
    cont = np.zeros(b.size, dtype=bool)
    cont[1:] = (b[1:] == b[:-1]) & fail[:-1]
    return fail, fail & ~cont


def _windows(b: np.ndarray, window: int) -> np.ndarray:
    pad = (-b.size) % window
    return np.concatenate([b, np.zeros(pad, dtype=b.dtype)]).reshape(-1, window)


def _first_in_window(fail2d: np.ndarray, n: int) -> np.ndarray:
    event = fail2d & (np.cumsum(fail2d, axis=1) == 1)
    return event.reshape(-1)[:n]


def apt_events(bits, cutoff: int, window: int = APT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(fail, event) per sample: fail = B >= C within the window; event = the window's first
    failing sample. Windows start at sample 1 (a padded last window is cut off)."""
    b = _bits(bits)
    w = _windows(b, window)
    B = np.cumsum(w == w[:, :1], axis=1)
    fail2d = B >= cutoff
    return fail2d.reshape(-1)[:b.size], _first_in_window(fail2d, b.size)


def bias_events(bits, low: int, high: int,
                window: int = BIAS_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(event_low, event_high) per sample: the window's first failing sample, split by the
    side(s) failing there (high: ones > high; low: zeros > window - low)."""
    b = _bits(bits)
    w = _windows(b, window)
    ones = np.cumsum(w, axis=1, dtype=np.int64)
    zeros = np.arange(1, window + 1)[None, :] - ones
    f_hi, f_lo = ones > high, zeros + low > window
    event = _first_in_window(f_hi | f_lo, b.size)
    return event & f_lo.reshape(-1)[:b.size], event & f_hi.reshape(-1)[:b.size]


def first_event(event) -> int | None:
    """The sample number (1-based) of the first event, None if there is none."""
    hits = np.flatnonzero(np.asarray(event))
    return int(hits[0]) + 1 if hits.size else None


# --- the sample-by-sample twin ----------------------------------------------------------------

class HealthTests:
    """Bit-exact twin of :class:`spinbayes.rtl.health.HealthTests`, one sample at a time.

    The cutoff attributes (``rct_cutoff``, ``apt_cutoff``, ``bias_low``, ``bias_high``) are
    the RTL's input ports: set them before a :meth:`step` like the firmware writes the
    registers (defaults: :meth:`Cutoffs.derive` for the windows). State attributes after each
    step equal the RTL's registered outputs after that sample's clock edge: ``rct_run``,
    ``apt_index``, ``apt_matches``, ``bias_index``, ``bias_ones``, the latched
    ``rct_alarm``, ``apt_alarm``, ``bias_alarm``, ``bias_side`` (bit 0 low, bit 1 high) and
    the saturating event counters ``rct_count``, ``apt_count``, ``bias_count``.

    Parameters
    ----------
    apt_window, bias_window : int
        Window sizes (defaults 1024, 4096).
    rct_bits : int
        Width of the RCT's run counter and cutoff (B saturates at 2^rct_bits - 1; default 8).
    count_bits : int
        Width of the event counters (saturating; default 16).
    """

    def __init__(self, apt_window: int = APT_WINDOW, bias_window: int = BIAS_WINDOW,
                 rct_bits: int = 8, count_bits: int = 16):
        self.apt_window = _positive_int("apt_window", apt_window)
        self.bias_window = _positive_int("bias_window", bias_window)
        self.rct_bits = _positive_int("rct_bits", rct_bits)
        self.count_bits = _positive_int("count_bits", count_bits)
        c = Cutoffs.derive(apt_window=self.apt_window, bias_window=self.bias_window)
        self.rct_cutoff = min(c.rct, self.max_run)
        self.apt_cutoff, self.bias_low, self.bias_high = c.apt, c.bias_low, c.bias_high
        self.reset()

    @property
    def max_run(self) -> int:
        return 2 ** self.rct_bits - 1

    @property
    def max_count(self) -> int:
        return 2 ** self.count_bits - 1

    def write(self, cutoffs: Cutoffs):
        """Set the four cutoff registers, each checked against its port's range."""
        for name, v, hi in (("rct", cutoffs.rct, self.max_run),
                            ("apt", cutoffs.apt, 2 ** (self.apt_window + 1).bit_length() - 1),
                            ("bias_low", cutoffs.bias_low, 2 ** self.bias_window.bit_length() - 1),
                            ("bias_high", cutoffs.bias_high,
                             2 ** self.bias_window.bit_length() - 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= hi:
                raise ValueError(f"{name} cutoff must be an integer in 0..{hi}, not {v!r}")
        self.rct_cutoff, self.apt_cutoff = int(cutoffs.rct), int(cutoffs.apt)
        self.bias_low, self.bias_high = int(cutoffs.bias_low), int(cutoffs.bias_high)

    def reset(self):
        """The state after the RTL's reset (cutoffs unchanged)."""
        self._has_prev = self._last = self._run_failed = 0
        self.rct_run = 0
        self.apt_index = self.apt_matches = self._apt_first = self._apt_failed = 0
        self.bias_index = self.bias_ones = self._bias_failed = 0
        self.rct_alarm = self.apt_alarm = self.bias_alarm = self.bias_side = 0
        self.rct_count = self.apt_count = self.bias_count = 0

    def step(self, bit: int, clear: int = 0) -> tuple[int, int, int]:
        """One valid sample (``clear``: the RTL's 3-bit clear input in the same cycle, bit 0
        RCT, bit 1 APT, bit 2 bias). Returns the events (rct, apt, bias) of this sample."""
        x = int(bit)
        if x not in (0, 1):
            raise ValueError(f"bit must be 0 or 1, not {bit!r}")
        match = self._has_prev and x == self._last
        run = min(self.rct_run + 1, self.max_run) if match else 1
        r_fail = run >= self.rct_cutoff
        r_ev = r_fail and not (match and self._run_failed)
        self._run_failed = int(r_fail or (match and self._run_failed))
        self._has_prev, self._last, self.rct_run = 1, x, run

        first = self.apt_index == 0
        matches = 1 if first else self.apt_matches + (x == self._apt_first)
        a_fail = matches >= self.apt_cutoff
        a_ev = a_fail and not (not first and self._apt_failed)
        self._apt_failed = int(a_fail or (not first and self._apt_failed))
        if first:
            self._apt_first = x
        self.apt_matches = matches
        self.apt_index = 0 if self.apt_index == self.apt_window - 1 else self.apt_index + 1

        bfirst = self.bias_index == 0
        ones = x if bfirst else self.bias_ones + x
        zeros = self.bias_index + 1 - ones
        f_hi, f_lo = ones > self.bias_high, zeros + self.bias_low > self.bias_window
        prior = not bfirst and self._bias_failed
        b_ev = (f_hi or f_lo) and not prior
        self._bias_failed = int(f_hi or f_lo or prior)
        self.bias_ones = ones
        self.bias_index = 0 if self.bias_index == self.bias_window - 1 else self.bias_index + 1

        self._clear(clear)
        self.rct_alarm |= r_ev
        self.apt_alarm |= a_ev
        self.bias_alarm |= b_ev
        if b_ev:
            self.bias_side |= int(f_lo) | int(f_hi) << 1
        self.rct_count = min(self.rct_count + r_ev, self.max_count)
        self.apt_count = min(self.apt_count + a_ev, self.max_count)
        self.bias_count = min(self.bias_count + b_ev, self.max_count)
        return int(r_ev), int(a_ev), int(b_ev)

    def _clear(self, clear: int):
        if clear & 1:
            self.rct_alarm = 0
        if clear & 2:
            self.apt_alarm = 0
        if clear & 4:
            self.bias_alarm = self.bias_side = 0

    def idle(self, clear: int = 0):
        """A cycle without a valid sample: only ``clear`` acts."""
        self._clear(clear)

    def feed(self, bits) -> np.ndarray:
        """Step every sample of ``bits``; the events, an (n, 3) uint8 array (rct, apt, bias)."""
        return np.array([self.step(int(x)) for x in _bits(bits)], dtype=np.uint8).reshape(-1, 3)
