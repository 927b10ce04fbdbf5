"""Adaptive T: the controller's early-stop decision after each pass (docs/HARDWARE.md,
"Adaptive T"; the integer reference is golden/adaptive.py)."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import RtlParams, check_params
from .regs import CONFIDENCE_BITS, AdaptRule

__all__ = ["ADAPT_LATENCY", "DECIDE_CYCLES", "AdaptiveStop", "adaptive_stage"]

#: Cycles from the scan of the last class to ``done``: the votes and the bound, then the
#: comparison.
ADAPT_LATENCY = 3
#: Cycles of the core's DECIDE state after a pass's last EMIT_Y beat when the result stream
#: does not stall (its last class is scanned in that beat's cycle + 1); with stalls in EMIT_Y
#: fewer, at least 1.
DECIDE_CYCLES = ADAPT_LATENCY + 1


class AdaptiveStop(wiring.Component):
    """Whether an image stops after the pass that just ran, under the rule of
    ``Reg.ADAPT_RULE``.

    **Behaviour.** ``start`` (the averaging block's ``pass_valid``) starts a scan of the classes
    c = 0 .. n - 1 (n = ``n_cls``): class c is scanned as soon as the averaging block has
    written ``Y[c]``, i.e. when ``y_count >= c + 2`` or the block is no longer ``src_busy``,
    with its Y_c (the sum after this pass) and y_c (this pass's output) taken from the block's
    ``Y_new`` and ``y_new`` in the cycle of that write (registered here: the multiply-adds give
    one class per cycle without gaps and the scan takes each in the cycle after its write). The
    scan keeps, for the exact rule, the leader's sum ``best`` (a class replaces it only if
    strictly greater, so ties keep the lowest index) and ``runner`` = max over the other classes
    of Y_c + [c < leader] (when class c takes the lead, every class scanned so far has a lower
    index, so runner becomes the old best + 1); for the confidence rule, this pass's argmax of
    ``y`` (lowest index on ties). After the last class: the vote of the pass is added
    (``votes[argmax] += 1``, the largest count kept in ``lead_votes``) and the bound
    (T_max - t) * span registered; one cycle later ``stop`` and ``done`` are set:

    * exact: ``t >= t_min`` and (n = 1 or best - runner >= (T_max - t) * span);
    * confidence: ``t >= t_min`` and lead_votes * 2^CONFIDENCE_BITS >= threshold * t;
    * off: never (the controller does not wait for ``done`` then).

    ``done`` and ``stop`` hold until the next ``start``. ``clear`` (a new image) zeros the
    votes. ``t`` (the passes run, this one included), ``T_max``, ``t_min``, ``threshold``,
    ``span`` and ``rule`` must hold from ``start`` to ``done``.

    Parameters
    ----------
    params : RtlParams
        classes_max, out_bits, total_bits, t_bits.

    Ports
    -----
    clear, start : In(1)
    rule : In(2); t_min, T_max, t : In(t_bits); threshold : In(CONFIDENCE_BITS + 1);
    span : In(out_bits); n_cls : In(range(classes_max + 1))
    y_new : In(signed(out_bits)); Y_new : In(signed(total_bits)); y_count :
    In(range(classes_max + 1)); src_busy : In(1)
        The averaging block's outputs.
    done, stop : Out(1)

    Latency: with the averaging block's ``pass_valid`` in cycle a and no gap in its
    multiply-adds, class c is scanned in cycle a + MAC_LATENCY + 1 + c and ``done`` is high
    from cycle a + MAC_LATENCY + n + ADAPT_LATENCY on.
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        C = p.classes_max
        super().__init__({
            "clear": In(1), "start": In(1),
            "rule": In(2), "t_min": In(p.t_bits), "T_max": In(p.t_bits), "t": In(p.t_bits),
            "threshold": In(CONFIDENCE_BITS + 1), "span": In(p.out_bits),
            "n_cls": In(range(C + 1)),
            "y_new": In(signed(p.out_bits)), "Y_new": In(signed(p.total_bits)),
            "y_count": In(range(C + 1)), "src_busy": In(1),
            "done": Out(1), "stop": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C, tb = p.classes_max, p.total_bits

        scan, fin, fin2 = Signal(), Signal(), Signal()
        c = Signal(range(C + 1))
        best = Signal(signed(tb))
        runner = Signal(signed(tb + 1))
        has_runner = Signal()
        ybest = Signal(signed(p.out_bits))
        yarg = Signal(range(C))
        votes = Array(Signal(p.t_bits, name=f"votes{k}") for k in range(C))
        lead_votes = Signal(p.t_bits)
        margin = Signal(signed(tb + 2))
        bound = Signal(p.t_bits + p.out_bits)

        # Y_c and y_c of the class scanned, registered from the averaging block's last stage
        # as it writes Y[c] (no C-to-1 read of Y and y in front of the comparisons): the scan
        # takes class c in the cycle after that write, one class per cycle as they come
        Yc = Signal(signed(tb))
        yc = Signal(signed(p.out_bits))
        m.d.sync += [Yc.eq(self.Y_new), yc.eq(self.y_new)]
        ready = Signal()
        m.d.comb += ready.eq(scan & ((self.y_count >= c + 2) | ~self.src_busy))
        last_c = c + 1 >= self.n_cls

        m.d.sync += [fin.eq(0), fin2.eq(0)]
        with m.If(ready):
            m.d.sync += c.eq(c + 1)
            with m.If(c == 0):
                m.d.sync += [best.eq(Yc), has_runner.eq(0), ybest.eq(yc), yarg.eq(0)]
            with m.Else():
                with m.If(Yc > best):
                    m.d.sync += [runner.eq(best + 1), best.eq(Yc)]
                with m.Elif(~has_runner | (Yc > runner)):
                    m.d.sync += runner.eq(Yc)
                m.d.sync += has_runner.eq(1)
                with m.If(yc > ybest):
                    m.d.sync += [ybest.eq(yc), yarg.eq(c)]
            with m.If(last_c):
                m.d.sync += [scan.eq(0), fin.eq(1)]

        # the rules' operands from t, registered in every cycle: t, T_max and threshold hold
        # from start on, and fin comes at least one cycle, fin2 two cycles after start
        rem_t = Signal((self.T_max - self.t).shape())
        thr_t = Signal(len(self.threshold) + len(self.t))
        m.d.sync += [rem_t.eq(self.T_max - self.t), thr_t.eq(self.threshold * self.t)]
        # the pass's vote, the exact rule's margin and bound
        new_votes = votes[yarg] + 1
        with m.If(fin):
            m.d.sync += [votes[yarg].eq(new_votes), margin.eq(best - runner),
                         bound.eq(rem_t * self.span), fin2.eq(1)]
            with m.If(new_votes > lead_votes):
                m.d.sync += lead_votes.eq(new_votes)
        exact = ~has_runner | (margin >= bound)
        confident = (lead_votes << CONFIDENCE_BITS) >= thr_t
        with m.If(fin2):
            m.d.sync += [self.done.eq(1),
                         self.stop.eq((self.t >= self.t_min) & Mux(
                             self.rule == AdaptRule.EXACT, exact,
                             (self.rule == AdaptRule.CONFIDENCE) & confident))]

        with m.If(self.start):
            m.d.sync += [c.eq(0), self.done.eq(0), self.stop.eq(0), fin2.eq(0),
                         scan.eq(self.n_cls > 0), fin.eq(self.n_cls == 0)]
        with m.If(self.clear):
            m.d.sync += [lead_votes.eq(0), *(v.eq(0) for v in votes)]
        return m


def adaptive_stage(m: Module, ad: AdaptiveStop, regs: dict, avg, *, t, n_cls, clear, finish
                   ) -> Signal:
    """Wire ``ad`` into the network core: the adaptive registers ``regs`` (rtl/program_port.py),
    the averaging block ``avg`` (its ``pass_valid`` starts a decision), the pass index ``t``
    (0-based: t + 1 passes have run), the classes ``n_cls`` and the image's ``clear``. Returns
    the PASSES_RUN register: t + 1, latched in the cycle of ``finish``."""
    passes_run = Signal(ad.params.t_bits, name="passes_run")
    with m.If(finish):
        m.d.sync += passes_run.eq(t + 1)
    m.d.comb += [ad.clear.eq(clear), ad.start.eq(avg.pass_valid), ad.t.eq(t + 1),
                 ad.rule.eq(regs["adapt_rule"]), ad.t_min.eq(regs["t_min"]),
                 ad.T_max.eq(regs["passes"]), ad.threshold.eq(regs["adapt_threshold"]),
                 ad.span.eq(regs["adapt_span"]), ad.n_cls.eq(n_cls), ad.y_new.eq(avg.y_new),
                 ad.Y_new.eq(avg.Y_new), ad.y_count.eq(avg.y_count), ad.src_busy.eq(avg.busy)]
    return passes_run
