"""The integer contract shared by golden/, rtl/, sim/ and firmware/, without torch.

The bounds and widths of docs/HARDWARE.md ("Numeric formats") as plain integer functions:
:func:`layer_widths` sizes one layer of the integer network (:mod:`spinbayes.golden.hardware`
checks its reference against it, :class:`spinbayes.rtl.params.RtlParams` sizes every port
with it), so the RTL, its reference models (sim/models.py) and the firmware compiler cannot
disagree on a width. Also here: :data:`ROWS_PER_READ` (the one default of R), the cell split
(:func:`cells_per_weight`, from golden/cells.py) and :func:`atomic_write`, the one way every
package writes a file.

This module imports the standard library and numpy only (golden/cells.py), so the hardware
layers load without torch (tests/test_imports.py checks it).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cells import MAX_LEVEL, cells_per_weight

__all__ = ["ROWS_PER_READ", "MAX_LEVEL", "LayerWidths", "atomic_write", "bits_for",
           "cells_per_weight", "layer_widths", "q_max", "signed_bits", "sum_max"]

#: R, the crossbar rows sensed in parallel by one read (paper: 4); the default of every R.
ROWS_PER_READ = 4


def _positive(name: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")


def signed_bits(max_abs: int) -> int:
    """Bits of a two's-complement word that holds every integer in -max_abs..max_abs."""
    if max_abs < 0:
        raise ValueError(f"max_abs must be >= 0, not {max_abs!r}")
    return int(max_abs).bit_length() + 1


def bits_for(n: int) -> int:
    """Unsigned bits that index 0 .. n-1 (at least 1, so no port is zero-width)."""
    return max(1, (n - 1).bit_length())


def q_max(Q: int) -> int:
    """Largest weight code magnitude of eq. 3: 2^(Q-1) - 1 (7 for Q = 4)."""
    if not isinstance(Q, int) or isinstance(Q, bool) or Q < 2:
        raise ValueError(f"Q must be an integer >= 2, not {Q!r}")
    return 2 ** (Q - 1) - 1


def sum_max(rows: int, in_bits: int, Q: int, n_way: int = 1) -> int:
    """|S| bound of an n-way sum: n_way * rows * (2^in_bits - 1) * q_max (n_way = 1: the
    bound of one crossbar's accumulator acc)."""
    for name, v in (("rows", rows), ("in_bits", in_bits), ("n_way", n_way)):
        _positive(name, v)
    return n_way * rows * (2 ** in_bits - 1) * q_max(Q)


@dataclass(frozen=True)
class LayerWidths:
    """Derived widths (bits, two's complement unless noted) and the bounds they hold."""

    rows: int          # crossbar rows (inputs, or k*k*C_in for a convolution)
    cell_columns: int  # outputs * cells per weight
    in_bits: int       # A of the unsigned input code
    adc_bits: int      # |p| <= 4R
    acc_max: int       # |acc| <= rows * (2^A - 1) * q_max
    acc_bits: int
    sum_max: int       # |S| <= n * acc_max
    sum_bits: int
    threshold_bits: int  # thresholds clamp to -sum_max .. sum_max + 1
    out_max: int = 0   # last layer: |y| <= max|M| * sum_max + max|B|
    out_bits: int = 0
    total_bits: int = 0  # last layer: |Y| <= T * out_max


def layer_widths(rows: int, outputs: int, in_bits: int, Q: int, R: int, n_way: int, *,
                 T: int = 1, m_max: int = 0, b_max: int = 0) -> LayerWidths:
    """Widths of one layer; ``m_max``/``b_max`` (output scale and offset) for the last one."""
    for name, v in (("rows", rows), ("outputs", outputs), ("in_bits", in_bits), ("Q", Q),
                    ("R", R), ("n_way", n_way), ("T", T)):
        _positive(name, v)
    acc_max = sum_max(rows, in_bits, Q)
    s_max = n_way * acc_max
    out_max = m_max * s_max + b_max
    return LayerWidths(
        rows=rows, cell_columns=outputs * cells_per_weight(Q), in_bits=in_bits,
        adc_bits=signed_bits(MAX_LEVEL * R), acc_max=acc_max, acc_bits=signed_bits(acc_max),
        sum_max=s_max, sum_bits=signed_bits(s_max),
        threshold_bits=signed_bits(s_max + 1),
        out_max=out_max, out_bits=signed_bits(out_max) if out_max else 0,
        total_bits=signed_bits(T * out_max) if out_max else 0)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
