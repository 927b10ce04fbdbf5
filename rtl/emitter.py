"""The network core's outputs: result stream, activation trace and activity counters.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore`'s elaboration (not a block of its own:
the signals keep their names and places in the core's Verilog); every output here is a plain
expression of the controller's state and the datapath (docs/HARDWARE.md, "Result stream",
"Activation trace", "Activity counters").
"""

from __future__ import annotations

from amaranth import Cat, Mux, Signal, unsigned
from amaranth.lib import data

from .regs import COUNTERS, OutKind

__all__ = ["activation_trace", "counters", "result_stream"]


def result_stream(core, m, *, emit_y, emit_avg, emit_cls, out_c, t, avg) -> None:
    """The result stream: y_c of each pass (EMIT_Y, as the averaging block has it), the
    averages (EMIT_AVG) and the class (EMIT_CLASS), one beat per class."""
    m.d.comb += [
        core.out_valid.eq((emit_y & (out_c < avg.y_count)) | emit_avg | emit_cls),
        core.out_kind.eq(Mux(emit_avg, OutKind.AVERAGE,
                             Mux(emit_cls, OutKind.CLASS, OutKind.PASS))),
        core.out_index.eq(Mux(emit_y | emit_avg, out_c, 0)),
        core.out_pass.eq(Mux(emit_y, t, 0)),
        core.out_data.eq(Mux(emit_y, avg.y[out_c],
                             Mux(emit_avg, avg.averaged[out_c],
                                 Mux(emit_cls, avg.cls, 0)))),
    ]


def activation_trace(core, m, *, dense_valid, codes, outs, layer, t, cu) -> None:
    """The activation trace (observe only, no back-pressure): one beat per hidden layer's
    output vector as the next layer will read it, channels >= the layer's outputs as 0. A
    dense hidden layer: its comparator outputs ``codes`` in its ACT cycle (``dense_valid``),
    position 0. A convolution (``cu``, the ConvUnit): each pooled vector as the writer
    takes it, at its pooled position (raster order)."""
    p = core.params
    vec = Signal(data.ArrayLayout(unsigned(p.A), p.outputs_max))
    valid, pos = dense_valid, 0
    if cu is not None:
        valid = dense_valid | cu.pooled_valid
        pos = Mux(cu.pooled_valid, cu.pooled_pos, 0)
        codes = Mux(cu.pooled_valid, cu.pooled_codes.as_value(), codes.as_value())
    m.d.comb += vec.eq(codes)
    m.d.comb += [core.act_valid.eq(valid), core.act_layer.eq(layer), core.act_pass.eq(t),
                 core.act_pos.eq(pos),
                 *(core.act_codes[j].eq(Mux(j < outs, vec[j], 0))
                   for j in range(p.outputs_max))]


def counters(core, m, *, issue, arb_mask, arbs, aac_ops, cmp, avg) -> dict:
    """Activity counters (32 bits each): busy cycles, crossbar reads (the chosen crossbars of
    each READ cycle, ``arb_mask``), RNG draws, AAC (``aac_ops``), comparator and averaging
    operations, returned by name (:data:`~spinbayes.rtl.regs.COUNTERS`, read through
    rtl/status.py's read port); the arbiters' stuck flag. ``core.counters`` keeps them for
    white-box tests."""
    p = core.params
    cnt = {name: Signal(32, name=name) for name in COUNTERS}
    popcount = sum(arb_mask[k] for k in range(p.N))
    m.d.sync += cnt["cnt_cycles"].eq(cnt["cnt_cycles"] + core.busy)
    with m.If(issue):
        m.d.sync += cnt["cnt_xbar_reads"].eq(cnt["cnt_xbar_reads"] + popcount)
    m.d.comb += [
        cnt["cnt_rng_draws"].eq(sum(x.draws for x in arbs)),
        cnt["cnt_aac_ops"].eq(aac_ops), cnt["cnt_cmp_ops"].eq(cmp.ops),
        cnt["cnt_avg_ops"].eq(avg.mult_ops + avg.avg_ops),
        core.stuck.eq(Cat(x.stuck for x in arbs).any()),
    ]
    core.counters = cnt
    return cnt
