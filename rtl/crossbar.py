"""Behavioural crossbar memory: a digital emulation of one multi-level SOT crossbar.

What is emulated (docs/HARDWARE.md, "Multi-level SOT cells, crossbar and ADC"):

* **Cells.** Each stored signed level d in -4..4 stands for one differential cell (two 4-MTJ
  multi-level cells on BL+ and BL-, d = l+ - l-). The analog pair, its resistances and write
  pulses are not modelled here (golden/crossbar.py does that). Programming is ideal: one
  write stores the level exactly. The RAM holds each level in *offset binary*, ``u = d + 4``
  (0..8), in a field of ``field_bits`` = bit_length(8R) bits, an encoding detail that no
  port shows.
* **Bitlines and ADC.** A compute read activates the R rows of one group; the sum over rows
  ``sum_r x_r * d_r`` per cell column, done here with adders, stands for the bitline current
  difference I(BL+) - I(BL-) and the flash ADC in ideal mode, whose code equals that integer
  partial sum exactly (range -4R..4R, adc_bits). One ADC per cell column: every column is
  converted in the same read. The adders are *packed*: a row's cols_max fields are
  contiguous in the word, so the rows whose input bit is 1 are added as whole words (a
  field's sum is at most 8R < 2^field_bits, so no carry crosses into the next field), and
  column c's code is its field minus 4 * (number of active rows), one field-wise subtraction
  of the whole word. A dozen word-wide operations a read instead of a few per cell, which is
  what makes the exported core small and fast in Verilog simulators (docs/ARCHITECTURE.md,
  "RTL simulation speed").

What is not emulation: the memory is R real synchronous RAMs (FPGA block or distributed RAM),
one a lane, each with one word (one row of cols_max fields) per R-row group, all read at the
group's address, so one compute read is one read of each. A RAM is written one whole word at
a time (a single write enable): a cell write is a pipelined read-modify-write of its row's
word (read in the cycle of the write, merged and written in the next), with every read port
transparent to the write port, so back-to-back cell writes to the same word compose and the
timing seen at the ports is that of a one-cycle cell write.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .decoders import WriteDecoder
from .params import RtlParams, check_params

__all__ = ["CrossbarMemory"]


class CrossbarMemory(wiring.Component):
    """One crossbar (one arbiter-selectable index): cell levels of every layer, stacked.

    Storage: R :class:`~amaranth.lib.memory.Memory` of depth ``groups_total``, one a lane r;
    word g of lane r holds row ``g*R + r`` of the crossbar, its field c (``field_bits`` bits)
    being the level of cell column c (offset binary, level + 4 in its low 4 bits; cells.py
    geometry:
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
        # per lane r, one integer per group: field c (field_bits bits) = level + 4
        offs = (arr.astype(np.int64) + 4).reshape(p.groups_total, p.R, p.cols_max)
        fb = self.field_bits
        self._init = [[sum(int(u) << (fb * c) for c, u in enumerate(word))
                       for word in offs[:, r]] for r in range(p.R)]
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
        C, R, fb = p.cols_max, p.R, self.field_bits
        w = fb * C                              # one row of a group: a memory word
        # one memory a lane (row r of every group), all at the group's address: a group's
        # R rows are read in one cycle (words narrow enough for Amaranth's simulator)
        m.submodules.wdec = wdec = WriteDecoder(p)
        m.submodules.vdec = vdec = WriteDecoder(p)
        m.d.comb += [wdec.en.eq(self.w_en), wdec.row.eq(self.w_row), wdec.col.eq(self.w_col),
                     self.w_error.eq(wdec.error), self.w_ready.eq(1),
                     vdec.en.eq(1), vdec.row.eq(self.v_row), vdec.col.eq(self.v_col)]
        stuck = Const(0)
        for row, c in self._stuck:
            stuck = stuck | ((self.w_row == row) & (self.w_col == c))
        # --- programming: read the word (cycle t), merge the cell and write it (t + 1) ---
        pend = Signal()                         # a write of the previous cycle to finish
        pend_group = Signal.like(wdec.group)
        pend_lane = Signal.like(wdec.lane)
        pend_col = Signal.like(wdec.col_sel)
        pend_level = Signal(4)                  # offset binary
        m.d.sync += [pend.eq(wdec.we & ~stuck), pend_group.eq(wdec.group),
                     pend_lane.eq(wdec.lane), pend_col.eq(wdec.col_sel),
                     pend_level.eq(self.w_level + 4)]
        # --- read-back: the lane's word, the field selected one cycle later --------------
        v_lane = Signal.like(vdec.lane)
        v_col = Signal.like(vdec.col_sel)
        v_bad = Signal()
        m.d.sync += [v_lane.eq(vdec.lane), v_col.eq(vdec.col_sel), v_bad.eq(vdec.error)]
        rows, v_fields = [], []
        for r in range(R):
            mem = Memory(shape=unsigned(w), depth=p.groups_total, init=self._init[r])
            m.submodules[f"mem{r}"] = mem
            wr = mem.write_port()
            mr = mem.read_port(domain="sync", transparent_for=(wr,))    # RMW: the old word
            rd = mem.read_port(domain="sync", transparent_for=(wr,))    # compute reads
            vr = mem.read_port(domain="sync", transparent_for=(wr,))    # read-back
            m.d.comb += [mr.addr.eq(wdec.group), mr.en.eq(wdec.we & (wdec.lane == r)),
                         wr.addr.eq(pend_group), rd.addr.eq(self.rd_group),
                         rd.en.eq(self.rd_en), vr.addr.eq(vdec.group)]
            # The merge is only selection (the field chosen by cases over the column), so
            # it is one process that does nothing in a cycle without a write: Verilator
            # skips it, Icarus does not wake it.
            with m.If(pend & (pend_lane == r)):
                m.d.comb += [wr.en.eq(1), wr.data.eq(mr.data)]
                _field_cases(m, wr.data, pend_col, C, fb, pend_level)
            rows.append(rd.data)
            v_fields.append(vr.data.word_select(v_col, fb)[:4])
        with m.If(~v_bad):
            m.d.comb += self.v_level.eq(Array(v_fields)[v_lane] - 4)

        # --- compute read: packed column sums of the R rows ------------------------------
        # A field's sum is at most 8R < 2 ** fb, so the R rows add as whole words without a
        # carry crossing into the next field. Column c's code is its field minus
        # 4 * (active rows): one field-wise subtraction (borrows stopped at each field's top
        # bit). A dozen word-wide operations a read instead of one per cell.
        in_range = self.rd_group < p.groups_total
        bits_q = Signal(R)
        m.d.sync += [self.p_valid.eq(self.rd_en),
                     bits_q.eq(Mux(self.rd_en & in_range, self.rd_bits, 0))]
        active = Signal(range(R + 1))
        m.d.comb += active.eq(sum(bits_q[r] for r in range(R)))
        total = Signal(w)
        m.d.comb += total.eq(sum((Mux(bits_q[r], rows[r], 0) for r in range(1, R)),
                                 Mux(bits_q[0], rows[0], 0)))
        # the subtrahend's fields and the top-bit correction depend on `active` only:
        # constants chosen by a case (no per-field work in the simulators)
        high = sum(1 << (c * fb + fb - 1) for c in range(C))
        sub_low, sub_high = Signal(w), Signal(w)
        with m.Switch(active):
            for a in range(R + 1):
                rep = sum((4 * a) << (c * fb) for c in range(C))
                with m.Case(a):
                    m.d.comb += [sub_low.eq(rep & ~high), sub_high.eq(~rep & high)]
        diff = Signal(w)
        m.d.comb += diff.eq(((total | high) - sub_low) ^ ((total & high) ^ sub_high))
        if p.adc_bits == fb:
            m.d.comb += self.p.as_value().eq(diff)
        else:       # not for R >= 1 (adc_bits = bit_length(4R) + 1 = fb); kept general
            for c in range(C):
                m.d.comb += self.p[c].eq(diff[c * fb:(c + 1) * fb].as_signed())
        return m


def _field_cases(m, word, index, count: int, width: int, value) -> None:
    """``word``'s field ``index`` (of ``count`` fields of ``width`` bits) takes ``value``: cases
    nested over the index's hexadecimal digits, at most 16 a level (Amaranth's simulator
    compiles one flat case of hundreds of fields into an if/elif chain too deep for Python's
    compiler)."""
    top = (max(count - 1, 1).bit_length() - 1) // 4

    def level(digit: int, base: int) -> None:
        if digit < 0:
            m.d.comb += word[base * width:(base + 1) * width].eq(value)
            return
        with m.Switch(index[4 * digit:4 * digit + 4]):
            for d in range(16):
                k = base + (d << (4 * digit))
                if k >= count:
                    break
                with m.Case(d):
                    level(digit - 1, k)

    level(top, 0)
