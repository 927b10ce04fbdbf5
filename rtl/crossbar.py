"""Behavioural crossbar memory: a digital emulation of one multi-level SOT crossbar.

What is emulated (docs/HARDWARE.md, "Multi-level SOT cells, crossbar and ADC"):

* **Cells.** Each stored signed level d in -4..4 stands for one differential cell (two 4-MTJ
  multi-level cells on BL+ and BL-, d = l+ - l-). The memory stores d directly, 4 bits two's
  complement; the analog pair, its resistances and write pulses are not modelled here
  (golden/crossbar.py does that). Programming is ideal: one write stores the level exactly.
  The RAM holds each level in *offset binary*, ``u = d + 4`` (0..8, 4 bits), an encoding
  detail that no port shows.
* **Bitlines and ADC.** A compute read activates the R rows of one group; the sum over rows
  ``sum_r x_r * d_r`` per cell column, done here with adders, stands for the bitline current
  difference I(BL+) - I(BL-) and the flash ADC in ideal mode, whose code equals that integer
  partial sum exactly (range -4R..4R, adc_bits). One ADC per cell column: every column is
  converted in the same read. The adders are *packed*: each row's cols_max offset levels are
  spread into fields of ``field_bits`` = bit_length(8R) bits, masked by the row's input bit and
  the R rows added as whole words of at most 64 bits (a field's sum is at most 8R, so no
  carry crosses into the next field); column c's code is then its field minus 4 * (number of
  active rows). This gives the same integers as per-column adders with a fraction of the
  statements, which is what makes the exported core small and fast in Verilog simulators
  (docs/ARCHITECTURE.md, "RTL simulation speed").

What is not emulation: the memory is a real synchronous RAM (FPGA block or distributed RAM),
one word per R-row group, so one compute read is one RAM read. It is written one whole word at
a time (a single write enable): a cell write is a pipelined read-modify-write of its group's
word (read in the cycle of the write, merged and written in the next), with every read port
transparent to the write port, so back-to-back cell writes to the same word compose and the
timing seen at the ports is that of a one-cycle cell write.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .decoders import WriteDecoder
from .params import RtlParams, check_params

__all__ = ["CrossbarMemory"]


class CrossbarMemory(wiring.Component):
    """One crossbar (one arbiter-selectable index): cell levels of every layer, stacked.

    Storage: a :class:`~amaranth.lib.memory.Memory` of depth ``groups_total``; word g holds the
    R rows ``g*R .. g*R + R - 1`` of the crossbar, the 4-bit field ``r * cols_max + c`` being
    the level of row ``g*R + r``, cell column c (offset binary, level + 4; cells.py geometry:
    row = input i, column ``j * k + c`` = output j, part c). Layers are stacked by their group
    base address; the network instantiates N of these, crossbar k holding sample k of every
    layer. All levels start at 0.

    Programming goes through an internal :class:`~spinbayes.rtl.decoders.WriteDecoder`
    (``row`` -> group word and lane, ``col`` -> element). A cell write is a read-modify-write
    of the group's word, pipelined over two cycles (the word is read in the write's cycle, the
    merged word written in the next) with transparent reads, so one cell is accepted per
    cycle and ``w_ready`` is always 1. A second decoder serves the read-back port.

    Parameters
    ----------
    params : RtlParams
        R, groups_total, cols_max and the derived widths.

    Ports
    -----
    w_en : In(1)
        Write one cell this cycle (accepted when ``w_ready``, which is always 1).
    w_row : In(row_bits)
        Crossbar row, 0 .. groups_total * R - 1.
    w_col : In(col_bits)
        Cell column, 0 .. cols_max - 1.
    w_level : In(signed(4))
        Signed level -4..4 to store (other values are stored modulo 16 in offset binary and
        read back as ``(w_level + 4) % 16 - 4``).
    w_ready : Out(1)
        Constant 1: a write is accepted in every cycle.
    w_error : Out(1)
        Combinational, same cycle as ``w_en``: the address is outside the array; the write is
        suppressed and no cell changes.
    v_row : In(row_bits), v_col : In(col_bits)
        Read-back address (for verification after programming).
    v_level : Out(signed(4))
        The level at (v_row, v_col) of the previous cycle; 0 for an out-of-range address.
        A write in the same cycle as the read-back address is not visible (old contents); a
        write of any earlier cycle is.
    rd_en : In(1)
        Issue a compute read (the read decoder's ``active``).
    rd_group : In(group_bits)
        R-row group to read (the read decoder's ``group``), 0 .. groups_total - 1.
    rd_bits : In(R)
        Input bit-plane: ``rd_bits[r]`` is the input bit x_r of row ``rd_group * R + r``.
    p : Out(ArrayLayout(signed(adc_bits), cols_max))
        ADC codes of the read issued in the previous cycle:
        ``p[c] = sum_r rd_bits[r] * level[rd_group*R + r][c]``, exact (-4R..4R). All zero when
        the previous cycle issued no read or read a group >= groups_total.
    p_valid : Out(1)
        ``p`` holds the result of a read issued in the previous cycle.

    Latency: a compute read issued in cycle t (``rd_en``) has ``p`` / ``p_valid`` in cycle
    t + 1 (synchronous RAM read; the adders after it are combinational); one read per cycle.
    A cell write in cycle t is visible to a compute read or a read-back address of cycle
    t + 1 and later (the RAM word itself is written at the end of cycle t + 1; the read ports
    are transparent to it). Reads do not see a write of the same cycle.
    """

    def __init__(self, params: RtlParams, init=None, *, stuck=()):
        self.params = p = check_params(self, params)
        # Fault injection (simulation): cells (row, col) that refuse to switch; a write to
        # one is accepted on the port but leaves the cell at its old level, as a cell whose
        # MTJs do not switch would. Firmware's read-back verification must catch it.
        self._stuck = sorted({(int(r), int(c)) for r, c in stuck})
        for r, c in self._stuck:
            if not (0 <= r < p.groups_total * p.R and 0 <= c < p.cols_max):
                self._MustUse__silence = True
                raise ValueError(f"stuck cell ({r}, {c}) is outside the "
                                 f"{p.groups_total * p.R} x {p.cols_max} array")
        cells = p.R * p.cols_max
        if init is None:
            arr = np.zeros((p.groups_total * p.R, p.cols_max), dtype=np.int64)
        else:
            # Simulator back door (like $readmemh): the levels the array starts with, int
            # (groups_total * R, cols_max) in -4..4. Firmware programs through w_* instead.
            arr = np.asarray(init)
            if arr.shape != (p.groups_total * p.R, p.cols_max):
                self._MustUse__silence = True
                raise ValueError(f"init must have shape ({p.groups_total * p.R}, "
                                 f"{p.cols_max}), got {arr.shape}")
            if arr.size and np.abs(arr).max() > 4:
                self._MustUse__silence = True
                raise ValueError("init levels must lie in -4..4")
        # one integer per word: field r * cols_max + c (4 bits) = level + 4
        offs = (arr.astype(np.int64) + 4).reshape(p.groups_total, cells)
        self._init = [sum(int(u) << (4 * i) for i, u in enumerate(word)) for word in offs]
        super().__init__({
            "w_en": In(1),
            "w_row": In(p.row_bits),
            "w_col": In(p.col_bits),
            "w_level": In(signed(p.level_bits)),
            "w_ready": Out(1),
            "w_error": Out(1),
            "v_row": In(p.row_bits),
            "v_col": In(p.col_bits),
            "v_level": Out(signed(p.level_bits)),
            "rd_en": In(1),
            "rd_group": In(p.group_bits),
            "rd_bits": In(p.R),
            "p": Out(data.ArrayLayout(signed(p.adc_bits), p.cols_max)),
            "p_valid": Out(1),
        })

    @property
    def field_bits(self) -> int:
        """Bits of one packed column sum of R offset levels (each 0..8): bit_length(8R)."""
        return (8 * self.params.R).bit_length()

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C = p.cols_max
        cells = p.R * C
        width = 4 * cells
        m.submodules.mem = mem = Memory(shape=unsigned(width), depth=p.groups_total,
                                        init=self._init)
        wr = mem.write_port()
        mr = mem.read_port(domain="sync", transparent_for=(wr,))    # RMW: the old word
        rd = mem.read_port(domain="sync", transparent_for=(wr,))    # compute reads
        vr = mem.read_port(domain="sync", transparent_for=(wr,))    # read-back

        # --- programming: read the word (cycle t), merge the cell and write it (t + 1) ---
        m.submodules.wdec = wdec = WriteDecoder(p)
        m.d.comb += [wdec.en.eq(self.w_en), wdec.row.eq(self.w_row), wdec.col.eq(self.w_col),
                     self.w_error.eq(wdec.error), self.w_ready.eq(1),
                     mr.addr.eq(wdec.group), mr.en.eq(wdec.we)]
        stuck = Const(0)
        for row, c in self._stuck:
            stuck = stuck | ((self.w_row == row) & (self.w_col == c))
        pend = Signal()                         # a write of the previous cycle to finish
        pend_group = Signal.like(wdec.group)
        pend_lane = Signal.like(wdec.lane)
        pend_col = Signal.like(wdec.col_sel)
        pend_level = Signal(4)                  # offset binary
        m.d.sync += [pend.eq(wdec.we & ~stuck), pend_group.eq(wdec.group),
                     pend_lane.eq(wdec.lane), pend_col.eq(wdec.col_sel),
                     pend_level.eq(self.w_level + 4)]
        # merge with whole-row bitwise operations (no wide variable shift): a one-hot column
        # mask spread to 4 bits a cell, applied to the row of the written lane
        col_hot = Signal(C)
        mask = Signal(4 * C)
        level_row = Signal(4 * C)
        # under `pend` (the only cycles the merge is written) for Icarus's sake, as p below:
        # one process instead of cols_max-input concatenations of one net (2.3x faster
        # programming on Icarus)
        with m.If(pend):
            m.d.comb += [col_hot.eq(Const(1, C) << pend_col),
                         mask.eq(Cat(col_hot[c].replicate(4) for c in range(C))),
                         level_row.eq(pend_level.replicate(C))]
        merged = []
        for r in range(p.R):
            old_row = mr.data[r * 4 * C:(r + 1) * 4 * C]
            merged.append(Mux(pend_lane == r, (old_row & ~mask) | (level_row & mask), old_row))
        m.d.comb += [wr.addr.eq(pend_group), wr.en.eq(pend), wr.data.eq(Cat(*merged))]

        # --- read-back: a second decoder, the field selected one cycle later -------------
        m.submodules.vdec = vdec = WriteDecoder(p)
        m.d.comb += [vdec.en.eq(1), vdec.row.eq(self.v_row), vdec.col.eq(self.v_col),
                     vr.addr.eq(vdec.group)]
        v_idx = Signal(range(cells))
        v_bad = Signal()
        m.d.sync += [v_idx.eq(vdec.lane * C + vdec.col_sel), v_bad.eq(vdec.error)]
        with m.If(~v_bad):
            m.d.comb += self.v_level.eq(vr.data.word_select(v_idx, 4) - 4)

        # --- compute read: packed column sums of the R rows ------------------------------
        fb = self.field_bits
        in_range = self.rd_group < p.groups_total
        bits_q = Signal(p.R)
        m.d.comb += [rd.addr.eq(self.rd_group), rd.en.eq(self.rd_en)]
        m.d.sync += [self.p_valid.eq(self.rd_en),
                     bits_q.eq(Mux(self.rd_en & in_range, self.rd_bits, 0))]
        active = Signal(range(p.R + 1))
        m.d.comb += active.eq(sum(bits_q[r] for r in range(p.R)))
        # chunks of columns that fit one 64-bit word: native integers in Verilator, and
        # short carry chains for Amaranth's netlist checks
        chunk = max(1, 64 // fb)
        for c0 in range(0, C, chunk):
            cols = range(c0, min(c0 + chunk, C))
            w = len(cols) * fb
            rows = []
            for r in range(p.R):
                spread = Signal(w, name=f"spread{r}_{c0}")     # row r, a field a column
                m.d.comb += spread.eq(Cat(Cat(rd.data.word_select(r * C + c, 4),
                                              Const(0, fb - 4)) for c in cols))
                rows.append(Mux(bits_q[r], spread, 0))
            total = Signal(w, name=f"colsum{c0}")
            m.d.comb += total.eq(sum(rows[1:], rows[0]))
            # one subtraction a column (a packed, carry-free subtraction would be one
            # statement, but wide bitwise operations are 9x slower in Icarus)
            # assigned under p_valid (p is 0 anyway without a read: bits_q is 0): Amaranth
            # then writes p in one `always @*` process instead of one continuous assignment
            # per column. Icarus builds a net driven by cols_max part-assignments as a tree of
            # strength-aware concatenations and re-sends (and converts bit by bit) the whole
            # p vector on every column's change: 97 % of Icarus's time, 24 cycles/s on the
            # 64-64-10 core; 1350 cycles/s with the process (perf, docs/ARCHITECTURE.md).
            with m.If(self.p_valid):
                for i, c in enumerate(cols):
                    m.d.comb += self.p[c].eq(total[i * fb:(i + 1) * fb] - (active << 2))
        return m
