"""Behavioural crossbar memory: a digital emulation of one multi-level SOT crossbar.

What is emulated (docs/HARDWARE.md, "Multi-level SOT cells, crossbar and ADC"):

* **Cells.** Each stored signed level d in -4..4 stands for one differential cell (two 4-MTJ
  multi-level cells on BL+ and BL-, d = l+ - l-). The memory stores d directly, 4 bits two's
  complement; the analog pair, its resistances and write pulses are not modelled here
  (golden/crossbar.py does that). Programming is ideal: one write stores the level exactly.
* **Bitlines and ADC.** A compute read activates the R rows of one group; the sum over rows
  ``sum_r x_r * d_r`` per cell column, done here with adders, stands for the bitline current
  difference I(BL+) - I(BL-) and the flash ADC in ideal mode, whose code equals that integer
  partial sum exactly (range -4R..4R, adc_bits). One ADC per cell column: every column is
  converted in the same read.

What is not emulation: the memory is a real synchronous RAM (FPGA block or distributed RAM),
one word per R-row group, so one compute read is one RAM read.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .decoders import WriteDecoder
from .params import RtlParams, check_params

__all__ = ["CrossbarMemory"]


class CrossbarMemory(wiring.Component):
    """One crossbar (one arbiter-selectable index): cell levels of every layer, stacked.

    Storage: a :class:`~amaranth.lib.memory.Memory` of depth ``groups_total``; word g holds the
    R rows ``g*R .. g*R + R - 1`` of the crossbar, element ``r * cols_max + c`` being the signed
    level of row ``g*R + r``, cell column c (cells.py geometry: row = input i, column
    ``j * k + c`` = output j, part c). Layers are stacked by their group base address; the
    network instantiates N of these, crossbar k holding sample k of every layer. All levels
    start at 0.

    Programming goes through an internal :class:`~spinbayes.rtl.decoders.WriteDecoder`
    (``row`` -> group word and lane, ``col`` -> element). The RAM's write port has one enable
    per 4-bit element, so a cell write touches only its own cell: no read-modify-write, one
    cell per cycle, ``w_ready`` is always 1. A second decoder serves the read-back port.

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
        Signed level -4..4 to store.
    w_ready : Out(1)
        Constant 1: a write is accepted in every cycle.
    w_error : Out(1)
        Combinational, same cycle as ``w_en``: the address is outside the array; the write is
        suppressed and no cell changes.
    v_row : In(row_bits), v_col : In(col_bits)
        Read-back address (for verification after programming).
    v_level : Out(signed(4))
        The level at (v_row, v_col) of the previous cycle; 0 for an out-of-range address.
        A write in the same cycle as the read-back address is not visible (old contents).
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
    A write takes effect at the end of its cycle (1 cycle per cell); read-back ``v_level`` in
    cycle t + 1 for an address in cycle t. Reads do not see a write of the same cycle.
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
        self._init = None
        if init is not None:
            # Simulator back door (like $readmemh): the levels the array starts with, int
            # (groups_total * R, cols_max) in -4..4. Firmware programs through w_* instead.
            arr = np.asarray(init)
            if arr.shape != (p.groups_total * p.R, p.cols_max):
                raise ValueError(f"init must have shape ({p.groups_total * p.R}, "
                                 f"{p.cols_max}), got {arr.shape}")
            if arr.size and np.abs(arr).max() > 4:
                raise ValueError("init levels must lie in -4..4")
            self._init = [arr[g * p.R:(g + 1) * p.R].reshape(-1).tolist()
                          for g in range(p.groups_total)]
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

    def elaborate(self, platform):
        p = self.params
        m = Module()
        cells = p.R * p.cols_max
        m.submodules.mem = mem = Memory(shape=data.ArrayLayout(signed(p.level_bits), cells),
                                        depth=p.groups_total, init=self._init or [])
        wr = mem.write_port(granularity=1)
        rd = mem.read_port(domain="sync")
        vr = mem.read_port(domain="sync")

        # --- programming: write decoder, one enable per cell --------------------------
        m.submodules.wdec = wdec = WriteDecoder(p)
        m.d.comb += [wdec.en.eq(self.w_en), wdec.row.eq(self.w_row), wdec.col.eq(self.w_col),
                     self.w_error.eq(wdec.error), self.w_ready.eq(1),
                     wr.addr.eq(wdec.group),
                     wr.data.as_value().eq(Cat(self.w_level for _ in range(cells)))]
        lane_hot = Signal(p.R)
        col_hot = Signal(p.cols_max)
        for r in range(p.R):
            m.d.comb += lane_hot[r].eq(wdec.lane == r)
        for c in range(p.cols_max):
            m.d.comb += col_hot[c].eq(wdec.col_sel == c)
        stuck_groups = {}            # (lane r, column c) -> groups g whose cell is stuck
        for row, c in self._stuck:
            stuck_groups.setdefault((row % p.R, c), []).append(row // p.R)

        def lane_en(r, c):
            en = lane_hot[r] & col_hot[c] & wdec.we
            for g in stuck_groups.get((r, c), []):
                en = en & (wdec.group != g)
            return en

        m.d.comb += wr.en.eq(Cat(lane_en(r, c) for r in range(p.R) for c in range(p.cols_max)))

        # --- read-back: a second decoder, element selected one cycle later -------------
        m.submodules.vdec = vdec = WriteDecoder(p)
        m.d.comb += [vdec.en.eq(1), vdec.row.eq(self.v_row), vdec.col.eq(self.v_col),
                     vr.addr.eq(vdec.group)]
        v_idx = Signal(range(cells))
        v_bad = Signal()
        m.d.sync += [v_idx.eq(vdec.lane * p.cols_max + vdec.col_sel), v_bad.eq(vdec.error)]
        v_word = vr.data.as_value()
        with m.If(~v_bad):
            m.d.comb += self.v_level.eq(v_word.word_select(v_idx, p.level_bits))

        # --- compute read: RAM word of the group, then rows x bits summed per column -----
        in_range = self.rd_group < p.groups_total
        bits_q = Signal(p.R)
        m.d.comb += [rd.addr.eq(self.rd_group), rd.en.eq(self.rd_en)]
        m.d.sync += [self.p_valid.eq(self.rd_en),
                     bits_q.eq(Mux(self.rd_en & in_range, self.rd_bits, 0))]
        for c in range(p.cols_max):
            terms = [Mux(bits_q[r], rd.data[r * p.cols_max + c], 0) for r in range(p.R)]
            m.d.comb += self.p[c].eq(sum(terms[1:], terms[0]))
        return m

