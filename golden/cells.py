"""How a Q-bit weight code is stored in multi-level SOT cells (paper sections 3.4, 3.5.2).

* A **multi-level cell** is 4 MTJs on one SOT track. Its level l in 0..4 is the number of MTJs
  in the parallel (low-resistance) state: 4AP = 0, 3AP-1P = 1, 2AP-2P = 2, 1AP-3P = 3, 4P = 4.
* A **differential cell** is a pair of multi-level cells on two bitlines (BL+, BL-). Its signed
  level is d = l+ - l- in -4..4 (9 levels). We store d >= 0 as (d, 0) and d < 0 as (0, -d), so
  that the unused side draws the all-AP (lowest) current.
* A **weight** code w in -(2^(Q-1)-1)..2^(Q-1)-1 (eq. 3) is split over
  k = ceil((2^(Q-1)-1) / 4) differential cells of equal significance, summed:
  w = d_0 + ... + d_(k-1). The split is as even as possible, larger magnitudes first:
  |d_j| = |w| // k + (1 if j < |w| % k else 0), all with the sign of w. For Q = 4 (w in -7..7)
  k = 2: 7 = 4 + 3, -5 = -3 - 2, 1 = 1 + 0. Equal significance means the adder-accumulator
  sums the k cell columns of a weight without shifts, and an even split keeps the bitline
  currents of the two columns balanced.

Crossbar geometry: one row per input; the cell of input i, output j, part c sits in row i,
cell column j * k + c. The physical array has two bitlines per cell column.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LEVELS", "MAX_LEVEL", "cells_per_weight", "encode_weights", "decode_cells",
           "differential_pair", "pair_to_level"]

#: Levels of one multi-level cell (MTJs in P state), and its maximum.
MAX_LEVEL = 4
LEVELS = tuple(range(MAX_LEVEL + 1))


def cells_per_weight(Q: int) -> int:
    """k = ceil((2^(Q-1) - 1) / 4) differential cells per Q-bit weight (2 for Q = 4)."""
    if not isinstance(Q, int) or Q < 2:
        raise ValueError(f"Q must be an integer >= 2, not {Q!r}")
    return math.ceil((2 ** (Q - 1) - 1) / MAX_LEVEL)


def encode_weights(codes, Q: int) -> np.ndarray:
    """Signed differential levels (..., k) for integer weight codes (...) of eq. 3."""
    w = np.asarray(codes)
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"weight codes must be integers, not {w.dtype}")
    q_max = 2 ** (Q - 1) - 1
    if w.size and np.abs(w).max() > q_max:
        raise ValueError(f"weight codes must lie in -{q_max}..{q_max} for Q={Q}, "
                         f"found {int(np.abs(w).max())}")
    k = cells_per_weight(Q)
    mag = np.abs(w.astype(np.int64))[..., None]
    j = np.arange(k)
    parts = mag // k + (j < mag % k)
    return (np.sign(w)[..., None] * parts).astype(np.int8)


def decode_cells(levels) -> np.ndarray:
    """The weight codes (...) stored by signed differential levels (..., k)."""
    return np.asarray(levels, dtype=np.int64).sum(axis=-1)


def differential_pair(levels) -> tuple[np.ndarray, np.ndarray]:
    """(l+, l-) multi-level cell levels of signed differential levels d in -4..4."""
    d = np.asarray(levels, dtype=np.int64)
    if d.size and np.abs(d).max() > MAX_LEVEL:
        raise ValueError(f"differential levels must lie in -{MAX_LEVEL}..{MAX_LEVEL}, "
                         f"found {int(np.abs(d).max())}")
    return np.maximum(d, 0).astype(np.int8), np.maximum(-d, 0).astype(np.int8)


def pair_to_level(l_pos, l_neg) -> np.ndarray:
    """Signed level d = l+ - l- of a differential pair."""
    return (np.asarray(l_pos, dtype=np.int64) - np.asarray(l_neg, dtype=np.int64))
