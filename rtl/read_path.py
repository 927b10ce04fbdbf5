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


def read_path(p, m, xbars, aac, *, issue, plane, group, base, rows, buffers, arb_mask,
              arb_idx, n_way, clear):
    """Drive the crossbars' reads and the adder-accumulator ``aac``. In a cycle with
    ``issue``: bit-plane ``plane`` of rows group*R .. group*R + R - 1 of the layer (those
    below ``rows``) of the buffer ``buffers`` = (select, [flat code arrays]) chooses, at
    crossbar group ``base + group``; the chosen crossbars' codes are registered into the
    AAC's ``p`` the cycle after and added the cycle after that (``clear``: the AAC's)."""
    sel, bufs = buffers
    rd_bits = Signal(p.R)
    for r in range(p.R):
        row = Signal(range(p.groups_total * p.R + 1), name=f"row{r}")
        m.d.comb += row.eq(group * p.R + r)
        words = Array(b.as_value().word_select(row[:p.row_bits], p.A_max) for b in bufs)
        m.d.comb += rd_bits[r].eq((row < rows) & words[sel].bit_select(plane, 1))
    p_valid, p_valid2 = Signal(), Signal()
    p_plane, p_plane2 = Signal.like(plane), Signal.like(plane)
    p_sel = Signal.like(aac.p)
    m.d.sync += [p_valid.eq(issue), p_plane.eq(plane), p_valid2.eq(p_valid),
                 p_plane2.eq(p_plane)]
    m.d.comb += [aac.valid.eq(p_valid2), aac.plane.eq(p_plane2), aac.clear.eq(clear),
                 aac.p.eq(p_sel), *(aac.p_mask[s].eq(1) for s in range(p.n_max))]
    for k, (xb, dec) in enumerate(xbars):
        m.d.comb += [dec.en.eq(issue & arb_mask[k]), dec.group.eq(base + group),
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
