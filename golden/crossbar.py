"""Behavioural multi-level SOT cells, crossbar and flash ADC (paper sections 3.4, 3.5.2, Fig. 5).

The encoding is fixed by :mod:`.cells`; this module gives it analog behaviour
(docs/HARDWARE.md, section "Multi-level SOT cells, crossbar and ADC").
Cell: 4 MTJs read in parallel, G(l) = l/r_p + (4-l)/r_ap; a pair gives dI = d * I_unit. Read:
R rows at a time, a :class:`FlashADC` rounds dI / I_unit, exact in ideal mode. Write (Fig. 5b):
RESET, then an RWL pulse switching l MTJs (M4 first), with failures, verify and retries.
Non-idealities (:class:`NonIdeal`, off by default, seeded): lognormal MTJs, read noise, stuck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .cells import MAX_LEVEL, differential_pair, encode_weights
from .mtj import p_sw

__all__ = ["DeviceParams", "FlashADC", "NonIdeal", "Crossbar", "RWL_VOLTAGE_FOR_LEVEL",
           "MTJ_SWITCH_VOLTAGE", "WRITE_CURRENT", "switched_mtjs", "write_failure_probability"]

#: Paper's write current (section 3.5.2), amperes.
WRITE_CURRENT = 500e-6
#: ILLUSTRATIVE minimum RWL voltage (V) at which each MTJ switches within the 10 ns RWL period
#: at the write current. Only the order (M4 first, all four at 1 V) is from the paper.
MTJ_SWITCH_VOLTAGE = {"M4": 0.2, "M3": 0.45, "M2": 0.7, "M1": 0.95}
#: ILLUSTRATIVE RWL voltage (V) that writes level l after a RESET: it switches exactly l MTJs.
RWL_VOLTAGE_FOR_LEVEL = {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}


_KINDS = {"positive": ("a positive number", 0, math.inf), "nonneg": ("a number >= 0", 0, math.inf),
          "fraction": ("a number in [0, 1]", 0, 1)}


def _check_number(name, value, kind="nonneg"):
    what, lo, hi = _KINDS[kind]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and lo <= value <= hi and (value > 0 or kind != "positive")):
        raise ValueError(f"{name} must be {what}, not {value!r}")


def _check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_levels(name, levels):
    a = np.asarray(levels)
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise ValueError(f"{name} must be integers, not {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > MAX_LEVEL):
        raise ValueError(f"{name} must lie in 0..{MAX_LEVEL}, found {int(a.min())}..{int(a.max())}")
    return a.astype(np.int64)


def _check_bits(bits, shape):
    x = np.asarray(bits)
    if x.shape != shape:
        raise ValueError(f"input_bits must have shape {shape}, not {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("input_bits must be 0 or 1")
    return x.astype(np.int64)


@dataclass(frozen=True)
class DeviceParams:
    """MTJ resistances (ohm) and read voltage (V) of the multi-level cell.

    r_p and r_ap are the resistances of ONE MTJ (our reading of "2.5 to 5.5 MOhm"; TMR 120 %
    is consistent with either reading, since 4 MTJs in parallel keep the ratio). v_read = 0.1 V
    is our choice: far below the 0..1 V RWL write range (no read disturb), and it gives
    72.7..160 nA per cell, I_unit = 21.8 nA.
    """

    r_p: float = 2.5e6
    r_ap: float = 5.5e6
    v_read: float = 0.1

    def __post_init__(self):
        _check_number("r_p", self.r_p, "positive")
        _check_number("r_ap", self.r_ap, "positive")
        _check_number("v_read", self.v_read, "positive")
        if self.r_ap <= self.r_p:
            raise ValueError(f"r_ap must be greater than r_p, not {self.r_ap!r} <= {self.r_p!r}")

    @property
    def mtjs_per_cell(self) -> int:
        """MTJs on one SOT track (4, fixed by :mod:`.cells`)."""
        return MAX_LEVEL

    @property
    def tmr(self) -> float:
        """Tunnel magnetoresistance (r_ap - r_p) / r_p (1.2 = 120 %)."""
        return (self.r_ap - self.r_p) / self.r_p

    @property
    def i_unit(self) -> float:
        """Current step of one level, v_read * (1/r_p - 1/r_ap), amperes."""
        return self.v_read * (1 / self.r_p - 1 / self.r_ap)

    def conductance(self, level):
        """G(l) = l / r_p + (4 - l) / r_ap (siemens) of cell levels (...) -> (...)."""
        lv = _check_levels("levels", level)
        return lv / self.r_p + (MAX_LEVEL - lv) / self.r_ap

    def current(self, level):
        """Read current v_read * G(l) (amperes) of cell levels (...) -> (...)."""
        return self.v_read * self.conductance(level)


@dataclass(frozen=True)
class FlashADC:
    """Flash ADC of the differential bitline current of R rows read in parallel.

    The ideal partial sum lies in -4R..4R (33 values for R = 4). The 8R comparators have
    references (m + 1/2) * I_unit, m = -4R .. 4R - 1; the code is the number of references
    <= dI minus 4R: round to nearest, ties upward, saturating at +-4R. One code per integer
    partial sum, so ideal reads are exact; the signed code takes :attr:`bits` bits.
    """

    rows_parallel: int = 4
    device: DeviceParams = field(default_factory=DeviceParams)

    def __post_init__(self):
        _check_positive_int("rows_parallel", self.rows_parallel)

    @property
    def full_scale(self) -> int:
        """Largest |code|, 4R."""
        return MAX_LEVEL * self.rows_parallel

    @property
    def bits(self) -> int:
        """Two's-complement bits of a code in -4R..4R (6 for R = 4)."""
        return self.full_scale.bit_length() + 1

    @property
    def references(self) -> np.ndarray:
        """Comparator references (8R,), amperes, ascending."""
        m = np.arange(-self.full_scale, self.full_scale)
        return (m + 0.5) * self.device.i_unit

    def convert(self, delta_i) -> np.ndarray:
        """Convert differential bitline currents to signed codes.

        Parameters
        ----------
        delta_i : float array (...)
            I(BL+) - I(BL-) in amperes; +-inf saturates, NaN is refused.

        Returns
        -------
        int64 array (...) in -4R..4R
        """
        d = np.asarray(delta_i, dtype=np.float64)
        if np.isnan(d).any():
            raise ValueError("differential current must not be NaN")
        return np.searchsorted(self.references, d, side="right").astype(np.int64) - self.full_scale


