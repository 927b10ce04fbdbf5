"""SOT-MTJ switching (paper eq. 5, Fig. 4) and the arbiter's random bit sources (section 3.5.1).

* :func:`p_sw` -- switching probability of one SET pulse, eq. 5 with the sign fixed (below).
* :class:`MTJRng` -- behavioural device: SET at the bias current, sense, deterministic RESET;
  with off-target bias, linear drift and stuck-at faults.
* :class:`EmulatedRng` -- the synthesizable stand-in the RTL implements: xorshift32 words
  compared with a fixed-point threshold; this class is its bit-exact Python twin.

The contract for the RTL is written out in docs/HARDWARE.md ("SOT-MTJ RNG").
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MTJParams", "DEFAULT", "X_BARRIER_ZERO", "barrier", "p_sw", "solve_ic0",
           "current_for_probability", "MTJRng", "xorshift32", "threshold_for", "EmulatedRng",
           "plot_mtj"]

#: I / Ic0 at which eq. 5's barrier factor 1 - 2x(pi/2 - x) reaches zero: (pi - sqrt(pi^2-8))/4.
X_BARRIER_ZERO = (math.pi - math.sqrt(math.pi ** 2 - 8)) / 4


def _check_positive(name, value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and value > 0):
        raise ValueError(f"{name} must be a positive number, not {value!r}")


def _check_int(name, value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class MTJParams:
    """SOT-MTJ parameters of eq. 5.

    Parameters
    ----------
    delta : float
        Thermal stability factor Δ = E_b / k_B T (ref. [16]: 40-60 for storage; we take 40).
    tau0 : float
        Attempt time τ0, seconds (ref. [16]: about 1 ns).
    ic0 : float
        Critical current at 0 K, amperes. The default is :func:`solve_ic0` for Δ = 40,
        τ0 = 1 ns: p_sw(230 µA, 10 ns) = 0.5 (paper, section 3.5.1), rounded to 0.1 nA.
    t_set, t_reset : float
        SET and RESET pulse widths, seconds (paper: 10 ns and 5 ns).
    """

    delta: float = 40.0
    tau0: float = 1e-9
    ic0: float = 578.1456e-6
    t_set: float = 10e-9
    t_reset: float = 5e-9

    def __post_init__(self):
        for name in ("delta", "tau0", "ic0", "t_set", "t_reset"):
            _check_positive(name, getattr(self, name))


DEFAULT = MTJParams()


def _current_array(current):
    i = np.asarray(current, dtype=np.float64)
    if not np.all(np.isfinite(i)) or np.any(i < 0):
        raise ValueError(f"current must be finite and >= 0 (amperes), not {current!r}")
    return i


def barrier(current, params: MTJParams = DEFAULT):
    """Energy barrier in units of k_B T under a SET current: Δ (1 - 2x(π/2 - x)), x = I/Ic0.

    The factor falls from 1 at x = 0 to 0 at x = :data:`X_BARRIER_ZERO` (0.4436, i.e. 256.4 µA
    with the defaults). Read literally it would turn negative and, past x = π/4, rise again
    (a non-monotone p_sw above 454 µA); a barrier cannot be negative, so it is held at 0 from
    X_BARRIER_ZERO on. The result is non-increasing in the current.
    """
    x = np.minimum(_current_array(current) / params.ic0, X_BARRIER_ZERO)
    b = np.maximum(1.0 - 2.0 * x * (np.pi / 2 - x), 0.0)
    return params.delta * np.where(x < X_BARRIER_ZERO, b, 0.0)


def p_sw(current, params: MTJParams = DEFAULT, t: float | None = None):
    """Probability that a pulse of ``current`` (A) and width ``t`` (default t_set) switches.

    Eq. 5, p = 1 - exp[-(t/τ0) exp(-E_b(I))], with E_b from :func:`barrier`. The paper prints
    the outer exponent without its minus sign, which gives p < 0; the Néel-Brown rate form of
    ref. [16] has it. Vectorised over numpy arrays; non-decreasing in the current; in [0, 1].
    Above 256.4 µA (default parameters) the barrier is zero and p = 1 - exp(-t/τ0).
    """
    t = params.t_set if t is None else t
    _check_positive("t", t)
    return -np.expm1(-(t / params.tau0) * np.exp(-barrier(current, params)))


def _check_probability(p, params, t):
    lo, hi = p_sw(0.0, params, t), p_sw(X_BARRIER_ZERO * params.ic0, params, t)
    if not (isinstance(p, (int, float)) and not isinstance(p, bool) and lo < p < hi):
        raise ValueError(f"p must be a number in the open interval ({lo:.3g}, {hi:.6g}) that "
                         f"p_sw reaches, not {p!r}")


def current_for_probability(p: float, params: MTJParams = DEFAULT, t: float | None = None):
    """Inverse of :func:`p_sw`: the current (A) at which a pulse of width t switches with p."""
    _check_probability(p, params, t)
    i_hi = X_BARRIER_ZERO * params.ic0
    from scipy.optimize import brentq  # here: every cocotb testbench imports this module

    return brentq(lambda i: float(p_sw(i, params, t)) - p, 0.0, i_hi, xtol=1e-15, rtol=1e-13)


def solve_ic0(current: float = 230e-6, p: float = 0.5, delta: float = 40.0,
              tau0: float = 1e-9, t: float = 10e-9) -> float:
    """The Ic0 (A) that gives p_sw(current) = p for the other parameters (default: Fig. 4)."""
    _check_positive("current", current)
    _check_probability(p, MTJParams(delta=delta, tau0=tau0, t_set=t), t)

    def f(ic0):
        return float(p_sw(current, MTJParams(delta, tau0, ic0, t), t)) - p

    from scipy.optimize import brentq

    return brentq(f, current, current / 1e-3, xtol=1e-16, rtol=1e-14)


_STUCK = {None: None, "0": 0, "1": 1, 0: 0, 1: 1}


class MTJRng:
    """Behavioural SOT-MTJ bit source: one SET (t_set) at the bias current, a sense amplifier
    read, then a RESET (t_reset, assumed always to succeed). Bit i is 1 iff SET i switched.

    Parameters
    ----------
    current : float
        Bias current of the SET pulse, A (paper: 230 µA for p = 0.5). Off target = biased.
    params : MTJParams
    drift : float
        Linear drift of the bias current, A per bit: bit i uses max(current + drift*i, 0).
    p_drift : float
        Linear drift of the probability itself, per bit: p_i = clip(p_sw(I_i) + p_drift*i, 0, 1).
    stuck : {None, "0", "1"}
        A stuck device: every bit is this value.
    seed : int, numpy Generator or None
        Passed to :func:`numpy.random.default_rng`.
    """

    def __init__(self, current: float = 230e-6, params: MTJParams = DEFAULT, drift: float = 0.0,
                 p_drift: float = 0.0, stuck=None, seed=None):
        _current_array(current)
        for name, v in (("drift", drift), ("p_drift", p_drift)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, not {v!r}")
        if isinstance(stuck, bool) or stuck not in _STUCK:
            raise ValueError(f"stuck must be None, '0' or '1', not {stuck!r}")
        self.current, self.params = float(current), params
        self.drift, self.p_drift, self.stuck = float(drift), float(p_drift), _STUCK[stuck]
        self._rng = np.random.default_rng(seed)
        self.n_bits = 0

    @property
    def period(self) -> float:
        """Seconds per bit: one SET and one RESET."""
        return self.params.t_set + self.params.t_reset

    def probability(self, index):
        """P(bit = 1) of bit number ``index`` (0-based, counted over the device's lifetime)."""
        i = np.asarray(index, dtype=np.float64)
        current = np.maximum(self.current + self.drift * i, 0.0)
        return np.clip(p_sw(current, self.params) + self.p_drift * i, 0.0, 1.0)

    def bits(self, n: int) -> np.ndarray:
        """The next ``n`` bits, uint8 array of 0/1."""
        n = _check_int("n", n, 0, 2 ** 62, "a non-negative integer")
        p = self.probability(np.arange(self.n_bits, self.n_bits + n))
        u = self._rng.random(n)
        self.n_bits += n
        if self.stuck is not None:
            return np.full(n, self.stuck, dtype=np.uint8)
        return (u < p).astype(np.uint8)


# --- emulation for the RTL: xorshift32 against a fixed-point threshold ----------------------

_MASK = 0xFFFFFFFF
_BLOCK = 4096  # states per vectorised block (jump-ahead by the GF(2) matrix M^_BLOCK)


def xorshift32(x: int) -> int:
    """One step of Marsaglia's xorshift32, shift triple (13, 17, 5), on a 32-bit int."""
    x ^= (x << 13) & _MASK
    x ^= x >> 17
    x ^= (x << 5) & _MASK
    return x


def _apply(cols, x: int) -> int:
    """GF(2) matrix (column j = image of bit j) times the 32-bit vector x."""
    r, j = 0, 0
    while x:
        if x & 1:
            r ^= cols[j]
        x >>= 1
        j += 1
    return r


@functools.cache
def _jump_columns() -> np.ndarray:
    cols = [xorshift32(1 << j) for j in range(32)]
    for _ in range(_BLOCK.bit_length() - 1):  # square: M^(2^m) -> M^(2^(m+1))
        cols = [_apply(cols, c) for c in cols]
    return np.array(cols, dtype=np.uint32)


def threshold_for(p: float, threshold_bits: int = 16) -> int:
    """Fixed-point threshold round_half_up(p * 2^W), in 0..2^W (W + 1 bits in hardware)."""
    w = _check_int("threshold_bits", threshold_bits, 1, 32, "an integer in 1..32")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"p must be a number in [0, 1], not {p!r}")
    return min(max(math.floor(p * 2 ** w + 0.5), 0), 2 ** w)


