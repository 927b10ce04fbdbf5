"""Output scaling of the last layer and the T averaging of an image (docs/HARDWARE.md).

Per pass: ``y_c = M_c * S_c + B_c`` (out_bits) and the running sum ``Y_c += y_c``
(total_bits). Per image, after the T passes: ``averaged_c = floor((Y_c + floor(T/2)) / T)``,
the mean rounded half up with Python's floor semantics for negative values, and
``class = argmax_c Y_c`` over the classes in use, lowest index on ties; the golden
:class:`spinbayes.golden.hardware.HwOutput` (``total``, ``averaged``, ``prediction``).
The n-way average needs no block here: its 1/n is folded into M_c (and into the thresholds).

One multiplier serves every class (time-multiplexed, one class per cycle, pipelined), and the
divider produces :data:`DIV_BITS` quotient bits per cycle.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

# The pipeline constants live in rtl/params.py (Amaranth-free, shared with sim/models.py).
from .params import DIV_BITS, MAC_LATENCY, RtlParams, check_params, divide_cycles

__all__ = ["AveragingBlock", "DIV_BITS", "MAC_LATENCY", "Y_GROUP", "divide_cycles"]

#: Entries per first-level group of the registered two-level read multiplexers (Y, M, S, B).
Y_GROUP = 8


def _grouped_read(m: Module, entries, index, shape, name: str):
    """A registered two-level read of ``entries[index]``: Y_GROUP-to-1 multiplexers into one
    register per group, then the group's register selected. The returned value is
    ``entries[index]`` of the previous cycle (a 64-entry multiplexer in one cycle was the
    periphery's critical path on the ECP5)."""
    n_grp = -(-len(entries) // Y_GROUP)
    gb = (Y_GROUP - 1).bit_length()
    regs = [Signal(shape, name=f"{name}_g{g}") for g in range(n_grp)]
    hi = Signal(range(n_grp), name=f"{name}_hi")
    for g, reg in enumerate(regs):
        ents = entries[g * Y_GROUP:(g + 1) * Y_GROUP]
        m.d.sync += reg.eq(Array(ents)[index[:gb]] if len(ents) > 1 else ents[0])
    m.d.sync += hi.eq(index >> gb)
    out = Signal(shape, name=name)
    m.d.comb += out.eq(Array(regs)[hi] if n_grp > 1 else regs[0])
    return out


def _or_tree(terms):
    """OR of a list of values, as a balanced tree."""
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _valid_words(m: Module, port, name: str):
    """The registers behind an array output ``port``: one word and one valid bit per entry,
    ``port[k] = word[k]`` if valid bit k is set, else 0. Returns (words, valid bits)."""
    words = [Signal(port[k].shape(), name=f"{name}_w{k}") for k in range(len(port))]
    ok = Signal(len(port), name=f"{name}_ok")
    m.d.comb += [port[k].eq(Mux(ok[k], words[k], 0)) for k in range(len(port))]
    return words, ok


class AveragingBlock(wiring.Component):
    """Output scaling, T-sum, a sequential floor divider and the argmax of one image.

    **Per pass: one pipelined multiply-add over the classes.** ``pass_valid`` latches the S
    vector (so the adder-accumulator may move on) and the number of classes in use n =
    min(n_out, classes_max); then class c = 0 .. n - 1 goes, one per cycle, through three
    registered stages: operands (M_c, S_c, B_c selected), product ``M_c * S_c`` (full width),
    ``y_c = product + B_c`` kept at out_bits and written to ``y[c]`` (with the read of
    ``Y[c]``), and one stage more ``Y[c] += y_c``. Class 0's operands come straight from the
    ports; those of the others, and Y_c, through two-level multiplexers registered after their
    first level (groups of Y_GROUP), indexed one cycle ahead. With ``pass_valid`` in cycle a,
    ``y[c]`` is written at the end of cycle a + 2 + c (visible from a + MAC_LATENCY + c, when
    ``y_count`` becomes c + 1) and ``Y[c]`` one cycle later. Classes c >= n are not computed:
    their ``y`` and ``Y`` keep their values. ``clear`` zeros ``Y`` and ``y_count`` and drops the
    multiply-adds in flight; with ``pass_valid`` in the same cycle ``Y`` starts fresh with this
    pass (``Y = y``). Within the contract (|M_c| <= 2^(scale_bits-1) - 1, |S_c| <= sum_max, B_c
    any offset_bits value, at most T passes) neither y nor Y can overflow (docs/HARDWARE.md,
    "Why nothing overflows"); M_c = -2^(scale_bits-1) is outside it. ``pass_valid`` must not
    arrive while ``busy``.

    **Per image: divider.** ``finish`` latches ``T`` and ``n_out`` and starts one restoring
    divider, time-multiplexed over the classes c = 0 .. n_out - 1, DIV_BITS quotient bits per
    cycle (radix 2^DIV_BITS: the remainder with the next DIV_BITS dividend bits shifted in is
    compared with all multiples k*T, k < 2^DIV_BITS, at once; the multiples are registered once
    per image). For class c it forms ``D = Y_c + floor(T/2)`` and ``x = D`` (D >= 0) or ``x = ~D
    = -D - 1`` (D < 0), divides x by T and gives ``averaged_c = q`` or ``~q``: floor(D / T) =
    ~floor(~D / T) for D < 0, so no negation and no remainder test (e.g. Y = -5, T = 10: D = 0,
    q = 0; Y = -15: D = -10, ~D = 9, ~0 = -1; Y = -16: -2). Only the low ``quotient_bits``
    quotient bits are produced (out_bits - 1 rounded up to DIV_BITS, at least 2 DIV_BITS): when
    Y_c is the sum of at most T passes, |Y_c| <= T * out_max and x < T * 2^(out_bits - 1), so
    every higher quotient bit is 0 and ``x >> quotient_bits`` (< T) is the initial remainder.
    The argmax runs in the same loop: when class c is loaded, ``Y_c`` replaces the best so far
    if c = 0 or ``Y_c > best`` (strictly, so ties keep the lowest index; the comparison is made
    the cycle after the load); the next class is loaded in the last quotient cycle of the
    previous one, whose average is written to ``averaged`` one cycle later. ``done`` pulses once
    when every ``averaged_c`` of a class in use and ``cls`` are valid; they hold until the next
    ``finish`` (classes c >= n_out read 0). ``finish`` with n_out = 0 gives ``cls = 0`` and an
    immediate ``done``. T must be 1 .. T_max (T = 0 divides by zero: not meaningful). ``clear``
    while ``busy`` aborts the division (no ``done``). ``finish`` while ``busy`` (a multiply-add
    or a division running) is ignored.

    Parameters
    ----------
    params : RtlParams
        classes_max, sum_bits, scale_bits, offset_bits, out_bits, total_bits, t_bits,
        output_bits_index.

    Ports
    -----
    clear : In(1)
        Start a new image: ``Y <= 0`` (abort a running multiply-add or division).
    pass_valid : In(1)
        One pass's ``S`` is present: latch it and start the multiply-adds.
    S : In(ArrayLayout(signed(sum_bits), classes_max))
        The last layer's n-way sums of this pass (read only in the ``pass_valid`` cycle).
    M : In(ArrayLayout(signed(scale_bits), classes_max))
        Output scales M_c (read while the multiply-adds run).
    B : In(ArrayLayout(signed(offset_bits), classes_max))
        Output offsets B_c (read while the multiply-adds run).
    n_out : In(output_bits_index + 1)
        Classes in use (values above classes_max count as classes_max); latched by
        ``pass_valid`` and by ``finish``.
    T : In(t_bits)
        Passes per image, 1 .. T_max; latched by ``finish``.
    finish : In(1)
        All T passes are added: start the division (ignored while ``busy``).
    y : Out(ArrayLayout(signed(out_bits), classes_max))
        ``M_c * S_c + B_c`` of the last pass for c < y_count (held until that class of the
        next pass).
    y_count : Out(range(classes_max + 1))
        Classes of the last pass whose ``y_c`` is in ``y`` (0 from the cycle after
        ``pass_valid`` or ``clear``, then + 1 per cycle up to n).
    Y : Out(ArrayLayout(signed(total_bits), classes_max))
        The running T-sums.
    Y_new, y_new : Out(signed(total_bits)), Out(signed(out_bits))
        The last stage of the multiply-add: the Y_c written to ``Y`` at the end of this cycle
        and its y_c (meaningful in the cycles that write ``Y[c]``, i.e. from cycle a +
        MAC_LATENCY + c on, the cycle before ``Y[c]`` is visible).
    averaged : Out(ArrayLayout(signed(total_bits), classes_max))
        ``floor((Y_c + floor(T/2)) / T)`` for c < n_out, 0 for the others.
    cls : Out(output_bits_index)
        ``argmax_c Y_c`` over c < n_out, lowest index on ties.
    done : Out(1)
        One-cycle pulse: ``averaged`` and ``cls`` are valid (from this cycle on).
    busy : Out(1)
        A multiply-add of a pass or the divider is running.
    mult_ops : Out(32)
        Multiply-adds performed: ``min(n_out, classes_max)`` per ``pass_valid`` (the classes
        in use; wraps at 2^32).
    avg_ops : Out(32)
        Divisions performed: one per class and ``finish`` (wraps at 2^32).

    Latency: ``y[c]``: with ``pass_valid`` in cycle a, from cycle a + MAC_LATENCY + c;
    ``Y[c]`` from a + MAC_LATENCY + 1 + c; ``busy`` in cycles a + 1 .. a + MAC_LATENCY + n - 1
    (n >= 1). Division and argmax: with ``finish`` in cycle f, ``done`` is high in cycle
    ``f + n_out * divide_cycles + 4`` (one cycle for the read port, one load cycle, then
    divide_cycles = quotient_bits / DIV_BITS cycles per class, the next class loaded in the
    last one, and one cycle to store the last average), ``busy`` in cycles
    f + 1 .. f + n_out * divide_cycles + 3; with n_out = 0, ``done`` at f + 1. The next
    ``finish`` may come in the ``done`` cycle.
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "clear": In(1),
            "pass_valid": In(1),
            "S": In(data.ArrayLayout(signed(p.sum_bits), p.classes_max)),
            "M": In(data.ArrayLayout(signed(p.scale_bits), p.classes_max)),
            "B": In(data.ArrayLayout(signed(p.offset_bits), p.classes_max)),
            "n_out": In(p.output_bits_index + 1),
            "T": In(p.t_bits),
            "finish": In(1),
            "y": Out(data.ArrayLayout(signed(p.out_bits), p.classes_max)),
            "y_count": Out(range(p.classes_max + 1)),
            "Y": Out(data.ArrayLayout(signed(p.total_bits), p.classes_max)),
            "Y_new": Out(signed(p.total_bits)),
            "y_new": Out(signed(p.out_bits)),
            "averaged": Out(data.ArrayLayout(signed(p.total_bits), p.classes_max)),
            "cls": Out(p.output_bits_index),
            "done": Out(1),
            "busy": Out(1),
            "mult_ops": Out(32),
            "avg_ops": Out(32),
        })

    @property
    def quotient_bits(self) -> int:
        """Quotient bits the divider produces per class: out_bits - 1 rounded up to a multiple
        of DIV_BITS, at least 2 DIV_BITS (the higher ones are 0 within the contract)."""
        return self.divide_cycles * DIV_BITS

    @property
    def divide_cycles(self) -> int:
        """Cycles per class of the divider: :func:`divide_cycles`."""
        return divide_cycles(self.params)

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C, tb = p.classes_max, p.total_bits

        n_in = Signal(range(C + 1))
        m.d.comb += n_in.eq(Mux(self.n_out > C, C, self.n_out))

        # Y read port, shared by the multiply-add and the divider (two cycles after yrd is
        # written, Yr is Y[yrd])
        yrd = Signal(range(C + 1))
        Yr = _grouped_read(m, [self.Y[i] for i in range(C)], yrd, signed(tb), "Yr")
        div_idle = Signal()

        # --- per pass: one multiply-add, time-multiplexed over the classes ----------------
        S_lat = Signal.like(self.S)                # the pass's S vector
        n_pass = Signal(range(C + 1))              # classes of this pass
        nxt = Signal(range(C + 1))                 # next class to issue (1 .. n - 1)
        run = Signal()                             # classes 1 .. n - 1 still to issue
        # stage 1: operands
        v1, c1 = Signal(), Signal(range(C))
        m1, s1, b1 = (Signal(signed(p.scale_bits)), Signal(signed(p.sum_bits)),
                      Signal(signed(p.offset_bits)))
        # stage 2: product
        v2, c2 = Signal(), Signal(range(C))
        prod = Signal(signed(p.scale_bits + p.sum_bits))
        b2 = Signal(signed(p.offset_bits))
        # stage 3: y_c (and Y_c from the read port); stage 4: Y_c += y_c
        v3, c3 = Signal(), Signal(range(C))
        y3 = Signal(signed(p.out_bits))
        Y3 = Signal(signed(tb))
        y_next = Signal(signed(p.out_bits))
        m.d.comb += y_next.eq(prod + b2)           # kept at out_bits (never overflows)
        # operands of classes 1 .. n - 1 through registered two-level reads indexed one
        # cycle ahead by la (= 1 while idle, so class 1's are read in the pass_valid cycle,
        # from the S port; later ones from S_lat)
        la = Signal(range(C + 1), init=1)
        # S_1 is only read with la = 1, i.e. in the pass_valid cycle: from the port; the
        # others from S_lat, which loads S in every cycle without a run (no fan-out of
        # pass_valid over the S vector)
        S_src = [self.S[i] if i == 1 else S_lat[i] for i in range(C)]
        Mr = _grouped_read(m, [self.M[i] for i in range(C)], la, signed(p.scale_bits), "Mr")
        Sr = _grouped_read(m, S_src, la, signed(p.sum_bits), "Sr")
        Br = _grouped_read(m, [self.B[i] for i in range(C)], la, signed(p.offset_bits), "Br")

        with m.If(run):                            # yrd = c1: Yr = Y[c2] in stage 2
            m.d.sync += [v1.eq(1), c1.eq(nxt), m1.eq(Mr), s1.eq(Sr), b1.eq(Br),
                         nxt.eq(nxt + 1), run.eq(nxt + 1 < n_pass), yrd.eq(nxt),
                         la.eq(Mux(nxt + 1 < n_pass, la + 1, 1))]
        with m.Else():
            m.d.sync += v1.eq(0)
        m.d.sync += [v2.eq(v1), c2.eq(c1), prod.eq(m1 * s1), b2.eq(b1),
                     v3.eq(v2), c3.eq(c2), y3.eq(y_next), Y3.eq(Yr)]
        with m.If(v2):
            m.d.sync += [self.y[c2].eq(y_next), self.y_count.eq(self.y_count + 1)]
        m.d.comb += [self.Y_new.eq(Y3 + y3), self.y_new.eq(y3)]
        with m.If(v3):
            m.d.sync += self.Y[c3].eq(self.Y_new)
        with m.If(self.clear):                     # drop the multiply-adds in flight
            m.d.sync += [run.eq(0), v1.eq(0), v2.eq(0), v3.eq(0), self.y_count.eq(0),
                         la.eq(1)]
            for k in range(C):
                m.d.sync += self.Y[k].eq(0)
        with m.If(~run):                           # holds S of the pass while it runs
            m.d.sync += S_lat.eq(self.S)
        with m.If(self.pass_valid):                # class 0 straight from the S port
            m.d.sync += [n_pass.eq(n_in), nxt.eq(1),
                         run.eq(n_in > 1), v1.eq(n_in > 0), c1.eq(0), m1.eq(self.M[0]),
                         s1.eq(self.S[0]), b1.eq(self.B[0]), self.y_count.eq(0), yrd.eq(0),
                         la.eq(Mux(n_in > 1, 2, 1)),
                         self.mult_ops.eq(self.mult_ops + n_in)]
        mac_busy = Signal()
        m.d.comb += mac_busy.eq(run | v1 | v2 | v3)

        # --- per image: radix-2^DIV_BITS divider and argmax, class by class ---------------
        qb, steps, rb = self.quotient_bits, self.divide_cycles, p.t_bits + 1
        T = Signal(p.t_bits)                       # latched divisor
        n_cls = Signal(range(C + 1))               # latched classes in use
        c = Signal(range(C))                       # class being divided
        step = Signal(range(steps + 1))            # cycles still to go for class c
        neg = Signal()                             # D < 0
        quo = Signal(qb)                           # x shifting out, quotient shifting in
        rem = Signal(rb)                           # partial remainder, < T
        res = Signal(tb)                           # a finished class's average ...
        res_c = Signal(range(C))                   # ... and its class,
        res_v = Signal()                           # written to averaged the cycle after
        Yl = Signal(signed(tb))                    # a loaded class's Y ...
        cl = Signal(range(C))                      # ... and its class,
        cl_v = Signal()                            # compared with best the cycle after
        best = Signal(signed(tb))
        cls = Signal(p.output_bits_index)

        # load of class yrd: x = D or ~D, the initial remainder x >> qb (< T in the contract)
        D = Signal(signed(tb + 1))
        x = Signal(tb + 1)
        m.d.comb += [D.eq(Yr + (T >> 1)), x.eq(D ^ Mux(D < 0, -1, 0))]
        x_hi = x[qb:] if qb < tb + 1 else Const(0, 1)

        # One radix-2^DIV_BITS digit per cycle, all candidates in parallel: with the next
        # DIV_BITS dividend bits shifted into the remainder (val < 2^DIV_BITS * T), digit
        # = the largest k with k*T <= val and the new remainder val - k*T. The multiples k*T
        # are registered once per image (READ state); the 2^DIV_BITS - 1 subtractions run
        # side by side (a chain of restoring steps was the critical path on the ECP5).
        R = 2 ** DIV_BITS
        vb = p.t_bits + DIV_BITS                   # val and the multiples
        mult = [Signal(vb, name=f"tmul{k}") for k in range(R)]
        val = Signal(vb)
        m.d.comb += val.eq(Cat(quo[qb - DIV_BITS:], rem))
        ge = [Const(1, 1)]
        cand = [val]
        for k in range(1, R):
            d = Signal(signed(vb + 1), name=f"cand{k}")
            m.d.comb += d.eq(val - mult[k])
            ge.append(~d[-1])
            cand.append(d)
        ge.append(Const(0, 1))
        hot = [Signal(name=f"digit_is{k}") for k in range(R)]   # ge is a thermometer
        m.d.comb += [hot[k].eq(ge[k] & ~ge[k + 1]) for k in range(R)]
        rem_next = Signal(rb)
        m.d.comb += rem_next.eq(
            _or_tree([Mux(hot[k], cand[k][:rb], 0) for k in range(R)]))
        qbits = [_or_tree([hot[k] for k in range(R) if k >> b & 1]) for b in range(DIV_BITS)]
        quo_next = Signal(qb)
        m.d.comb += quo_next.eq(Cat(*qbits, quo[:qb - DIV_BITS]))
        q_out = Signal(tb)                         # floor(D / T), two's complement
        m.d.comb += q_out.eq(quo_next ^ Mux(neg, -1, 0))

        def load():
            m.d.sync += [neg.eq(D < 0), quo.eq(x[:qb]), rem.eq(x_hi), step.eq(steps),
                         c.eq(yrd), yrd.eq(yrd + 1), Yl.eq(Yr), cl.eq(yrd), cl_v.eq(1)]

        # argmax, one cycle after a load: strictly greater, so ties keep the lowest index
        m.d.sync += [cl_v.eq(0), res_v.eq(0)]
        with m.If(cl_v & ((cl == 0) | (Yl > best))):
            m.d.sync += [best.eq(Yl), cls.eq(cl)]
        avg_word, avg_ok = _valid_words(m, self.averaged, "averaged")
        for k in range(C):
            with m.If(res_v & (res_c == k)):
                m.d.sync += [avg_word[k].eq(res), avg_ok[k].eq(1)]

        m.d.comb += [self.cls.eq(cls), self.busy.eq(mac_busy | ~div_idle)]
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += div_idle.eq(1)
                with m.If(self.finish & ~self.clear & ~mac_busy):
                    m.d.sync += [T.eq(self.T), n_cls.eq(n_in), cls.eq(0), yrd.eq(0),
                                 avg_ok.eq(0)]
                    with m.If(n_in == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.next = "READ"
            with m.State("READ"):                  # the read port's first level: Y[0]
                m.d.sync += [mult[k].eq(T * k) for k in range(1, R)]
                m.next = "LOAD"
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("LOAD"):
                load()
                m.next = "DIVIDE"
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("DIVIDE"):
                m.d.sync += [rem.eq(rem_next), quo.eq(quo_next), step.eq(step - 1)]
                with m.If(step == 1):
                    m.d.sync += [res.eq(q_out), res_c.eq(c), res_v.eq(1),
                                 self.avg_ops.eq(self.avg_ops + 1)]
                    with m.If(yrd == n_cls):
                        m.next = "STORE"
                    with m.Else():
                        load()
                with m.If(self.clear):
                    m.next = "IDLE"
            with m.State("STORE"):                 # the last average is written
                m.d.sync += self.done.eq(~self.clear)
                m.next = "IDLE"
        return m