@dataclass(frozen=True)
class NonIdeal:
    """Non-idealities, all off by default (ideal mode); drawn from ``seed`` deterministically.

    sigma_r: lognormal sigma of each MTJ's resistance factor (one factor per device, shared by
    its P and AP states, drawn at construction; median = nominal). read_noise: Gaussian sigma
    of dI per read and column, in units of I_unit. stuck_p, stuck_ap: fractions of MTJs stuck
    in P / AP (disjoint, drawn at construction).
    """

    sigma_r: float = 0.0
    read_noise: float = 0.0
    stuck_p: float = 0.0
    stuck_ap: float = 0.0
    seed: int = 0

    def __post_init__(self):
        _check_number("sigma_r", self.sigma_r)
        _check_number("read_noise", self.read_noise)
        _check_number("stuck_p", self.stuck_p, "fraction")
        _check_number("stuck_ap", self.stuck_ap, "fraction")
        if self.stuck_p + self.stuck_ap > 1:
            total = self.stuck_p + self.stuck_ap
            raise ValueError(f"stuck_p + stuck_ap must be <= 1, not {total!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) \
                or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {self.seed!r}")


def switched_mtjs(v_rwl: float) -> tuple[str, ...]:
    """MTJs that switch AP -> P under RWL voltage v_rwl (V), in switching order (M4 first).

    Behavioural table :data:`MTJ_SWITCH_VOLTAGE` (illustrative numbers): M4 sits where the
    SOT track's voltage drop is largest, so VCMA lowers its barrier most; at 1 V all four switch.
    """
    _check_number("v_rwl", v_rwl)
    return tuple(m for m, v in MTJ_SWITCH_VOLTAGE.items() if v <= v_rwl)


# _SET[l, i]: MTJ M(i+1) is switched by the RWL pulse of level l (M4 = index 3).
_SET = np.array([[f"M{i + 1}" in switched_mtjs(RWL_VOLTAGE_FOR_LEVEL[lv]) for i in range(4)]
                 for lv in range(MAX_LEVEL + 1)])


def write_failure_probability(i_write: float) -> float:
    """Probability that one MTJ which should switch does not, at write current i_write (A).

    1 - p_sw(i_write) of eq. 5 (:func:`.mtj.p_sw`, default parameters, 10 ns pulse), used for
    both the RESET and the SET pulse of a cell write: exp(-10) = 4.5e-5 from 256 uA up (the
    barrier is gone; the paper's 500 uA), 0.5 at 230 uA (Fig. 4), near 1 below 200 uA.
    """
    _check_number("i_write", i_write, "positive")
    return 1.0 - float(p_sw(i_write))


