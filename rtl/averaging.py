"""Output scaling of the last layer and the T averaging of an image (docs/HARDWARE.md).

Per pass: ``y_c = M_c * S_c + B_c`` (out_bits) and the running sum ``Y_c += y_c``
(total_bits). Per image, after the T passes: ``averaged_c = floor((Y_c + floor(T/2)) / T)``,
the mean rounded half up with Python's floor semantics for negative values, and
``class = argmax_c Y_c`` over the classes in use, lowest index on ties; the golden
:class:`spinbayes.golden.hardware.HwOutput` (``total``, ``averaged``, ``prediction``).
The n-way average needs no block here: its 1/n is folded into M_c (and into the thresholds).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import RtlParams, check_params

__all__ = ["AveragingBlock"]


class AveragingBlock(wiring.Component):
    """Output scaling, T-sum, a sequential floor divider and the argmax of one image.

    **Per pass.** In a cycle with ``pass_valid`` the outputs_max multiply-adds
    ``M_c * S_c + B_c`` are formed (combinationally, at full product width, then kept at
    out_bits) and registered into ``y``; the same cycle adds them into the T-sums ``Y``.
    ``clear`` zeros ``Y``; with ``pass_valid`` in the same cycle ``Y`` starts fresh with this
    pass (``Y = y``). Within the contract (|M_c| <= 2^(scale_bits-1) - 1,
    |S_c| <= sum_max, B_c any offset_bits value, at most T_max passes) neither y nor Y can
    overflow (docs/HARDWARE.md, "Why nothing overflows"); M_c = -2^(scale_bits-1) is outside it.

    **Per image.** ``finish`` latches ``T`` and ``n_out`` and starts one restoring divider,
    time-multiplexed over the classes c = 0 .. n_out - 1. For class c it forms
    ``D = Y_c + floor(T/2)`` (total_bits + 1 bits), divides ``|D|`` (total_bits bits, which
    holds |D| for every value of the Y register) by T one quotient bit per cycle, and fixes up
    the sign with floor semantics: ``D >= 0: q = |D| // T``; ``D < 0: q = -(|D| // T) - [rem != 0]``
    (e.g. Y = -5, T = 10: D = 0, q = 0; Y = -15, T = 10: D = -10, q = -1; Y = -16: q = -2).
    The argmax runs in the same loop: in the load cycle of class c, ``Y_c`` replaces the best
    so far if c = 0 or ``Y_c > best`` (strictly, so ties keep the lowest index). ``done``
    pulses once when every ``averaged_c`` of a class in use and ``cls`` are valid; they hold
    until the next ``finish`` (classes c >= n_out read 0). ``finish`` with n_out = 0 gives
    ``cls = 0`` and an immediate ``done``. T must be 1 .. T_max (T = 0 divides by zero: the
    result is the restoring divider's all-ones quotient, not meaningful). ``pass_valid`` must
    not arrive while ``busy`` (the divider reads Y); ``clear`` while ``busy`` aborts the
    division (no ``done``). A second ``finish`` while ``busy`` is ignored.

    Parameters
    ----------
    params : RtlParams
        outputs_max, sum_bits, scale_bits, offset_bits, out_bits, total_bits, t_bits,
        output_bits_index.

    Ports
    -----
    clear : In(1)
        Start a new image: ``Y <= 0`` (abort a running division).
    pass_valid : In(1)
        One pass's ``S`` is present: register ``y`` and add it into ``Y``.
    S : In(ArrayLayout(signed(sum_bits), outputs_max))
        The last layer's n-way sums of this pass.
    M : In(ArrayLayout(signed(scale_bits), outputs_max))
        Output scales M_c.
    B : In(ArrayLayout(signed(offset_bits), outputs_max))
        Output offsets B_c.
    n_out : In(output_bits_index + 1)
        Classes in use (values above outputs_max count as outputs_max); latched by ``finish``.
    T : In(t_bits)
        Passes per image, 1 .. T_max; latched by ``finish``.
    finish : In(1)
        All T passes are added: start the division (ignored while ``busy``).
    y : Out(ArrayLayout(signed(out_bits), outputs_max))
        ``M_c * S_c + B_c`` of the last pass (held until the next ``pass_valid``).
    y_valid : Out(1)
        High the cycle after ``pass_valid`` (``y`` is new in that cycle).
    Y : Out(ArrayLayout(signed(total_bits), outputs_max))
        The running T-sums.
    averaged : Out(ArrayLayout(signed(total_bits), outputs_max))
        ``floor((Y_c + floor(T/2)) / T)`` for c < n_out, 0 for the others.
    cls : Out(output_bits_index)
        ``argmax_c Y_c`` over c < n_out, lowest index on ties.
    done : Out(1)
        One-cycle pulse: ``averaged`` and ``cls`` are valid (from this cycle on).
    busy : Out(1)
        The divider is running.
    mult_ops : Out(32)
        Multiply-adds performed: ``min(n_out, outputs_max)`` per ``pass_valid`` (the classes
        in use; wraps at 2^32).
    avg_ops : Out(32)
        Divisions performed: one per class and ``finish`` (wraps at 2^32).

    Latency: ``y``/``Y``: 1 cycle (a pass in cycle t is in ``y`` and ``Y`` from t + 1).
    Division and argmax: with ``finish`` in cycle f, ``done`` is high in cycle
    ``f + n_out * (total_bits + 1) + 1`` (per class one load cycle plus total_bits quotient
    bits), ``busy`` in cycles f + 1 .. f + n_out * (total_bits + 1); with n_out = 0, ``done``
    at f + 1. The next ``finish`` may come in the ``done`` cycle.
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "clear": In(1),
            "pass_valid": In(1),
            "S": In(data.ArrayLayout(signed(p.sum_bits), p.outputs_max)),
            "M": In(data.ArrayLayout(signed(p.scale_bits), p.outputs_max)),
            "B": In(data.ArrayLayout(signed(p.offset_bits), p.outputs_max)),
            "n_out": In(p.output_bits_index + 1),
            "T": In(p.t_bits),
            "finish": In(1),
            "y": Out(data.ArrayLayout(signed(p.out_bits), p.outputs_max)),
            "y_valid": Out(1),
            "Y": Out(data.ArrayLayout(signed(p.total_bits), p.outputs_max)),
            "averaged": Out(data.ArrayLayout(signed(p.total_bits), p.outputs_max)),
            "cls": Out(p.output_bits_index),
            "done": Out(1),
            "busy": Out(1),
            "mult_ops": Out(32),
            "avg_ops": Out(32),
        })

    @property
    def divide_cycles(self) -> int:
        """Cycles per class of the divider loop: one load cycle plus total_bits quotient bits."""
        return self.params.total_bits + 1

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C, tb = p.outputs_max, p.total_bits

        # --- per pass: y = M S + B, Y += y ------------------------------------------------
        n_in = Signal(range(C + 1))
        m.d.comb += n_in.eq(Mux(self.n_out > C, C, self.n_out))
        m.d.sync += self.y_valid.eq(self.pass_valid)
        # The multipliers see S only in a pass_valid cycle (0 otherwise): S changes in every
        # read cycle, and an event-driven simulator (Icarus) would redo the outputs_max
        # wide multiplications each time; the values taken are the same.
        S = Signal.like(self.S)
        m.d.comb += S.eq(Mux(self.pass_valid, self.S, 0))
        for c in range(C):
            y = Signal(signed(p.out_bits), name=f"y_next{c}")
            m.d.comb += y.eq(self.M[c] * S[c] + self.B[c])
            base = Mux(self.clear, 0, self.Y[c])
            with m.If(self.pass_valid):
                m.d.sync += [self.y[c].eq(y), self.Y[c].eq(base + y)]
            with m.Elif(self.clear):
                m.d.sync += self.Y[c].eq(0)
        with m.If(self.pass_valid):
            m.d.sync += self.mult_ops.eq(self.mult_ops + n_in)

        # --- per image: restoring divider and argmax, one class at a time ----------------
        T = Signal(p.t_bits)                       # latched divisor
        n_cls = Signal(range(C + 1))               # latched classes in use
        c = Signal(range(C + 1))                   # class being divided
        step = Signal(range(tb + 1))               # quotient bits still to produce
        neg = Signal()                             # D < 0
        quo = Signal(tb)                           # |D| shifting out, quotient shifting in
        rem = Signal(p.t_bits + 1)                 # partial remainder, < 2 T
        best = Signal(signed(tb))
        cls = Signal(p.output_bits_index)

        Yc = Signal(signed(tb))
        D = Signal(signed(tb + 1))
        m.d.comb += [Yc.eq(self.Y[c]), D.eq(Yc + (T >> 1))]

        # one restoring step: shift the dividend's MSB into the remainder, subtract if >= T
        trial = Signal(p.t_bits + 1)
        ge = Signal()
        rem_next = Signal(p.t_bits + 1)
        quo_next = Signal(tb)
        m.d.comb += [
            trial.eq((rem << 1) | quo[tb - 1]),
            ge.eq(trial >= T),
            rem_next.eq(Mux(ge, trial - T, trial)),
            quo_next.eq((quo << 1) | ge),
        ]
        # floor fix-up of the last step's result
        q_signed = Signal(signed(tb + 1))
        m.d.comb += q_signed.eq(Mux(neg, -quo_next - (rem_next != 0), quo_next))

        m.d.comb += self.cls.eq(cls)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.finish & ~self.clear):
                    m.d.sync += [T.eq(self.T), n_cls.eq(n_in), c.eq(0), cls.eq(0)]
                    for k in range(C):
                        m.d.sync += self.averaged[k].eq(0)
                    with m.If(n_in == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [neg.eq(D < 0), quo.eq(Mux(D < 0, -D, D)), rem.eq(0),
                             step.eq(tb)]
                with m.If((c == 0) | (Yc > best)):
                    m.d.sync += [best.eq(Yc), cls.eq(c)]
                m.next = "DIVIDE"
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("DIVIDE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [rem.eq(rem_next), quo.eq(quo_next), step.eq(step - 1)]
                with m.If(step == 1):
                    m.d.sync += [self.averaged[c].eq(q_signed),
                                 self.avg_ops.eq(self.avg_ops + 1), c.eq(c + 1)]
                    with m.If(c + 1 == n_cls):
                        m.d.sync += self.done.eq(~self.clear)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "LOAD"
                with m.If(self.clear):
                    m.next = "IDLE"
        return m
