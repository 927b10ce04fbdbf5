"""cocotb testbench of the averaging block (rtl.averaging.AveragingBlock, top "averaging").

An image: ``clear`` (alone or with the first pass), T passes of S / M / B, each followed by
its multiply-adds (one class per cycle, while ``busy``) and a random idle gap, ``finish``,
then the divider. ``y``, ``y_count``, ``Y``, ``busy`` and ``mult_ops`` are checked every cycle
of the passes; S is scrambled after its ``pass_valid`` cycle (the block latches it); the
divider is skipped in one step to its last busy cycle (checked busy, not done) and the done
cycle is checked (averaged, cls, avg_ops, busy), against
:class:`spinbayes.sim.models.AveragingModel`. Values at the contract's extremes:
S = +-sum_max, M = +-(2^(scale_bits-1) - 1), B at both ends of offset_bits, T = 1 and T_max,
n_out = 0, all and above classes_max. Transactions: passes plus finishes.
"""

import cocotb

from spinbayes.rtl.params import RtlParams, bits_for
from spinbayes.sim import common
from spinbayes.sim.models import AveragingModel


def pick(rng, lo, hi, p_end=0.2):
    """Uniform in lo..hi, an end with probability p_end."""
    if rng.random() < p_end:
        return int(rng.choice([lo, hi]))
    return int(rng.integers(lo, hi + 1))


@cocotb.test()
async def test_random_images(dut):
    described, s, rng, stalls = common.Setup()
    params = RtlParams.from_describe(described)
    C, T_max = params.classes_max, params.T_max
    smax, m_max = params.sum_max, 2 ** (params.scale_bits - 1) - 1
    b_lo, b_hi = -(2 ** (params.offset_bits - 1)), 2 ** (params.offset_bits - 1) - 1
    n_out_bits = bits_for(params.outputs_max) + 1    # the n_out port's width
    ob, tb = params.out_bits, params.total_bits
    cov = common.CoverGroup("averaging", {
        "T": list(range(1, T_max + 1)),
        "n_out": list(range(1 << n_out_bits)),
        "cls": list(range(C)),
        "clear": ["alone", "with_pass"],
        "S_end": ["-sum_max", "+sum_max"], "M_end": ["-m_max", "+m_max"],
        "B_end": ["min", "max"],
        "avg_sign": ["neg", "zero", "pos"],
        "gap": ["0", "1", "2-3", "4+"],
    }, {"T_x_clear": ("T", "clear")})
    sb = common.Scoreboard("averaging")
    model = AveragingModel(params)
    c = await common.start(dut, clear=0, pass_valid=0, S=0, M=0, B=0, n_out=0, T=1, finish=0)

    async def step(clear=0, pass_valid=0, S=None, M=None, B=None, n_out=0, **ctx):
        """One cycle: drive, observe, compare the registered outputs, advance the model."""
        dut.clear.value, dut.pass_valid.value = clear, pass_valid
        if S is not None:
            dut.S.value = common.pack(S, params.sum_bits)
            dut.M.value = common.pack(M, params.scale_bits)
            dut.B.value = common.pack(B, params.offset_bits)
        exp_y, exp_Y, exp_ops = list(model.y), list(model.Y), model.mult_ops
        exp_count, exp_busy = model.y_count, int(model.busy)
        await c.cycle()
        sb.check("y", exp_y, common.unpack(dut.y.value, ob, C, True), **ctx)
        sb.check("Y", exp_Y, common.unpack(dut.Y.value, tb, C, True), **ctx)
        sb.check("mult_ops", exp_ops, int(dut.mult_ops.value), **ctx)
        sb.check("y_count", exp_count, int(dut.y_count.value), **ctx)
        sb.check("busy", exp_busy, int(dut.busy.value), **ctx)
        model.edge(clear, pass_valid, S, M, B, n_out)
        if pass_valid:                   # latched: the port is not read any more
            dut.S.value = common.pack([pick(rng, -smax, smax) for _ in range(C)],
                                      params.sum_bits)

    done = 0
    while done < s["transactions"]:
        T = pick(rng, 1, T_max, 0.3)
        n_out = int(rng.integers(0, 1 << n_out_bits))
        M = [pick(rng, -m_max, m_max) for _ in range(C)]
        B = [pick(rng, b_lo, b_hi) for _ in range(C)]
        dut.n_out.value, dut.T.value = n_out, T
        clear_with_pass = bool(rng.random() < 0.5)
        cov.sample(T=T, clear="with_pass" if clear_with_pass else "alone")
        if not clear_with_pass:
            await step(clear=1, n_out=n_out, phase="clear")
        for t in range(T):
            while model.busy:            # the previous pass's multiply-adds
                await step(n_out=n_out, phase="mac")
            gap = stalls.gap()
            for _ in range(gap):
                await step(n_out=n_out, phase="gap")
            S = [pick(rng, -smax, smax) for _ in range(C)]
            await step(clear=int(clear_with_pass and t == 0), pass_valid=1, S=S, M=M, B=B,
                       n_out=n_out, phase="pass", t=t)
            sb.transaction()
            done += 1
            cov.sample(gap=common.gap_bin(gap))
            for j in range(min(n_out, C)):
                ends = {-smax: "-sum_max", smax: "+sum_max"}
                if S[j] in ends:
                    cov.sample(S_end=ends[S[j]])
                if abs(M[j]) == m_max:
                    cov.sample(M_end="+m_max" if M[j] > 0 else "-m_max")
                if B[j] in (b_lo, b_hi):
                    cov.sample(B_end="min" if B[j] == b_lo else "max")
        while model.busy:                # the last pass's multiply-adds
            await step(n_out=n_out, phase="mac")
        # finish and the divider
        dut.finish.value = 1
        exp = model.finish(T, n_out)
        await step(n_out=n_out, phase="finish")
        dut.finish.value = 0
        cycles = exp["cycles"]
        ctx = {"T": T, "n_out": n_out, "Y": list(model.Y)}
        if cycles > 1:                   # to the last busy cycle in one step
            await c.skip(cycles - 1)
            sb.check("busy before done", 1, int(dut.busy.value), **ctx)
            sb.check("done early", 0, int(dut.done.value), **ctx)
        await c.cycle()
        sb.check("done", 1, int(dut.done.value), **ctx)
        sb.check("busy at done", 0, int(dut.busy.value), **ctx)
        sb.check("averaged", exp["averaged"], common.unpack(dut.averaged.value, tb, C, True),
                 **ctx)
        sb.check("cls", exp["cls"], int(dut.cls.value), **ctx)
        sb.check("avg_ops", model.avg_ops, int(dut.avg_ops.value), **ctx)
        sb.transaction()
        done += 1
        cov.sample(n_out=n_out)
        if n_out:
            cov.sample(cls=exp["cls"])
            for a in exp["averaged"][:min(n_out, C)]:
                cov.sample(avg_sign="neg" if a < 0 else "zero" if a == 0 else "pos")
    common.finish(common.TbReport(), "averaging", sb, s["coverage_goal"], cycles=c.cycles,
                  sum_max=smax, m_max=m_max)