class Crossbar:
    """Rows x cell-columns of differential multi-level cells, read R rows at a time.

    Parameters
    ----------
    level_pos, level_neg : int array (rows, cols)
        Levels 0..4 of the BL+ and BL- cells. They are stored as if written without failure
        (the MTJs the write of Fig. 5b leaves in P), then stuck MTJs override them; use
        :meth:`program` / :meth:`program_weights` to go through the write model.
    device : DeviceParams
    nonideal : NonIdeal
    rows_parallel : int
        R, rows activated and sensed per read (4 in the paper).
    """

    def __init__(self, level_pos, level_neg, *, device: DeviceParams | None = None,
                 nonideal: NonIdeal | None = None, rows_parallel: int = 4):
        lp, ln = _check_levels("level_pos", level_pos), _check_levels("level_neg", level_neg)
        if lp.ndim != 2 or lp.shape != ln.shape or 0 in lp.shape:
            raise ValueError(f"level_pos and level_neg must be non-empty 2-D arrays of one "
                             f"shape, not {lp.shape} and {ln.shape}")
        self.device = device if device is not None else DeviceParams()
        self.nonideal = nonideal if nonideal is not None else NonIdeal()
        self.adc = FlashADC(rows_parallel, self.device)
        ni = self.nonideal
        rng_var, rng_stuck, self._rng_read, self._rng_write = (
            np.random.default_rng(s) for s in np.random.SeedSequence(ni.seed).spawn(4))
        shape = (*lp.shape, 2, MAX_LEVEL)                     # rows, cols, (BL+, BL-), M1..M4
        factor = np.exp(ni.sigma_r * rng_var.standard_normal(shape))
        self._g_p, self._g_ap = 1 / (self.device.r_p * factor), 1 / (self.device.r_ap * factor)
        u = rng_stuck.random(shape)
        self._stuck_p = u < ni.stuck_p
        self._stuck_ap = (u >= ni.stuck_p) & (u < ni.stuck_p + ni.stuck_ap)
        self._target = np.stack([lp, ln], axis=-1)            # (rows, cols, 2)
        self._state = self._stuck(_SET[self._target])

    @classmethod
    def from_weights(cls, codes, Q: int, device: DeviceParams | None = None,
                     nonideal: NonIdeal | None = None, rows_parallel: int = 4) -> Crossbar:
        """Crossbar of int weight codes (out, in): row i, cell column j*k + c (:mod:`.cells`)."""
        lp, ln = cls._weight_levels(codes, Q)
        return cls(lp, ln, device=device, nonideal=nonideal, rows_parallel=rows_parallel)

    @staticmethod
    def _weight_levels(codes, Q):
        w = np.asarray(codes)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"codes must be a non-empty 2-D array (out, in), not shape {w.shape}")
        d = encode_weights(w, Q)                              # (out, in, k)
        return differential_pair(d.transpose(1, 0, 2).reshape(w.shape[1], -1))

    def _stuck(self, state, at=Ellipsis):
        return (state | self._stuck_p[at]) & ~self._stuck_ap[at]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cell columns)."""
        return self._target.shape[:2]

    @property
    def n_groups(self) -> int:
        """Row groups of R rows, ceil(rows / R)."""
        return -(-self.shape[0] // self.adc.rows_parallel)

    @property
    def levels_pos(self) -> np.ndarray:
        """Stored BL+ levels (rows, cols): MTJs actually in P (after stuck faults, writes)."""
        return self._state[..., 0, :].sum(-1)

    @property
    def levels_neg(self) -> np.ndarray:
        """Stored BL- levels (rows, cols)."""
        return self._state[..., 1, :].sum(-1)

    @property
    def target_pos(self) -> np.ndarray:
        """Intended BL+ levels (rows, cols): last constructed or programmed."""
        return self._target[..., 0].copy()

    @property
    def target_neg(self) -> np.ndarray:
        """Intended BL- levels (rows, cols)."""
        return self._target[..., 1].copy()

    def program(self, row, col, level_pos, level_neg, *, i_write: float = WRITE_CURRENT,
                max_retries: int = 3) -> np.ndarray:
        """Write cells through the model of Fig. 5b, with read-back verify and retries.

        Each side is one multi-level cell: RESET (P -> AP), then the RWL pulse of
        :data:`RWL_VOLTAGE_FOR_LEVEL`; each MTJ that should switch (either step) fails with
        :func:`write_failure_probability` (i_write). Verify compares the stored level (P count)
        with the target; sides that differ are rewritten, at most max_retries times.

        Parameters
        ----------
        row, col : int array, broadcast together with the levels (a repeated cell: last wins)
        level_pos, level_neg : int array in 0..4, broadcast
        i_write : float
            Write current in amperes (the paper's 500 uA by default).
        max_retries : int >= 0

        Returns
        -------
        bool array (broadcast shape): True for cells that never verified
        """
        if not isinstance(max_retries, (int, np.integer)) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, not {max_retries!r}")
        p_fail = write_failure_probability(i_write)
        r, c = (np.asarray(a) for a in (row, col))
        for name, a, n in (("row", r, self.shape[0]), ("col", c, self.shape[1])):
            if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() >= n)):
                raise ValueError(f"{name} must be integers in 0..{n - 1}")
        r, c, lp, ln = np.broadcast_arrays(r, c, _check_levels("level_pos", level_pos),
                                           _check_levels("level_neg", level_neg))
        self._target[r, c] = np.stack([lp, ln], axis=-1)
        # ordered addresses of the last write per cell (repeated addresses: last one wins)
        flat = np.unique(np.ravel_multi_index((r.ravel(), c.ravel()), self.shape))
        rr, cc = np.unravel_index(flat, self.shape)
        todo = np.ones((flat.size, 2), bool)
        for _ in range(max_retries + 1):
            if not todo.any():
                break
            i, s = np.nonzero(todo)
            at = (rr[i], cc[i], s)
            st = self._state[at]                                # (n, 4)
            st &= self._rng_write.random(st.shape) < p_fail     # RESET: P -> AP unless it fails
            st |= _SET[self._target[at]] & (self._rng_write.random(st.shape) >= p_fail)
            self._state[at] = self._stuck(st, at)
            todo[i, s] = self._state[at].sum(-1) != self._target[at]
        failed = np.zeros(self.shape, bool)
        failed[rr, cc] = todo.any(-1)
        return failed[r, c]

    def program_weights(self, codes, Q: int, *, i_write: float = WRITE_CURRENT,
                        max_retries: int = 3) -> np.ndarray:
        """Program weight codes (out, in) into the whole array through :meth:`program`.

        Returns
        -------
        int array (n_failed, 2): (row, cell column) of the cells that never verified
        """
        lp, ln = self._weight_levels(codes, Q)
        if lp.shape != self.shape:
            raise ValueError(f"codes give a {lp.shape} array, the crossbar is {self.shape}")
        r, c = np.indices(self.shape)
        return np.argwhere(self.program(r, c, lp, ln, i_write=i_write, max_retries=max_retries))

    def read(self, row_group: int, input_bits) -> np.ndarray:
        """One read: activate R rows, sense every cell column's dI with the flash ADC.

        I(BL+-) = v_read * sum_r x_r G(l+-_r), with each MTJ's own resistance; read noise is
        added to dI = I(BL+) - I(BL-).

        Parameters
        ----------
        row_group : int in 0..n_groups-1
            Rows row_group*R .. row_group*R + R - 1; rows past the last one read as input 0.
        input_bits : 0/1 array (R,)

        Returns
        -------
        int64 array (cols,) of ADC codes in -4R..4R
        """
        R, n = self.adc.rows_parallel, self.n_groups
        if not isinstance(row_group, (int, np.integer)) or not 0 <= row_group < n:
            raise ValueError(f"row_group must be an integer in 0..{n - 1}, not {row_group!r}")
        x = _check_bits(input_bits, (R,))
        rows = slice(row_group * R, min((row_group + 1) * R, self.shape[0]))
        g = np.where(self._state[rows], self._g_p[rows], self._g_ap[rows]).sum(-1)  # (r, cols, 2)
        i_bl = self.device.v_read * np.einsum("r,rcs->cs", x[: g.shape[0]], g)
        delta = i_bl[:, 0] - i_bl[:, 1]
        if self.nonideal.read_noise:
            sigma = self.nonideal.read_noise * self.device.i_unit
            delta = delta + sigma * self._rng_read.standard_normal(delta.shape)
        return self.adc.convert(delta)

    def mvm_bitplane(self, bits) -> np.ndarray:
        """ADC codes (n_groups, cols) of one input bit-plane bits (rows,), every row group."""
        x = self._padded(bits)
        return np.stack([self.read(g, x[g]) for g in range(self.n_groups)])

    def ideal_partial_sums(self, bits) -> np.ndarray:
        """Exact sum_r x_r (l+_r - l-_r) (n_groups, cols) of the stored levels, bits (rows,)."""
        x = self._padded(bits)
        d = self.levels_pos - self.levels_neg
        d = np.pad(d, ((0, x.size - d.shape[0]), (0, 0)))
        return np.einsum("gr,grc->gc", x, d.reshape(*x.shape, -1))

    def _padded(self, bits):
        x = _check_bits(bits, (self.shape[0],))
        x = np.pad(x, (0, self.n_groups * self.adc.rows_parallel - x.size))
        return x.reshape(self.n_groups, -1)
