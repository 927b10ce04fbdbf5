"""Co-verification harness: the SpinBayes core with everything a testbench would do per cycle.

A Python testbench that touches the core in every cycle is limited by the simulator's
callback rate (docs/COVERIFICATION.md). :class:`CoverifyHarness` moves the per-cycle work
into the design, so Python only fills memories, pulses a start and waits for ``done``:

* **Write-list player.** ``wlist`` is a memory of programming-port words (sel, a, b, c,
  data) filled by the testbench (VPI writes of ``wlist[i]``, or the ``h_wl_*`` port one word
  per cycle; a longer program is played in chunks of its depth). On ``h_prog_start`` the
  player presents entries 0 .. ``h_wl_count`` - 1 on the core's programming port, one per
  cycle in which ``prog_ready`` is high (the write decoder path, no back door). Then a
  read-back pass reads every ``XBAR_CELL`` entry through the core's ``vfy_*`` port and
  counts the cells whose level differs (``h_vfy_errors``; the first ``ERRLOG`` failing
  entry numbers are kept in ``errlog``).
* **Input stream.** The testbench writes one image's input codes (layer 0's input tensor in
  torch's flatten order) into the memory ``image`` (VPI writes of ``image[i]``, or the
  ``h_img_*`` port one code per cycle; ``img_depth`` = max(rows_max, image_depth) codes) and
  its length into ``h_img_len``, then pulses ``h_start``; the harness streams them on
  ``in_data``/``in_valid``.
* **Random stalls.** A xorshift32 generator (seed ``h_stall_seed``, loaded with
  ``h_stall_load``) drops ``in_valid`` and ``out_ready`` in a cycle with probability
  ``h_stall_thr / 2^16`` each (independent bits of the same word), so back-pressure on both
  streams is exercised without Python.
* **Capture.** Every accepted result beat is logged in order into ``beats`` (word: data,
  index, pass, kind; see :meth:`CoverifyHarness.beat_fields`), every arbiter selection into
  ``trace`` (indices, pass, layer) and, with ``act_log`` > 0, every beat of the core's
  activation trace into ``acts`` (codes, position, pass, layer; :meth:`act_fields`) until it
  is full (``h_n_acts`` counts them all). ``h_n_beats``, ``h_n_trace`` and ``h_cycles`` (cycles
  from start to the class beat) are valid from the class beat on.
* **Counters.** After the class beat the harness reads the six activity counters and then
  ``PASSES_RUN`` through the core's read port (``rd_*``, :class:`~spinbayes.rtl.regs.ReadReg`,
  one per cycle) into the memory ``counters`` (:data:`SNAP_REGS`: the counters' cumulative
  values in the order of ``regs.COUNTERS``, then the image's passes); ``h_done`` rises
  when they are in, :data:`SNAP_CYCLES` cycles after the class beat, and stays high until the
  next start. A pulse on ``h_snap`` (core idle) takes the same snapshot without an image;
  ``h_snapped`` is high while no snapshot is in progress.
* **Alarm.** While an image runs the harness reads ``STATUS`` through the read port in every
  cycle; when it shows ``ALARM`` (a stuck arbiter or an RNG health alarm) the image stops
  (``h_running`` falls, no ``h_done``) and ``h_alarm`` rises, :data:`ALARM_CYCLES` cycles
  after ALARM, until the next start. The testbench then reads the health registers itself
  (through the bypass) to name the layer, device and test.
* **Bypass.** With ``h_bypass`` high the core's inputs come from ports named exactly like the
  core's (``prog_en`` .. ``out_ready``), and the core's outputs are always visible under their
  own names, so :class:`~spinbayes.firmware.driver.CoreDriver` over ``CocotbBus`` runs on the
  same build unchanged.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams, bits_for, check_params
from spinbayes.rtl.regs import (
    COUNTER_REGS,
    PROG_FIELDS,
    PROG_WORD_BITS,
    READ_DATA_BITS,
    OutKind,
    ReadReg,
    Reg,
    Status,
    pack_prog,
    prog_layout,
)
from spinbayes.rtl.status import READ_LATENCY

__all__ = ["ALARM_CYCLES", "CoverifyHarness", "ERRLOG", "SNAP_CYCLES", "SNAP_REGS", "WORD_FIELDS",
           "pack_write", "default_wlist_depth"]

#: Fields of a write-list word, LSB first, with their widths: the programming word of
#: rtl/regs.py (data is two's complement).
WORD_FIELDS = PROG_FIELDS
WORD_BITS = PROG_WORD_BITS
#: Failing read-back entries remembered (the count in ``h_vfy_errors`` is exact).
ERRLOG = 64
#: The core's inputs that ``h_bypass`` hands to the external ports of the same name.
CORE_INPUTS = ("prog_en", "prog_sel", "prog_a", "prog_b", "prog_c", "prog_data", "vfy_k",
               "vfy_row", "vfy_col", "in_data", "in_valid", "out_ready", "rd_en", "rd_sel",
               "rd_index")
#: The registers a snapshot reads, in the order of the ``counters`` memory: the activity
#: counters, then the passes the last image ran.
SNAP_REGS = (*COUNTER_REGS, ReadReg.PASSES_RUN)
#: Cycles from the class beat (or ``h_snap``) to ``h_done`` (or ``h_snapped``): one read per
#: register of SNAP_REGS, the last one's latency.
SNAP_CYCLES = len(SNAP_REGS) + READ_LATENCY
#: Cycles from ALARM rising in the core's status to ``h_alarm``: the read, its latency.
ALARM_CYCLES = 1 + READ_LATENCY


#: One write-list word (WORD_FIELDS) as an integer: ``pack_write(sel, a, b, c, data)``.
pack_write = pack_prog


#: Largest default write list: a longer program is played in chunks (sim/tb_network.py).
WLIST_MAX = 2 ** 16


def default_wlist_depth(p: RtlParams) -> int:
    """Every cell of every crossbar plus room for the descriptor table, a power of two, at
    most :data:`WLIST_MAX` (a million-entry memory made the export alone take gigabytes)."""
    need = p.N * p.groups_total * p.R * p.cols_max + 64 + p.layers_max * (
        12 + p.outputs_max * (1 + p.levels) + p.code_bits) + 2 * p.outputs_max
    return min(WLIST_MAX, 1 << (need - 1).bit_length())


class CoverifyHarness(wiring.Component):
    """The core plus write-list player, image streamer, stall generator and result logs.

    Parameters
    ----------
    params : RtlParams of the wrapped :class:`~spinbayes.rtl.network.SpinBayesCore`.
    wlist_depth : entries of the write list (default :func:`default_wlist_depth`).
    stuck_cells : passed to the core (fault injection, read-back must report them).
    act_log : entries of the activation-trace log (0: no log).
    """

    def __init__(self, params: RtlParams, *, wlist_depth: int | None = None, stuck_cells=(),
                 act_log: int = 0):
        self.params = p = check_params(self, params)
        self.wlist_depth = int(wlist_depth or default_wlist_depth(p))
        if self.wlist_depth < 2:
            self._MustUse__silence = True
            raise ValueError(f"wlist_depth must be at least 2, not {wlist_depth!r}")
        self.beat_depth = p.T_max * p.classes_max + p.classes_max + 1
        self.trace_depth = p.layers_max * p.T_max
        self.img_depth = max(p.rows_max, p.image_depth)
        if not isinstance(act_log, int) or isinstance(act_log, bool) or act_log < 0:
            self._MustUse__silence = True
            raise ValueError(f"act_log must be a non-negative integer, not {act_log!r}")
        self.act_log = act_log
        self.core = SpinBayesCore(p, stuck_cells=stuck_cells)
        self.core._MustUse__silence = True     # elaborated with the harness, or not at all
        wb = bits_for(self.wlist_depth + 1)
        ports = {
            "h_bypass": In(1),
            "h_wl_wen": In(1), "h_wl_waddr": In(bits_for(self.wlist_depth)),
            "h_wl_wdata": In(WORD_BITS),
            "h_wl_count": In(wb), "h_prog_start": In(1), "h_verify": In(1),
            "h_prog_busy": Out(1), "h_prog_done": Out(1),
            "h_prog_cycles": Out(32), "h_vfy_checked": Out(32), "h_vfy_errors": Out(32),
            "h_img_wen": In(1), "h_img_waddr": In(bits_for(self.img_depth)),
            "h_img_wdata": In(p.A_in), "h_img_len": In(range(self.img_depth + 1)),
            "h_start": In(1), "h_done": Out(1), "h_running": Out(1),
            "h_cycles": Out(32), "h_n_beats": Out(range(self.beat_depth + 1)),
            "h_n_trace": Out(range(self.trace_depth + 1)), "h_n_acts": Out(32),
            "h_stall_thr": In(17), "h_stall_seed": In(32), "h_stall_load": In(1),
            "h_snap": In(1), "h_snapped": Out(1, init=1), "h_alarm": Out(1),
        }
        for name, member in self.core.signature.members.items():
            ports[name] = member          # same direction: inputs in, outputs out
        super().__init__(ports)

    def beat_fields(self):
        """(name, width) of a ``beats`` word, LSB first."""
        p = self.params
        return (("data", p.total_bits), ("index", p.output_bits_index),
                ("pass", p.t_bits), ("kind", 2))

    def trace_fields(self):
        """(name, width) of a ``trace`` word, LSB first (``indices`` n_max x index_bits)."""
        p = self.params
        return (("indices", p.n_max * p.index_bits), ("pass", p.t_bits),
                ("layer", max(1, (p.layers_max - 1).bit_length())))

    def act_fields(self):
        """(name, width) of an ``acts`` word, LSB first (``codes`` outputs_max x A)."""
        core = self.core.signature.members
        return (("codes", self.params.outputs_max * self.params.A),
                ("pos", Shape.cast(core["act_pos"].shape).width),
                ("pass", self.params.t_bits), ("layer", self.core._layer_bits))

    def describe(self) -> dict:
        return {"wlist_depth": self.wlist_depth, "beat_depth": self.beat_depth,
                "trace_depth": self.trace_depth, "img_depth": self.img_depth,
                "act_log": self.act_log, "word_fields": list(WORD_FIELDS),
                "beat_fields": list(self.beat_fields()),
                "trace_fields": list(self.trace_fields()),
                "act_fields": list(self.act_fields()), "act_code_bits": self.params.A,
                "act_codes": self.params.outputs_max, "errlog": ERRLOG}

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.core = core = self.core

        # --- memories ------------------------------------------------------------------
        m.submodules.wlist = wlist = Memory(shape=unsigned(WORD_BITS), depth=self.wlist_depth,
                                            init=[])
        bw = sum(w for _, w in self.beat_fields())
        tw = sum(w for _, w in self.trace_fields())
        m.submodules.beats = beats = Memory(shape=unsigned(bw), depth=self.beat_depth, init=[])
        m.submodules.trace = trace = Memory(shape=unsigned(tw), depth=self.trace_depth,
                                            init=[])
        m.submodules.errlog = errlog = Memory(shape=unsigned(32), depth=ERRLOG, init=[])
        m.submodules.image = image = Memory(shape=unsigned(p.A_in), depth=self.img_depth,
                                            init=[])
        im_w = image.write_port()
        im_r = image.read_port(domain="comb")
        m.d.comb += [im_w.en.eq(self.h_img_wen), im_w.addr.eq(self.h_img_waddr),
                     im_w.data.eq(self.h_img_wdata)]
        wl_w = wlist.write_port()
        wl_r = wlist.read_port(domain="comb")
        m.d.comb += [wl_w.en.eq(self.h_wl_wen), wl_w.addr.eq(self.h_wl_waddr),
                     wl_w.data.eq(self.h_wl_wdata)]
        word = Signal(prog_layout())
        m.d.comb += word.as_value().eq(wl_r.data)

        # --- stall generator (xorshift32) ----------------------------------------------
        rng = Signal(32, init=0x2545F491)
        x1 = Signal(32)
        x2 = Signal(32)
        x3 = Signal(32)
        m.d.comb += [x1.eq(rng ^ (rng << 13)[:32]), x2.eq(x1 ^ (x1 >> 17)),
                     x3.eq(x2 ^ (x2 << 5)[:32])]
        with m.If(self.h_stall_load):
            m.d.sync += rng.eq(Mux(self.h_stall_seed == 0, 1, self.h_stall_seed))
        with m.Else():
            m.d.sync += rng.eq(x3)
        stall_in = Signal()
        stall_out = Signal()
        m.d.comb += [stall_in.eq(rng[:16] < self.h_stall_thr),
                     stall_out.eq(rng[16:] < self.h_stall_thr)]

        # --- harness-driven values of the core's inputs ----------------------------------
        own = {name: Signal.like(getattr(core, name), name=f"own_{name}") for name in CORE_INPUTS}
        for name in CORE_INPUTS:
            m.d.comb += getattr(core, name).eq(Mux(self.h_bypass, getattr(self, name),
                                                   own[name]))
        for name, member in core.signature.members.items():
            if member.flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(core, name))

        # --- write-list player and read-back verification --------------------------------
        ptr = Signal(range(self.wlist_depth + 1))
        chk = Signal()
        chk_exp = Signal(signed(4))
        chk_ptr = Signal.like(ptr)
        m.d.comb += wl_r.addr.eq(ptr)
        el_w = errlog.write_port()
        m.d.comb += [el_w.addr.eq(self.h_vfy_errors[:bits_for(ERRLOG)]),
                     el_w.data.eq(chk_ptr)]
        m.d.sync += chk.eq(0)
        with m.If(chk):
            m.d.sync += self.h_vfy_checked.eq(self.h_vfy_checked + 1)
            with m.If(core.vfy_level != chk_exp):
                m.d.sync += self.h_vfy_errors.eq(self.h_vfy_errors + 1)
                m.d.comb += el_w.en.eq(self.h_vfy_errors < ERRLOG)
        with m.If(self.h_prog_busy):
            m.d.sync += self.h_prog_cycles.eq(self.h_prog_cycles + 1)
        with m.FSM(name="player"):
            with m.State("IDLE"):
                with m.If(self.h_prog_start):
                    m.d.sync += [ptr.eq(0), self.h_prog_done.eq(0), self.h_prog_cycles.eq(0),
                                 self.h_vfy_checked.eq(0), self.h_vfy_errors.eq(0)]
                    m.next = "PLAY"
            with m.State("PLAY"):
                m.d.comb += self.h_prog_busy.eq(1)
                with m.If(ptr == self.h_wl_count):
                    m.d.sync += ptr.eq(0)
                    m.next = "VERIFY"
                    with m.If(~self.h_verify):
                        m.d.sync += self.h_prog_done.eq(1)
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += [own["prog_en"].eq(1), own["prog_sel"].eq(word.sel),
                                 own["prog_a"].eq(word.a), own["prog_b"].eq(word.b),
                                 own["prog_c"].eq(word.c), own["prog_data"].eq(word.data)]
                    with m.If(core.prog_ready):
                        m.d.sync += ptr.eq(ptr + 1)
            with m.State("VERIFY"):
                m.d.comb += self.h_prog_busy.eq(1)
                with m.If(ptr == self.h_wl_count):
                    m.next = "FLUSH"
                with m.Else():
                    m.d.comb += [own["vfy_k"].eq(word.c), own["vfy_row"].eq(word.a),
                                 own["vfy_col"].eq(word.b)]
                    m.d.sync += [chk.eq(word.sel == Reg.XBAR_CELL),
                                 chk_exp.eq(word.data[:4]), chk_ptr.eq(ptr), ptr.eq(ptr + 1)]
            with m.State("FLUSH"):          # the last read-back compares in this cycle
                m.d.comb += self.h_prog_busy.eq(1)
                m.d.sync += self.h_prog_done.eq(1)
                m.next = "IDLE"

        # --- image streamer and result capture -----------------------------------------
        idx = Signal(range(self.img_depth + 1))
        running = self.h_running
        m.d.comb += [im_r.addr.eq(idx), own["in_data"].eq(im_r.data),
                     own["in_valid"].eq(running & (idx < self.h_img_len) & ~stall_in),
                     own["out_ready"].eq(running & ~stall_out)]
        with m.If(own["in_valid"] & core.in_ready):
            m.d.sync += idx.eq(idx + 1)
        bt_w = beats.write_port()
        tr_w = trace.write_port()
        m.d.comb += [bt_w.addr.eq(self.h_n_beats), tr_w.addr.eq(self.h_n_trace),
                     bt_w.data.eq(core.out_data.as_unsigned()
                                   | (core.out_index << p.total_bits)
                                   | (core.out_pass << (p.total_bits + p.output_bits_index))
                                   | (core.out_kind << (p.total_bits + p.output_bits_index
                                                        + p.t_bits))),
                     tr_w.data.eq(core.trace_indices.as_value()
                                  | (core.trace_pass << p.n_max * p.index_bits)
                                  | (core.trace_layer << (p.n_max * p.index_bits + p.t_bits)))]
        beat = Signal()
        m.d.comb += beat.eq(running & core.out_valid & own["out_ready"])
        snap_start, snap_image = Signal(), Signal()     # start a snapshot; it ends an image
        with m.If(running):
            m.d.sync += self.h_cycles.eq(self.h_cycles + 1)
            with m.If(beat & (self.h_n_beats < self.beat_depth)):
                m.d.comb += bt_w.en.eq(1)
                m.d.sync += self.h_n_beats.eq(self.h_n_beats + 1)
                with m.If(core.out_kind == OutKind.CLASS):
                    m.d.comb += snap_start.eq(1)
                    m.d.sync += [running.eq(0), snap_image.eq(1)]
            with m.If(core.trace_valid & (self.h_n_trace < self.trace_depth)):
                m.d.comb += tr_w.en.eq(1)
                m.d.sync += self.h_n_trace.eq(self.h_n_trace + 1)
        if self.act_log:
            m.submodules.acts = acts = Memory(shape=unsigned(sum(w for _, w in
                                                                 self.act_fields())),
                                              depth=self.act_log, init=[])
            ac_w = acts.write_port()
            m.d.comb += [ac_w.addr.eq(self.h_n_acts),
                         ac_w.data.eq(Cat(core.act_codes.as_value(), core.act_pos,
                                          core.act_pass, core.act_layer)),
                         ac_w.en.eq(running & core.act_valid
                                    & (self.h_n_acts < self.act_log))]
        with m.If(running & core.act_valid):
            m.d.sync += self.h_n_acts.eq(self.h_n_acts + 1)
        with m.If(self.h_snap & ~self.h_bypass & ~running):
            m.d.comb += snap_start.eq(1)
            m.d.sync += snap_image.eq(0)
        self._counter_snapshot(m, own, snap_start, snap_image)
        with m.If(self.h_start & ~self.h_bypass):
            m.d.sync += [running.eq(1), self.h_done.eq(0), self.h_alarm.eq(0), idx.eq(0),
                         self.h_cycles.eq(0),
                         self.h_n_beats.eq(0), self.h_n_trace.eq(0), self.h_n_acts.eq(0)]
        return m

    def _counter_snapshot(self, m, own, start, image) -> None:
        """From the cycle after one with ``start``: read every register of SNAP_REGS through the
        core's read port into ``counters``; then ``h_snapped`` (and ``h_done`` if ``image``)
        rise."""
        core, n = self.core, len(SNAP_REGS)
        m.submodules.counters = mem = Memory(shape=unsigned(READ_DATA_BITS), depth=n, init=[])
        w = mem.write_port()
        i = Signal(range(n + 1))                       # the next counter to request
        pending = Signal(range(n))                     # the counter whose read is in flight
        issue, got = Signal(), Signal()
        # between snapshots, while an image runs: STATUS in every cycle (the alarm watch)
        poll, polled = Signal(), Signal()
        m.d.comb += [issue.eq(~self.h_snapped & (i < n)),
                     poll.eq(self.h_snapped & self.h_running & ~self.h_bypass),
                     own["rd_en"].eq(issue | poll), own["rd_index"].eq(0),
                     own["rd_sel"].eq(Mux(issue, Array(SNAP_REGS)[i], ReadReg.STATUS)),
                     w.en.eq(got), w.addr.eq(pending), w.data.eq(core.rd_data)]
        m.d.sync += [got.eq(issue), pending.eq(i), polled.eq(poll)]
        with m.If(polled & self.h_running & (core.rd_data & Status.ALARM).any()):
            m.d.sync += [self.h_running.eq(0), self.h_alarm.eq(1)]
        with m.If(issue):
            m.d.sync += i.eq(i + 1)
        with m.If(start):
            m.d.sync += [i.eq(0), self.h_snapped.eq(0)]
        with m.Elif(~self.h_snapped & (i == n)):       # the last read is in this cycle
            m.d.sync += [self.h_snapped.eq(1), self.h_done.eq(image)]
