"""The network core's crossbar read path: N crossbars, their decoders and the slot select.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore`'s elaboration (not a block of its own:
the signals keep their names and places in the core's Verilog). A read issued in cycle t
(``issue``: bit-plane ``rd_bits`` of R rows of group ``group`` of the layer) reaches the chosen
crossbars' ADCs; in t + 1 the n chosen crossbars' codes are selected by the registered arbiter
indices and registered into ``p_sel``, which the adder-accumulator adds in t + 2 (the sum is
in S from t + 3: the core's DRAIN).
"""

from __future__ import annotations

from amaranth import Array, C, Mux, Signal

from .crossbar import CrossbarMemory
from .decoders import ReadDecoder

__all__ = ["SEL_COPIES", "crossbars", "read_path"]

#: Registered copies of each arbiter index that select the chosen crossbar's columns.
SEL_COPIES = 8


def crossbars(core, m) -> list:
    """The N crossbar memories of ``core`` (with its back-door levels and stuck cells) and
    their read decoders, added to ``m``; returns [(crossbar, decoder)]."""
    p = core.params
    out = []
    for k in range(p.N):
        xb = CrossbarMemory(p, None if core._cell_init is None else core._cell_init[k],
                            stuck=core._stuck.get(k, ()))
        dec = ReadDecoder(p)
        m.submodules[f"xbar{k}"] = xb
        m.submodules[f"rdec{k}"] = dec
        out.append((xb, dec))
    return out


def read_path(p, m, xbars, *, issue, arb_mask, arb_idx, n_way, group, rd_bits, p_sel):
    """Drive the crossbars' reads and select the chosen ones' codes into ``p_sel`` (the
    adder-accumulator's ``p``, registered). ``group``: the group address in the crossbars
    (group base + group of the layer)."""
    for k, (xb, dec) in enumerate(xbars):
        m.d.comb += [dec.en.eq(issue & arb_mask[k]), dec.group.eq(group),
                     xb.rd_en.eq(dec.active), xb.rd_group.eq(dec.group),
                     xb.rd_bits.eq(rd_bits)]
    # The registered index of slot s is replicated, one copy per SEL_COPIES-th of the
    # columns (one register drove all cols_max x adc_bits multiplexers: the periphery's
    # critical path on the ECP5, 13 ns of routing). Copy g resets to g: copies that
    # differed only by name would be merged back into one flip-flop by yosys (a keep
    # attribute does not stop that). The reset value is never used: the indices are
    # loaded before the first READ of every layer.
    per = -(-p.cols_max // min(SEL_COPIES, 2 ** (p.index_bits + 1), p.cols_max))
    copies = -(-p.cols_max // per)             # every copy has at least one column
    ab = p.adc_bits
    # A slot outside the n-way (s >= n_way) holds index N, which selects zeros: the
    # adder-accumulator's own slot mask stays all ones (n_way's fan-out into every
    # accumulator was the next critical path).
    for s in range(p.n_max):
        for g in range(copies):
            q = Signal(p.index_bits + 1, init=g, name=f"idx_q{s}_{g}")
            m.d.sync += q.eq(Mux(s < n_way, arb_idx[s], p.N))
            lo, hi = g * per * ab, min(p.cols_max, (g + 1) * per) * ab
            zero = C(0, hi - lo)
            entries = [xb.p.as_value()[lo:hi] for xb, _ in xbars]
            entries += [zero] * (2 ** (p.index_bits + 1) - p.N)
            m.d.sync += p_sel[s].as_value()[lo:hi].eq(Array(entries)[q])
