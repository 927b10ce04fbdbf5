"""Comparator activations of a hidden layer, BatchNorm folded into the thresholds.

docs/HARDWARE.md, "BatchNorm folded into the comparators": for every output j and comparator
m = 1 .. 2^A - 1 the firmware stores an integer threshold theta_jm (clamped to
-sum_max .. sum_max + 1) and a sign sigma_j = sign(gamma_j); the activation is the
thermometer count ``a'_j = sum_m [sigma_j * S_j >= theta_jm]``, the golden
:meth:`spinbayes.golden.hardware.HwLayer.activate`. The clamp values give an always-on
(theta = -sum_max) or always-off (theta = sum_max + 1) comparator; nothing else saturates.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import RtlParams, check_params

__all__ = ["ComparatorBank"]


class ComparatorBank(wiring.Component):
    """outputs_max x (2^A - 1) signed comparators: the thermometer activations of a layer.

    ``act_j = sum over m < levels of [sigma_j * S_j >= theta[j][m]]`` with sigma_j = -1 when
    ``sign[j]`` is 1, else +1. No negation is formed: sigma_j = +1 tests ``S - theta >= 0``
    and sigma_j = -1 tests ``-S >= theta``, i.e. ``S + theta <= 0``; both differences are
    computed side by side one bit wider than the wider of sum_bits and threshold_bits, so
    every S and theta in their signed ranges are exact (a negation followed by a comparison
    was two carry chains in series on the periphery's critical path on the ECP5). The count
    is not gated by ``n_out``: outputs j >= n_out compute from whatever is on their ports
    (the network controller masks them).

    Parameters
    ----------
    params : RtlParams
        outputs_max, levels (= 2^A - 1), A, sum_bits, threshold_bits, output_bits_index.

    Ports
    -----
    S : In(ArrayLayout(signed(sum_bits), outputs_max))
        The n-way sums of the layer.
    theta : In(ArrayLayout(ArrayLayout(signed(threshold_bits), levels), outputs_max))
        Folded thresholds; ``theta[j][m - 1]`` is comparator m of output j.
    sign : In(outputs_max)
        Bit j is 1 when sigma_j = -1 (BatchNorm gamma_j < 0), 0 when sigma_j = +1.
    n_out : In(output_bits_index + 1)
        Outputs in use; only counts operations (values above outputs_max count as
        outputs_max).
    valid : In(1)
        The activations are taken this cycle: ``ops += min(n_out, outputs_max) * levels``.
    act : Out(ArrayLayout(unsigned(A), outputs_max))
        Thermometer counts 0 .. 2^A - 1.
    ops : Out(32)
        Comparisons performed since reset (wraps at 2^32).

    Latency: 0 cycles for ``act`` (combinational); ``ops`` is registered (counts a ``valid``
    of cycle t from cycle t + 1).
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        super().__init__({
            "S": In(data.ArrayLayout(signed(p.sum_bits), p.outputs_max)),
            "theta": In(data.ArrayLayout(data.ArrayLayout(signed(p.threshold_bits), p.levels),
                                         p.outputs_max)),
            "sign": In(p.outputs_max),
            "n_out": In(p.output_bits_index + 1),
            "valid": In(1),
            "act": Out(data.ArrayLayout(unsigned(p.A), p.outputs_max)),
            "ops": Out(32),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        w = max(p.sum_bits, p.threshold_bits) + 1
        for j in range(p.outputs_max):
            hits = []
            for k in range(p.levels):
                th = self.theta[j][k]
                d_pos = Signal(signed(w), name=f"s_minus_theta{j}_{k}")
                d_neg = Signal(signed(w), name=f"s_plus_theta{j}_{k}")
                m.d.comb += [d_pos.eq(self.S[j] - th), d_neg.eq(self.S[j] + th)]
                hits.append(Mux(self.sign[j], (d_neg < 0) | (d_neg == 0), d_pos >= 0))
            m.d.comb += self.act[j].eq(sum(hits[1:], hits[0]))
        n_used = Signal(range(p.outputs_max + 1))
        m.d.comb += n_used.eq(Mux(self.n_out > p.outputs_max, p.outputs_max, self.n_out))
        with m.If(self.valid):
            m.d.sync += self.ops.eq(self.ops + n_used * p.levels)
        return m
