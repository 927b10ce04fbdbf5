"""The SpinBayes network core: controller, descriptor table, streams and activity counters.

One generated design runs any network within its :class:`~spinbayes.rtl.params.RtlParams`:
the shape (rows, outputs, group base, input bits and geometry per layer), the comparator
thresholds, the output scaling, T, n-way and the RNG seeds are data written through the
programming port (:class:`~spinbayes.rtl.regs.Reg`). Per image (docs/HARDWARE.md, block
diagram and "The convolution path"):

    LOAD      accept layer 0's input codes (its input tensor, torch's flatten order)
    per pass t = 0 .. T-1, per layer l:
      ARB     the layer's arbiter chooses n of N crossbars (DEMUX mask, trace port)
      per output position (one for a dense layer):
        FETCH   a layer read from memory (a convolution, or the dense layer after one):
                the position's window into the window buffer (rtl/conv_unit.py)
        READ    for each bit-plane b (LSB first) and R-row group g: read the chosen
                crossbars (1 read per cycle), the adder-accumulator adds the n ADC vectors
        DRAIN   3 cycles for the read, select and accumulate pipeline
                (layer 0 with REUSE set: rtl/reuse.py reads only the crossbars not yet
                kept for this image, one at a time, and adds the n kept sums; no DRAIN)
        ACT     hidden dense: comparators write the window buffer (next layer's input);
                hidden convolution: comparators to the pooling and the activation memory;
                last: output scaling y = M S + B, one class per cycle from the last DRAIN
                cycle on; y_c streamed out (OutKind.PASS) as it is ready
      FLUSH   a convolution: the last pooled vector written, the memory banks swapped
      DECIDE  after the last layer, with an adaptive rule on (rtl/adaptive.py): stop
              after this pass, or run the next
    FINISH    the averaging block divides the sums by the passes run; averaged_c
              (OutKind.AVERAGE) and the class (OutKind.CLASS) are streamed out

Crossbar k of the design holds sample k of every layer, stacked by group base address: the
N physical arrays of each layer are folded into N memories (a digital emulation; on silicon
they are separate analog arrays with their own decoders).
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .aac import AdderAccumulator
from .adaptive import AdaptiveStop, adaptive_stage
from .arbiter import Arbiter
from .averaging import AveragingBlock
from .comparator import ComparatorBank
from .conv_unit import ConvUnit, window_write
from .emitter import activation_trace, counters, result_stream
from .params import RtlParams, bits_for, check_params
from .program_port import program_port
from .read_path import crossbars, read_path
from .regs import PROG_ORDER, READ_DATA_BITS, READ_FIELDS, LayerKind, ReadReg, prog_layout
from .reuse import reuse_stage
from .status import read_port

__all__ = ["DRAIN", "SpinBayesCore"]

#: Cycles from the last READ to ACT: crossbar read, selected-vector register, AAC add.
DRAIN = 3


class SpinBayesCore(wiring.Component):
    """The whole periphery around N behavioural crossbars.

    Ports
    -----
    prog_en, prog_sel, prog_a, prog_b, prog_c, prog_data : In
        Programming port (Reg); a write happens in a cycle with prog_en and prog_ready. The
        fields' widths are the programming word's (``regs.PROG_FIELDS``: 5, 16, 16, 8 and
        signed 32 bits).
    prog_ready : Out(1)
        ``not busy``: writes are accepted only while idle; a write presented during an
        inference waits (held by the master) and lands in the first idle cycle.
    vfy_k, vfy_row, vfy_col : In; vfy_level : Out(signed 4)
        Read-back of a crossbar cell (valid the cycle after the address).
    in_data (A_in), in_valid : In; in_ready : Out(1)
        Input stream: layer 0's input codes, one per beat, C_in*H*W of a convolution (the
        image memory) or the rows of a dense layer 0 per image.
    out_data (signed out_bits... total_bits), out_kind (2), out_index, out_pass, out_valid :
        Out; out_ready : In. Result stream (OutKind).
    trace_valid, trace_layer, trace_pass, trace_indices : Out
        One cycle per arbiter selection: the chosen crossbars, ascending.
    act_valid, act_layer, act_pass, act_pos, act_codes : Out
        Activation trace: each hidden layer's output vector as the next layer reads it (a
        dense layer's in its ACT cycle, a convolution's pooled vector at its pooled
        position; docs/HARDWARE.md, "The convolution path").
    busy, stuck : Out(1)
    rd_en, rd_sel, rd_index : In; rd_data, rd_valid : Out -- read path (ReadReg, rtl/status.py)

    Latency: docs/HARDWARE.md, "Latency budget" (dense layers) and "The convolution path"
    (layers read from memory), checked cycle-exactly by tests/rtl.

    Reset (sync ``rst``, also mid-inference): IDLE, counters and the descriptor table at their
    reset values; the crossbar cells keep their contents (docs/HARDWARE.md, "Reset").
    """

    def __init__(self, params: RtlParams, cell_init=None, *, stuck_cells=()):
        self.params = p = check_params(self, params)
        #: Fault injection (simulation): (k, row, col) cells of crossbar k that refuse to
        #: switch (CrossbarMemory ``stuck``); firmware's read-back verification reports them.
        self._stuck = {}
        for k, r, c in stuck_cells:
            if not 0 <= int(k) < p.N:
                self._MustUse__silence = True
                raise ValueError(f"stuck cell crossbar index must be in 0..{p.N - 1}, not {k!r}")
            self._stuck.setdefault(int(k), []).append((int(r), int(c)))
        #: Simulator back door: int (N, groups_total * R, cols_max) initial cell levels
        #: (firmware.compiler.Program.cells); None: every cell starts at 0.
        self._cell_init = cell_init
        self._layer_bits = max(1, (p.layers_max - 1).bit_length())
        word = prog_layout()
        super().__init__({
            "prog_en": In(1),
            **{f"prog_{f}": In(word[f].shape) for f in PROG_ORDER},
            "prog_ready": Out(1),
            "vfy_k": In(p.index_bits), "vfy_row": In(p.row_bits), "vfy_col": In(p.col_bits),
            "vfy_level": Out(signed(4)),
            "in_data": In(p.A_in), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(signed(p.total_bits)), "out_kind": Out(2),
            "out_index": Out(p.output_bits_index), "out_pass": Out(p.t_bits),
            "out_valid": Out(1), "out_ready": In(1),
            "trace_valid": Out(1), "trace_layer": Out(self._layer_bits),
            "trace_pass": Out(p.t_bits),
            "trace_indices": Out(data.ArrayLayout(unsigned(p.index_bits), p.n_max)),
            "act_valid": Out(1), "act_layer": Out(self._layer_bits), "act_pass": Out(p.t_bits),
            "act_pos": Out(bits_for(p.out_size_max ** 2) if p.conv else 1),
            "act_codes": Out(data.ArrayLayout(unsigned(p.A), p.outputs_max)),
            "busy": Out(1), "stuck": Out(1),
            "rd_en": In(1), **{f"rd_{f}": In(w) for f, w in READ_FIELDS},
            "rd_data": Out(READ_DATA_BITS), "rd_valid": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        L = p.layers_max

        # --- blocks ------------------------------------------------------------------
        xbars = crossbars(self, m)
        arbs = []
        for i in range(L):
            arb = Arbiter(p.N, p.n_max, p.rng_bits, health=True, thr_override=True)
            m.submodules[f"arbiter{i}"] = arb
            arbs.append(arb)
        m.submodules.aac = aac = AdderAccumulator(p)
        m.submodules.comparators = cmp = ComparatorBank(p)
        m.submodules.averaging = avg = AveragingBlock(p)
        m.submodules.adaptive = ad = AdaptiveStop(p)

        # --- descriptor table, configuration registers, programming port -------------
        regs, in_ok = program_port(self, m, [xb for xb, _ in xbars], arbs)
        rows, outs, gbase, in_bits = regs["rows"], regs["outs"], regs["gbase"], regs["in_bits"]
        theta, sign, scale, offset = regs["theta"], regs["sign"], regs["scale"], regs["offset"]
        n_layers, passes, n_way = regs["n_layers"], regs["passes"], regs["n_way"]

        # --- datapath state ----------------------------------------------------------
        img = Signal(data.ArrayLayout(unsigned(p.A_max), p.rows_max))   # dense layer 0 input
        # the window buffer: a layer's input rows (the comparator outputs of the previous
        # dense layer, or the window of the current position fetched from memory); with the
        # convolution path two, READ reading `rsel` while the next window is fetched into
        # the other
        act = Signal(data.ArrayLayout(unsigned(p.A_max), p.rows_max))
        act_b = Signal.like(act) if p.conv else act
        rsel = Signal()
        layer = Signal(range(L))
        t = Signal(p.t_bits)
        plane = Signal(range(p.A_max))
        group = Signal(range(p.groups_total))
        idx = Signal(range(max(p.rows_max, p.image_depth) + 1))
        # the current layer's last group and bit-plane (group count - 1, input bits - 1) in
        # registers one cycle behind `layer` (READ starts >= 2 cycles after it changes), off the
        # controller's critical path; LOAD's, EMIT's and the passes' ends likewise ("- 1" copies)
        last_group = Signal(range(p.groups_total + 1))
        last_plane = Signal(range(p.A_max + 1))
        m.d.sync += [last_group.eq((rows[layer] + p.R - 1) // p.R - 1),
                     last_plane.eq(in_bits[layer] - 1)]
        # per layer: reads its input from memory (a convolution, or the dense layer after
        # one), is a convolution; the image is C_in*H*W beats for a convolution, else rows
        conv = cu = None
        img_len = Signal.like(idx)
        m.d.comb += img_len.eq(rows[0])
        cur_fetch, cur_conv, read_img = Signal(), Signal(), Signal()
        if not p.conv:
            m.d.sync += read_img.eq(layer == 0)
        else:
            m.submodules.conv = cu = ConvUnit(p)
            kind = regs["kind"]
            conv = Array(k == LayerKind.CONV2D for k in kind)
            fetch = Array([conv[0]] + [conv[i] | conv[i - 1] for i in range(1, L)])
            m.d.comb += img_len.eq(Mux(conv[0], regs["c_in"][0] * regs["h"][0] * regs["w"][0],
                                       rows[0]))
            m.d.sync += [cur_fetch.eq(fetch[layer]), cur_conv.eq(conv[layer]),
                         read_img.eq((layer == 0) & ~conv[0])]
        img_m1 = Signal.like(idx)
        passes_m1 = Signal.like(passes)
        img_is1 = Signal()
        m.d.sync += [img_m1.eq(img_len - 1), img_is1.eq(img_len == 1),
                     passes_m1.eq(passes - 1)]
        last = Signal()
        n_cls = Signal(range(p.classes_max + 1))   # outputs of the last layer (classes)
        m.d.comb += [
            last.eq(layer == n_layers - 1),
            # at most classes_max (firmware refuses a larger last layer; a misprogrammed one
            # streams its first classes_max classes)
            n_cls.eq(Mux(outs[n_layers - 1] > p.classes_max, p.classes_max,
                         outs[n_layers - 1])),
        ]
        ncls_m1 = Signal.like(n_cls)
        m.d.sync += ncls_m1.eq(n_cls - 1)
        arb_mask = Signal(p.N)
        arb_idx = Signal(data.ArrayLayout(unsigned(p.index_bits), p.n_max))
        m.d.comb += [arb_mask.eq(Array(x.mask for x in arbs)[layer]),
                     arb_idx.eq(Array(x.indices for x in arbs)[layer])]

        # read issue (bits of rows group*R .. group*R+R-1, bit-plane `plane`), crossbars,
        # slot select and adder-accumulator; the accumulators are cleared in the first READ
        # cycle of a position (registered: no fan-out of the FSM decode over the sum_bits x
        # outputs_max accumulators), two cycles before the first read reaches them
        issue, aac_clear = Signal(), Signal()
        buffers = (Mux(read_img, 2, rsel), [act, act_b, img])
        # first-layer reuse (rtl/reuse.py): its reads in layer 0, its sums to the comparators
        arb_start, avg_clear = Signal(), Signal()
        ru = reuse_stage(m, p, enable=regs["reuse"], layer=layer, image_start=avg_clear,
                         arb_start=arb_start, start=aac_clear, arb_mask=arb_mask,
                         arb_idx=arb_idx, n_way=n_way, plane=plane, group=group,
                         last_group=last_group, last_plane=last_plane, aac=aac)
        read_path(p, m, xbars, aac, issue=issue, plane=ru.plane, group=ru.group,
                  base=gbase[layer], rows=rows[layer], buffers=buffers, arb_mask=ru.mask,
                  arb_idx=ru.idx, n_way=ru.n_way, clear=aac_clear | ru.clear)

        # comparators and averaging see the AAC's sums (with reuse in layer 0: the cache's)
        # the current layer's thresholds, signs and outputs, registered (one cycle behind
        # `layer`, like last_group): the layer multiplexer in front of all comparators was in
        # the periphery's critical path on the ECP5
        cur_theta, cur_sign = Signal.like(theta[0]), Signal.like(sign[0])
        cur_outs = Signal.like(outs[0])
        m.d.sync += [cur_theta.eq(theta[layer]), cur_sign.eq(sign[layer]),
                     cur_outs.eq(outs[layer])]
        m.d.comb += [cmp.S.eq(ru.S), cmp.theta.eq(cur_theta), cmp.sign.eq(cur_sign),
                     cmp.n_out.eq(cur_outs),
                     *(avg.S[j].eq(ru.S[j]) for j in range(p.classes_max)),
                     avg.M.eq(scale), avg.B.eq(offset),
                     avg.n_out.eq(n_cls), avg.T.eq(t + 1)]     # the passes run

        # --- controller --------------------------------------------------------------
        for i, arb in enumerate(arbs):
            m.d.comb += arb.start.eq(arb_start & (layer == i))
        arb_done = Signal()
        m.d.comb += [arb_done.eq(Array(x.done for x in arbs)[layer]),
                     self.trace_layer.eq(layer), self.trace_pass.eq(t),
                     self.trace_indices.eq(arb_idx), self.trace_valid.eq(arb_done)]
        out_c = Signal(range(p.outputs_max + 1))
        drain = Signal(2)
        # the convolution path's handshakes (0 in a dense-only design); the current position
        # is the layer's last; the next window is in the other buffer (prefetched during READ,
        # DRAIN, ACT) and is the last; go_next: ACT with the next window ready, READ it next
        fetched, last_pos, go_next = Signal(), Signal(), Signal()
        if cu is not None:
            m.d.comb += [fetched.eq(cu.fetched), last_pos.eq(cu.last_pos)]
        cur_last, nxt_ready, nxt_last = Signal(), Signal(), Signal()
        fin = Signal()      # high in the FINISH cycle: a register set on entering FINISH
        m.d.sync += fin.eq(0)
        # The FSM moves state (and sets fin); every output that depends on the state is a
        # plain expression of it below (one continuous assignment each): a combinational block
        # whose only input is the state register is never evaluated at time 0 by Icarus.
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.in_valid & in_ok):
                    m.d.sync += [img[0].eq(self.in_data), idx.eq(1)]
                    with m.If(img_is1):
                        m.d.sync += [t.eq(0), layer.eq(0)]
                        m.next = "ARB"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(self.in_valid):
                    with m.If(idx < p.rows_max):
                        m.d.sync += (img.as_value().word_select(idx[:p.row_bits], p.A_max)
                                     .eq(self.in_data))
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == img_m1):
                        m.d.sync += [t.eq(0), layer.eq(0)]
                        m.next = "ARB"
            with m.State("ARB"):
                m.next = "ARB_WAIT"
            with m.State("ARB_WAIT"):
                with m.If(arb_done):
                    with m.If(cur_fetch):
                        m.next = "FETCH"
                    with m.Else():
                        m.next = "READ"
            with m.State("FETCH"):
                with m.If(fetched):
                    m.d.sync += [rsel.eq(~rsel), cur_last.eq(last_pos)]
                    m.next = "READ"
            with m.State("READ"):
                with m.If(ru.on):              # layer 0 with REUSE set: the cache's reads
                    with m.If(ru.done):
                        m.next = "ACT"
                with m.Elif(group == last_group):
                    m.d.sync += group.eq(0)
                    with m.If(plane == last_plane):
                        m.d.sync += [drain.eq(0), plane.eq(0)]
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += plane.eq(plane + 1)
                with m.Else():
                    m.d.sync += group.eq(group + 1)
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN - 1):
                    m.next = "ACT"
            with m.State("ACT"):
                with m.If(last):
                    m.d.sync += out_c.eq(0)
                    m.next = "EMIT_Y_WAIT"
                with m.Elif(cur_conv):
                    with m.If(cur_last):
                        m.next = "FLUSH"
                    with m.Elif(go_next):
                        m.d.sync += [rsel.eq(~rsel),
                                     cur_last.eq(Mux(nxt_ready, nxt_last, last_pos))]
                        m.next = "READ"
                    with m.Else():
                        m.next = "FETCH"
                with m.Else():
                    # a hidden dense layer's outputs are the next layer's rows (<= rows_max)
                    for j in range(min(p.outputs_max, p.rows_max)):
                        v = Mux(j < cur_outs, cmp.act[j], 0)
                        with m.If(rsel):
                            m.d.sync += act_b[j].eq(v)
                        with m.Else():
                            m.d.sync += act[j].eq(v)
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "ARB"
            with m.State("FLUSH"):             # the last pooled vector is written: swap
                m.d.sync += layer.eq(layer + 1)
                m.next = "ARB"
            with m.State("EMIT_Y_WAIT"):
                m.next = "EMIT_Y"
            with m.State("EMIT_Y"):
                with m.If(self.out_ready):
                    m.d.sync += out_c.eq(out_c + 1)
                    with m.If(out_c == ncls_m1):
                        m.d.sync += layer.eq(0)
                        with m.If(regs["adapt_rule"] != 0):
                            m.next = "DECIDE"
                        with m.Elif(t == passes_m1):
                            m.d.sync += fin.eq(1)
                            m.next = "FINISH"
                        with m.Else():
                            m.d.sync += t.eq(t + 1)
                            m.next = "ARB"
            with m.State("DECIDE"):            # adaptive T: stop after this pass?
                with m.If(ad.done & (ad.stop | (t == passes_m1))):
                    m.d.sync += fin.eq(1)
                    m.next = "FINISH"
                with m.Elif(ad.done):
                    m.d.sync += t.eq(t + 1)
                    m.next = "ARB"
            with m.State("FINISH"):
                m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(avg.done):
                    m.d.sync += out_c.eq(0)
                    m.next = "EMIT_AVG"
            with m.State("EMIT_AVG"):
                with m.If(self.out_ready):
                    m.d.sync += out_c.eq(out_c + 1)
                    with m.If(out_c == ncls_m1):
                        m.next = "EMIT_CLASS"
            with m.State("EMIT_CLASS"):
                with m.If(self.out_ready):
                    m.next = "IDLE"

        st = fsm.ongoing
        idle, load = st("IDLE"), st("LOAD")
        emit_y, emit_avg, emit_cls = st("EMIT_Y"), st("EMIT_AVG"), st("EMIT_CLASS")
        act_st = st("ACT")
        beat = ((idle & in_ok) | load) & self.in_valid
        start_img = beat & Mux(idle, img_is1, idx == img_m1)
        m.d.comb += go_next.eq(act_st & ~last & cur_conv & ~cur_last & (nxt_ready | fetched))
        with m.If(go_next):
            m.d.sync += nxt_ready.eq(0)
        with m.Elif(fetched & ~st("FETCH")):
            m.d.sync += [nxt_ready.eq(1), nxt_last.eq(last_pos)]
        m.d.sync += aac_clear.eq((st("ARB_WAIT") & arb_done & ~cur_fetch)
                                 | (st("FETCH") & fetched) | go_next)
        if cu is not None:
            g = {n: regs[n][layer] for n in ("c_in", "h", "w", "k", "stride", "padding", "pool")}
            m.d.comb += [
                cu.img_we.eq(beat & conv[0]), cu.img_addr.eq(Mux(idle, 0, idx)),
                cu.img_data.eq(self.in_data),
                cu.start.eq(st("ARB") & fetch[layer]),
                cu.C_in.eq(g["c_in"]), cu.H.eq(g["h"]), cu.W.eq(g["w"]), cu.k.eq(g["k"]),
                cu.stride.eq(g["stride"]), cu.padding.eq(g["padding"]), cu.pool.eq(g["pool"]),
                cu.src_image.eq(layer == 0), cu.is_conv.eq(conv[layer]),
                cu.word_ch.eq(Mux(layer == 0, 1, outs[layer - 1])),
                cu.fetch.eq(st("FETCH") | ((st("READ") | st("DRAIN") | act_st) & cur_conv
                                           & ~cur_last & ~nxt_ready)),
                cu.act_valid.eq(act_st & ~last & cur_conv),
                *(cu.act_codes[j].eq(cmp.act[j]) for j in range(p.act_channels)),
                cu.swap.eq(st("FLUSH")), cu.skip.eq(ru.skip),
            ]
            window_write(m, (act, act_b), ~rsel, cu, p)
        # the averaging block is cleared the cycle after the image's last input beat (a
        # register, not the input handshake's decode); its first pass is far later
        m.d.sync += avg_clear.eq(start_img)
        m.d.comb += [
            self.busy.eq(~idle),
            self.in_ready.eq((idle & in_ok) | load),
            arb_start.eq(st("ARB")),
            issue.eq((st("READ") & ~ru.on) | ru.issue),
            avg.clear.eq(avg_clear),
            # S is final in the last DRAIN cycle: the multiply-adds start there (class 0's
            # y is in avg.y by the first EMIT_Y cycle, one class more each cycle after)
            avg.pass_valid.eq(((st("DRAIN") & (drain == DRAIN - 1)) | ru.done) & last),
            cmp.valid.eq(act_st & ~last),
            avg.finish.eq(fin),
        ]
        result_stream(self, m, emit_y=emit_y, emit_avg=emit_avg, emit_cls=emit_cls,
                      out_c=out_c, t=t, avg=avg)
        activation_trace(self, m, dense_valid=act_st & ~last & ~cur_conv, codes=cmp.act,
                         outs=cur_outs, layer=layer, t=t, cu=cu)
        passes_run = adaptive_stage(m, ad, regs, avg, t=t, n_cls=n_cls, clear=avg_clear,
                                    finish=fin)
        read_port(self, m, counters(self, m, issue=issue, arb_mask=ru.mask, arbs=arbs,
                                    aac_ops=aac.ops + ru.ops, cmp=cmp, avg=avg), arbs,
                  {ReadReg.PASSES_RUN: passes_run})
        return m