class EmulatedRng:
    """Bit-exact twin of the RTL's emulated MTJ: xorshift32 + W-bit threshold compare.

    Per clock cycle (one bit), on the 32-bit state s (s_0 = seed, all arithmetic mod 2^32)::

        s ^= s << 13;  s ^= s >> 17;  s ^= s << 5      # xorshift32, logical shifts
        word = s >> (32 - W)                            # state bits [31 : 32-W], s[31] = MSB
        bit  = 1 if word < threshold else 0             # unsigned compare, threshold in 0..2^W

    The bit uses the state after the update, so the seed itself is never compared. The map is
    linear and invertible over GF(2); its period is 2^32 - 1 over the non-zero states (tests
    check the matrix order), and 0 is a fixed point, so seed 0 is refused. Over one period each
    W-bit word occurs 2^(32-W) times except word 0 (2^(32-W) - 1 times), so the exact long-run
    probability is :attr:`p` = (thr * 2^(32-W) - 1) / (2^32 - 1) for thr >= 1 (0 for thr = 0):
    within 2^-32 of thr / 2^W, which is within 2^-(W+1) of the target p_sw (threshold step
    2^-W).

    Parameters
    ----------
    seed : int
        Initial state, 1..2^32 - 1.
    threshold : int
        thr in 0..2^W, e.g. ``threshold_for(p_sw(I), W)``; 2^W gives all ones.
    threshold_bits : int
        W, the word width, 1..32 (default 16).
    """

    def __init__(self, seed: int, threshold: int, threshold_bits: int = 16):
        self._state = _check_int("seed", seed, 1, _MASK, "an integer in 1..2**32-1 (0 is the "
                                 "xorshift's fixed point)")
        self.threshold_bits = _check_int("threshold_bits", threshold_bits, 1, 32,
                                         "an integer in 1..32")
        self.threshold = _check_int("threshold", threshold, 0, 2 ** self.threshold_bits,
                                    f"an integer in 0..2**{self.threshold_bits}")

    @classmethod
    def from_current(cls, seed: int, current: float, params: MTJParams = DEFAULT,
                     threshold_bits: int = 16) -> EmulatedRng:
        """Emulate a device biased at ``current``: thr = threshold_for(p_sw(current), W)."""
        p = float(p_sw(current, params))
        return cls(seed, threshold_for(p, threshold_bits), threshold_bits)

    @property
    def state(self) -> int:
        """The current 32-bit state (the seed before the first bit)."""
        return self._state

    @property
    def p(self) -> float:
        """Exact fraction of ones over one full period."""
        thr, w = self.threshold, self.threshold_bits
        return 0.0 if thr == 0 else (thr * 2 ** (32 - w) - 1) / _MASK

    def states(self, n: int) -> np.ndarray:
        """Advance n cycles; the n new states, uint32."""
        n = _check_int("n", n, 0, 2 ** 62, "a non-negative integer")
        out = np.empty(n, dtype=np.uint32)
        x = self._state
        for i in range(min(n, _BLOCK)):
            x = xorshift32(x)
            out[i] = x
        cols, pos = _jump_columns(), _BLOCK
        while pos < n:  # s[i + BLOCK] = M^BLOCK s[i], for a whole block at a time
            m = min(_BLOCK, n - pos)
            prev, nxt = out[pos - _BLOCK:pos - _BLOCK + m], np.zeros(m, dtype=np.uint32)
            for j in range(32):
                nxt ^= ((prev >> j) & 1) * cols[j]
            out[pos:pos + m] = nxt
            pos += m
        if n:
            self._state = int(out[-1])
        return out

    def words(self, n: int) -> np.ndarray:
        """Advance n cycles; the n W-bit words (state bits 31..32-W), uint32."""
        return self.states(n) >> np.uint32(32 - self.threshold_bits)

    def bits(self, n: int) -> np.ndarray:
        """Advance n cycles; the n bits word < threshold, uint8 array of 0/1."""
        return (self.words(n) < self.threshold).astype(np.uint8)


def plot_mtj(path, params: MTJParams = DEFAULT) -> Path:
    """Write p_sw (10 ns SET) against current, 0..400 µA, as a PNG in the form of Fig. 4."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    i = np.linspace(0.0, 400e-6, 801)
    fig = Figure(figsize=(5.0, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(i * 1e6, p_sw(i, params), color="tab:blue", lw=2, label="eq. 5, t = "
            f"{params.t_set * 1e9:g} ns")
    i50 = current_for_probability(0.5, params)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.axvline(i50 * 1e6, color="grey", ls=":", lw=1)
    ax.plot([i50 * 1e6], [0.5], "o", color="tab:red", label=f"p = 0.5 at {i50 * 1e6:.0f} µA")
    ax.axvspan(300, 400, color="tab:green", alpha=0.12,
               label=f"≥ 300 µA: p = {float(p_sw(300e-6, params)):.5f}")
    ax.set(xlim=(0, 400), ylim=(-0.02, 1.02), xlabel="Switching current (µA)",
           ylabel="Switching probability",
           title=f"SOT-MTJ, Δ = {params.delta:g}, τ0 = {params.tau0 * 1e9:g} ns, "
                 f"Ic0 = {params.ic0 * 1e6:.1f} µA")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
