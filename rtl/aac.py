"""Adder-accumulator (AAC): shift-add of the ADC codes into the n-way sums S.

docs/HARDWARE.md, step 3 and 4: per read (one bit-plane b, one R-row group) of the n chosen
crossbars, every cell column's ADC code p is added, shifted left by b, into the output j it
belongs to (cell column ``j * k + c``, the k cells of a weight have equal significance). Over
all reads of a layer this gives ``S_j = sum_x acc_(x,j) = sum_x sum_i a_i w_(x,i,j)``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import RtlParams, bits_for, check_params

__all__ = ["AdderAccumulator"]


class AdderAccumulator(wiring.Component):
    """n-way adder-accumulator of one layer pass.

    Per accepted read (``valid``), for every output j:
    ``S_j += (sum over used slots x of sum over cells c < k of p[x][j*k + c]) << plane``.
    The n chosen crossbars are summed *before* the accumulation, so there is one accumulator
    per output instead of one per crossbar and output; this equals summing n per-crossbar
    accumulators because the arithmetic is exact integer addition within sum_bits
    (docs/HARDWARE.md, "the order ... does not change the result"). Every partial sum of a
    layer's reads is bounded by the sum of the magnitudes of its terms, so it lies within
    +-sum_max and the sum_bits accumulators never overflow for codes a real crossbar produces
    (any two's-complement overflow of out-of-contract inputs wraps).

    Parameters
    ----------
    params : RtlParams
        n_max, outputs_max, k_cells, A_max, adc_bits and sum_bits.

    Ports
    -----
    clear : In(1)
        Zero the accumulators at the end of this cycle. With ``valid`` in the same cycle the
        accumulators start fresh with this read: ``S = contribution`` (no stale sum).
    valid : In(1)
        Accept the read in ``p`` / ``plane`` / ``p_mask`` this cycle.
    plane : In(bits of 0 .. A_max - 1)
        Bit-plane b of the read (its weight 2^b).
    p : In(ArrayLayout(ArrayLayout(signed(adc_bits), cols_max), n_max))
        ADC codes of the read, one vector per slot (the crossbars chosen by the arbiter).
    p_mask : In(n_max)
        Slots in use (``p_mask[x]`` for x < n_way); unused slots add nothing.
    S : Out(ArrayLayout(signed(sum_bits), outputs_max))
        The registered n-way sums.
    ops : Out(32)
        Accumulate operations: reads accepted since reset (``clear`` does not reset it; wraps
        at 2^32).

    Latency: 1 cycle. A read accepted in cycle t is included in ``S`` from cycle t + 1; one
    read per cycle, fully pipelined (the adder tree is combinational in front of the
    registers).
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "clear": In(1),
            "valid": In(1),
            "plane": In(unsigned(bits_for(p.A_max))),
            "p": In(data.ArrayLayout(data.ArrayLayout(signed(p.adc_bits), p.cols_max),
                                     p.n_max)),
            "p_mask": In(p.n_max),
            "S": Out(data.ArrayLayout(signed(p.sum_bits), p.outputs_max)),
            "ops": Out(32),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        k = p.k_cells
        # |sum of one read| <= n_max * k * 4R, then << (A_max - 1)
        read_bits = p.adc_bits + (p.n_max * k - 1).bit_length()
        for j in range(p.outputs_max):
            terms = [Mux(self.p_mask[x], self.p[x][j * k + c], 0)
                     for x in range(p.n_max) for c in range(k)]
            t = Signal(signed(read_bits), name=f"read_sum{j}")
            m.d.comb += t.eq(sum(terms[1:], terms[0]))
            add = Mux(self.valid, t << self.plane, 0)
            base = Mux(self.clear, 0, self.S[j])
            m.d.sync += self.S[j].eq(base + add)
        with m.If(self.valid):
            m.d.sync += self.ops.eq(self.ops + 1)
        return m
