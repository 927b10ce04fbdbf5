"""The network core's descriptor table, configuration registers and programming port.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore`'s elaboration (not a block of its own:
the signals keep their names and places in the core's Verilog). Writes arrive on the core's
``prog_*`` port (:data:`~spinbayes.rtl.regs.PROG_FIELDS`), addressed by
:class:`~spinbayes.rtl.regs.Reg`, each field range-checked against
:func:`~spinbayes.rtl.regs.register_ranges`; cell writes go straight to the crossbars, every
other write through one registered write stage (docs/HARDWARE.md, "Programming").
"""

from __future__ import annotations

from amaranth import Array, Signal, signed
from amaranth.lib import data

from .reg_ranges import register_ranges
from .regs import CONFIDENCE_BITS, GEOMETRY_REGS, Reg

__all__ = ["ADAPT_REGS", "program_port"]

#: The adaptive-T registers, in the order of program_port's ``adapt_rule``, ``t_min``,
#: ``adapt_threshold``, ``adapt_span``.
ADAPT_REGS = (Reg.ADAPT_RULE, Reg.ADAPT_T_MIN, Reg.ADAPT_THRESHOLD, Reg.ADAPT_SPAN)


def program_port(core, m, xbars, arbs) -> tuple[dict, Signal]:
    """Add the descriptor table, the configuration registers and the programming port of
    ``core`` (a SpinBayesCore being elaborated into module ``m``, with its crossbar memories
    ``xbars`` and per-layer arbiters ``arbs``). Returns (registers by name, in_ok): in_ok is
    high when no write is accepted now, in the write stage, or landed in the last cycle (an
    image may start). The per-layer registers are Arrays (indexable by a Signal); the same
    registers are left in ``core.descriptor`` as lists for white-box tests."""
    p = core.params
    L = p.layers_max
    # --- descriptor table and configuration registers ------------------------------
    rows = Array(Signal(range(p.rows_max + 1), name=f"rows{i}") for i in range(L))
    outs = Array(Signal(range(p.outputs_max + 1), name=f"outs{i}") for i in range(L))
    gbase = Array(Signal(p.group_bits, name=f"gbase{i}") for i in range(L))
    in_bits = Array(Signal(range(p.A_max + 1), name=f"inbits{i}", init=p.A)
                    for i in range(L))
    theta = Array(Signal(data.ArrayLayout(data.ArrayLayout(signed(p.threshold_bits),
                                                           p.levels), p.outputs_max),
                         name=f"theta{i}") for i in range(L))
    sign = Array(Signal(p.outputs_max, name=f"sign{i}") for i in range(L))
    scale = Signal(data.ArrayLayout(signed(p.scale_bits), p.classes_max))
    offset = Signal(data.ArrayLayout(signed(p.offset_bits), p.classes_max))
    n_layers = Signal(range(L + 1), init=L)
    passes = Signal(p.t_bits, init=1)
    n_way = Signal(range(p.n_max + 1), init=1)
    rng_thr = Signal(p.rng_bits + 1, init=2 ** (p.rng_bits - 1))
    # adaptive T (rtl/adaptive.py): rule, T_min, vote threshold, output span
    adapt = {"adapt_rule": Signal(2), "t_min": Signal(p.t_bits, init=1),
             "adapt_threshold": Signal(CONFIDENCE_BITS + 1), "adapt_span": Signal(p.out_bits)}
    # first-layer reuse (rtl/reuse.py); a design without the cache keeps it 0
    reuse = Signal(name="reuse")
    # the layer geometry (kind, C_in, H, W, k, stride, padding, pool), only in a design with
    # the convolution path; reset values describe a one-input dense layer
    geometry = {}
    if p.conv:
        bounds = (1, p.rows_max, p.size_max, p.size_max, p.kernel_max, p.stride_max,
                  p.padding_max, p.pool_max)
        inits = (0, 1, 1, 1, 1, 1, 0, 0)
        for reg, hi, init in zip(GEOMETRY_REGS, bounds, inits):
            name = reg.name.lower().removeprefix("layer_")
            geometry[reg] = Array(Signal(range(hi + 1), init=init, name=f"{name}{i}")
                                  for i in range(L))
    # The descriptor and configuration registers of the last elaboration (white-box tests read
    # them, e.g. their reset values): name -> Signal or list of Signals.
    core.descriptor = {"rows": list(rows), "outs": list(outs), "gbase": list(gbase),
                       "in_bits": list(in_bits), "theta": list(theta),
                       "sign": list(sign), "scale": scale, "offset": offset,
                       "n_layers": n_layers, "passes": passes, "n_way": n_way,
                       "rng_thr": rng_thr, "reuse": reuse, **adapt,
                       **{r.name.lower().removeprefix("layer_"): list(v)
                          for r, v in geometry.items()}}

    # --- programming port --------------------------------------------------------
    sel, a, b, c, d = (core.prog_sel, core.prog_a, core.prog_b, core.prog_c,
                       core.prog_data)
    # Writes are accepted only while the core is idle: prog_ready is low while busy, so a
    # write issued during an inference waits (the master holds it) until the image is
    # done and can never change a pass in flight.
    wok = Signal()
    m.d.comb += [wok.eq(core.prog_en & ~core.busy), core.prog_ready.eq(~core.busy)]
    # the full index fields are range-checked (rtl/regs.py's table) before being cut to
    # the crossbar ports' widths
    cell_ok = Signal()
    cell = register_ranges(p)[Reg.XBAR_CELL]
    m.d.comb += cell_ok.eq((a < cell["a"].stop) & (b < cell["b"].stop))
    for k, xb in enumerate(xbars):
        m.d.comb += [xb.w_row.eq(a), xb.w_col.eq(b), xb.w_level.eq(d),
                     xb.w_en.eq(wok & (sel == Reg.XBAR_CELL) & (c == k) & cell_ok)]
    # Registered write stage: a descriptor, configuration or seed write accepted in cycle k
    # lands at the end of cycle k + 1 (decoded straight from the port, one write reached
    # the enables of every descriptor register in one cycle: the periphery's critical
    # path on the ECP5). Cell writes go to the crossbars directly (their own two-cycle
    # read-modify-write). No image starts while a write is accepted or in the stage:
    # in_ready is low in IDLE in those cycles (see in_ok).
    # The wide targets (thresholds and signs of each layer, scales, offsets) are decoded
    # from sel and c before the stage, and each keeps its own registered copy of the index
    # fields (with its own reset value, so yosys does not merge the copies): the decode
    # after one shared stage register was the next critical path.
    w_v = Signal()
    w_sel, w_a, w_b, w_c = Signal.like(sel), Signal.like(a), Signal.like(b), Signal.like(c)
    w_d = Signal.like(d)
    m.d.sync += [w_v.eq(wok & (sel != Reg.XBAR_CELL)), w_sel.eq(sel), w_a.eq(a),
                 w_b.eq(b), w_c.eq(c), w_d.eq(d)]
    lp = c[:core._layer_bits]
    wide = {}                                  # name -> (enable, a copy, b copy)
    for n, (reg, layer_i) in enumerate(
            [(Reg.THRESHOLD, i) for i in range(L)] + [(Reg.SIGN, i) for i in range(L)]
            + [(Reg.SCALE, None), (Reg.OFFSET, None)]):
        name = f"{reg.name.lower()}{'' if layer_i is None else layer_i}"
        en = Signal(name=f"w_en_{name}")
        ca = Signal.like(a, init=n + 1, name=f"w_a_{name}")
        cb = Signal.like(b, init=n + 1, name=f"w_b_{name}")
        hit = wok & (sel == reg)
        if layer_i is not None:
            hit = hit & (lp == layer_i)
        m.d.sync += [en.eq(hit), ca.eq(a), cb.eq(b)]
        wide[name] = (en, ca, cb)
    sel, a, b, c, d = w_sel, w_a, w_b, w_c, w_d
    # no write accepted now, in the stage, or landed in the last cycle (the registered
    # descriptor copies below, e.g. rows0_m1, follow a landed write one cycle later)
    w_v2 = Signal()
    m.d.sync += w_v2.eq(w_v)
    in_ok = Signal()
    m.d.comb += in_ok.eq(~core.prog_en & ~w_v & ~w_v2)
    for i, arb in enumerate(arbs):
        m.d.comb += [arb.seed.eq(d), arb.seed_dev.eq(a), arb.threshold.eq(rng_thr),
                     arb.seed_load.eq(w_v & (sel == Reg.RNG_SEED) & (c == i)),
                     arb.n_way.eq(n_way)]
    for i in range(L):
        en, ca, cb = wide[f"threshold{i}"]
        with m.If(en):
            m.d.sync += theta[i][ca][cb].eq(d)
        en, ca, _ = wide[f"sign{i}"]
        with m.If(en):
            m.d.sync += sign[i].bit_select(ca, 1).eq(d[0])
    for name, target in (("scale", scale), ("offset", offset)):
        en, ca, _ = wide[name]
        with m.If(en):
            m.d.sync += target[ca].eq(d)
    li = c[:core._layer_bits]
    with m.If(w_v):
        with m.Switch(sel):
            with m.Case(Reg.LAYER_ROWS):
                m.d.sync += rows[li].eq(d)
            with m.Case(Reg.LAYER_OUTS):
                m.d.sync += outs[li].eq(d)
            with m.Case(Reg.LAYER_GROUP_BASE):
                m.d.sync += gbase[li].eq(d)
            with m.Case(Reg.LAYER_IN_BITS):
                m.d.sync += in_bits[li].eq(d)
            with m.Case(Reg.N_LAYERS):
                m.d.sync += n_layers.eq(d)
            with m.Case(Reg.PASSES):
                m.d.sync += passes.eq(d)
            with m.Case(Reg.N_WAY):
                m.d.sync += n_way.eq(d)
            with m.Case(Reg.RNG_THRESHOLD):
                m.d.sync += rng_thr.eq(d)
            with m.Case(Reg.REUSE):
                m.d.sync += reuse.eq(d[0] & int(p.reuse))
            for reg, target in zip(ADAPT_REGS, adapt.values()):
                with m.Case(reg):
                    m.d.sync += target.eq(d)
            for reg, target in geometry.items():
                with m.Case(reg):
                    m.d.sync += target[li].eq(d)

    # cell read-back
    for xb in xbars:
        m.d.comb += [xb.v_row.eq(core.vfy_row), xb.v_col.eq(core.vfy_col)]
    vk = Signal.like(core.vfy_k)
    m.d.sync += vk.eq(core.vfy_k)
    m.d.comb += core.vfy_level.eq(Array(xb.v_level for xb in xbars)[vk])
    regs = {"rows": rows, "outs": outs, "gbase": gbase, "in_bits": in_bits, "theta": theta,
            "sign": sign, "scale": scale, "offset": offset, "n_layers": n_layers,
            "passes": passes, "n_way": n_way, "reuse": reuse, **adapt,
            **{r.name.lower().removeprefix("layer_"): v for r, v in geometry.items()}}
    return regs, in_ok
