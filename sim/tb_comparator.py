"""cocotb testbench of the comparator bank (rtl.comparator.ComparatorBank, top "comparator").

Each transaction drives every output's n-way sum S_j, its 2^A - 1 thresholds, the sign mask,
``n_out`` and ``valid``; ``act`` (combinational) is checked in the same cycle and ``ops``
(registered) every cycle, against :func:`spinbayes.sim.models.comparator_act`. Values come
from the width extremes: S at the most negative / largest value of sum_bits (so -S needs the
extra bit) and at +-sum_max, thresholds at the clamps -sum_max and sum_max + 1, at the ends
of threshold_bits, equal to sigma * S and one above it (the >= boundary).
"""

import cocotb

from spinbayes.rtl.params import RtlParams, bits_for
from spinbayes.sim import common
from spinbayes.sim.models import comparator_act, comparator_ops

S_KINDS = ("min", "max", "-sum_max", "+sum_max", "zero", "random")
THETA_KINDS = ("clamp_low", "clamp_high", "min", "max", "eq", "eq+1", "random")


@cocotb.test()
async def test_random_compares(dut):
    described, s, rng, _ = common.Setup()
    params = RtlParams.from_describe(described)
    n_o, L = params.outputs_max, params.levels
    sbits, tbits, smax = params.sum_bits, params.threshold_bits, params.sum_max
    n_out_bits = bits_for(n_o) + 1
    s_val = {"min": -(1 << (sbits - 1)), "max": (1 << (sbits - 1)) - 1, "-sum_max": -smax,
             "+sum_max": smax, "zero": 0}
    t_lo, t_hi = -(1 << (tbits - 1)), (1 << (tbits - 1)) - 1
    cov = common.CoverGroup("comparator", {
        "S": list(S_KINDS), "theta": list(THETA_KINDS), "sign": [0, 1],
        "act": list(range(L + 1)), "n_out": ["0", "inside", "all", "over"],
        "valid": [0, 1],
    }, {"sign_x_S": ("sign", "S"), "theta_x_sign": ("theta", "sign")})
    sb = common.Scoreboard("comparator")
    c = await common.start(dut, S=0, theta=0, sign=0, n_out=0, valid=0)
    ops = 0
    for _ in range(s["transactions"]):
        skinds = [S_KINDS[i] for i in rng.integers(0, len(S_KINDS), n_o)]
        S = [s_val[k] if k in s_val else int(rng.integers(-smax, smax + 1)) for k in skinds]
        sign = int(rng.integers(0, 1 << n_o))
        tkinds, theta = [], []
        for j in range(n_o):
            sv = -S[j] if sign >> j & 1 else S[j]
            ks = [THETA_KINDS[i] for i in rng.integers(0, len(THETA_KINDS), L)]
            vals = {"clamp_low": -smax, "clamp_high": smax + 1, "min": t_lo, "max": t_hi,
                    "eq": sv, "eq+1": sv + 1}
            row = [min(max(vals[k], t_lo), t_hi) if k in vals
                   else int(rng.integers(t_lo, t_hi + 1)) for k in ks]
            tkinds.append(ks)
            theta.append(row)
        n_out = int(rng.integers(0, 1 << n_out_bits))
        valid = int(rng.random() >= s["stall_prob"])
        dut.S.value = common.pack(S, sbits)
        dut.theta.value = common.pack([t for row in theta for t in row], tbits)
        dut.sign.value, dut.n_out.value, dut.valid.value = sign, n_out, valid
        await c.cycle()
        exp = comparator_act(S, theta, sign)
        ctx = {"S": S, "theta": theta, "sign": sign}
        sb.check("act", exp, common.unpack(dut.act.value, params.A, n_o), **ctx)
        sb.check("ops", ops, int(dut.ops.value), n_out=n_out)
        sb.transaction()
        if valid:
            ops = (ops + comparator_ops(n_out, n_o, L)) % 2 ** 32
        cov.sample(valid=valid, n_out="0" if n_out == 0 else "inside" if n_out < n_o else
                   "all" if n_out == n_o else "over")
        for j in range(n_o):
            for m in range(L):
                cov.sample(S=skinds[j], sign=sign >> j & 1, theta=tkinds[j][m])
            cov.sample(act=exp[j])
    common.finish(common.TbReport(), "comparator", sb, s["coverage_goal"], cycles=c.cycles,
                  sum_max=smax)
