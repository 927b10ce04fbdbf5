"""Read and write decoders of one crossbar (paper section 3.4, Fig. 2; docs/HARDWARE.md).

Both are combinational (latency 0) and count nothing; the network's counters count reads.

* The **read decoder** activates the R word lines of one R-row group: rows
  ``group * R .. group * R + R - 1`` (cells.py geometry: row = input). Its enable is the
  arbiter's DEMUX mask bit for this crossbar, so only the n chosen crossbars are read.
* The **write decoder** addresses one cell for programming: row -> (group, lane), cell column
  -> the bitline pair, and refuses addresses outside the array.
"""

from __future__ import annotations

from amaranth import Cat, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import RtlParams, bits_for, check_params

__all__ = ["ReadDecoder", "WriteDecoder"]


class ReadDecoder(wiring.Component):
    """Word-line decoder of a compute read: one R-row group of one crossbar.

    The R activated word lines are rows ``row_base .. row_base + R - 1`` with
    ``row_base = group * R``; ``wl[r]`` drives row ``row_base + r``. The per-row word-line
    vector of the whole array (R * groups_total lines, one-hot by group) is not materialised:
    the behavioural crossbar memory (:class:`~spinbayes.rtl.crossbar.CrossbarMemory`) is
    addressed by ``group`` directly, which is what ``active`` / ``group`` drive.

    Parameters
    ----------
    params : RtlParams
        Sizes the ports (R, group_bits, row_bits).

    Ports
    -----
    en : In(1)
        This crossbar is chosen (the arbiter's DEMUX mask bit) and a read is issued.
    group : In(group_bits)
        R-row group to read, 0 .. groups_total - 1 (the layer's group base plus the group).
    row_base : Out(row_bits)
        First activated row, ``group * R`` (truncated to row_bits).
    active : Out(1)
        ``en``: the R word lines are driven this cycle.
    wl : Out(R)
        The R word lines of the group, all ones when ``active``, else all zeros.

    Latency: 0 cycles (combinational).
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "en": In(1),
            "group": In(p.group_bits),
            "row_base": Out(p.row_bits),
            "active": Out(1),
            "wl": Out(p.R),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.d.comb += [
            self.row_base.eq(self.group * p.R),
            self.active.eq(self.en),
            self.wl.eq(Cat(self.en for _ in range(p.R))),
        ]
        return m


class WriteDecoder(wiring.Component):
    """Cell decoder of a programming write: row -> (group, lane), column -> bitline pair.

    Parameters
    ----------
    params : RtlParams
        Sizes the ports (R, groups_total, cols_max and their index widths).

    Ports
    -----
    en : In(1)
        A write (or, for a read-back decoder, an access) is requested.
    row : In(row_bits)
        Crossbar row (input index within the stacked layers), 0 .. groups_total * R - 1.
    col : In(col_bits)
        Cell column ``j * k + c`` (output j, part c), 0 .. cols_max - 1.
    group : Out(group_bits)
        ``row // R``: the R-row group (the memory word) holding the row.
    lane : Out(bits of 0 .. R-1)
        ``row % R``: the row's position inside its group.
    col_sel : Out(col_bits)
        ``col``: the selected cell column.
    we : Out(1)
        Write enable: ``en`` when the address is inside the array, 0 otherwise (the write is
        suppressed, so an out-of-range address never aliases onto a stored cell).
    error : Out(1)
        ``en`` with ``row >= groups_total * R`` or ``col >= cols_max``.

    Latency: 0 cycles (combinational).
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "en": In(1),
            "row": In(p.row_bits),
            "col": In(p.col_bits),
            "group": Out(p.group_bits),
            "lane": Out(unsigned(bits_for(p.R))),
            "col_sel": Out(p.col_bits),
            "we": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        bad = (self.row >= p.groups_total * p.R) | (self.col >= p.cols_max)
        if p.R & (p.R - 1) == 0:          # a power of two: plain bit slices
            sh = (p.R - 1).bit_length()
            group, lane = self.row >> sh, self.row[:sh] if sh else 0
        else:                             # constant divisor: small rows, small divider
            group, lane = self.row // p.R, self.row % p.R
        m.d.comb += [
            self.group.eq(group),
            self.lane.eq(lane),
            self.col_sel.eq(self.col),
            self.we.eq(self.en & ~bad),
            self.error.eq(self.en & bad),
        ]
        return m
