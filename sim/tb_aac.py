"""cocotb testbench of the adder-accumulator (rtl.aac.AdderAccumulator, top "aac").

Each cycle carries a read (``valid``) or not (idle gaps), with or without ``clear``: random
ADC codes in -4R..4R (the ends drawn often), random bit-planes and slot masks; directed
bursts add reads of all +4R or all -4R codes until an accumulator reaches +-sum_max (the
width extreme). ``S`` and ``ops`` are checked every cycle against
:class:`spinbayes.sim.models.AacModel` (S wraps at sum_bits like the RTL's registers).
"""

import cocotb
import numpy as np

from spinbayes.rtl.params import RtlParams, bits_for
from spinbayes.sim import common
from spinbayes.sim.models import AacModel


@cocotb.test()
async def test_random_reads(dut):
    described, s, rng, stalls = common.Setup()
    params = RtlParams.from_describe(described)
    n_max, C, n_out, R = params.n_max, params.cols_max, params.outputs_max, params.R
    A_max, adc, sb_bits = params.A_max, params.adc_bits, params.sum_bits
    smax, code_max = params.sum_max, 4 * R
    cov = common.CoverGroup("aac", {
        "plane": list(range(A_max)),
        "p_mask": list(range(1 << n_max)),
        "control": ["idle", "valid", "clear", "clear+valid"],
        "code_extreme": [f"+{code_max}", f"-{code_max}"],
        "S_extreme": ["+sum_max", "-sum_max"],
        "gap": ["0", "1", "2-3", "4+"],
        "read_clears": [0, 1],
    }, {"read_clears_x_plane": ("read_clears", "plane")})
    sb = common.Scoreboard("aac")
    model = AacModel(params)
    c = await common.start(dut, clear=0, valid=0, plane=0, p=0, p_mask=0)
    burst, gap_left, idle_run = 0, 0, 0
    for _ in range(s["transactions"]):
        if burst == 0 and gap_left == 0 and rng.random() < 0.02:
            burst = int(rng.choice([1, -1])) * 64            # +-4R reads until +-sum_max
        directed = bool(burst)
        if directed:
            sign = 1 if burst > 0 else -1
            codes = [[sign * code_max] * C for _ in range(n_max)]
            clear, valid, mask = int(abs(burst) == 64), 1, (1 << n_max) - 1
            plane = A_max - 1
            burst -= sign
        elif gap_left:
            valid, gap_left, idle_run = 0, gap_left - 1, idle_run + 1
        else:
            valid = 1
        if not directed:
            clear = int(rng.random() < 0.08)
            plane, mask = int(rng.integers(0, A_max)), int(rng.integers(0, 1 << n_max))
            ends = rng.random((n_max, C)) < 0.1
            codes = np.where(ends, rng.choice([-code_max, code_max], (n_max, C)),
                             rng.integers(-code_max, code_max + 1, (n_max, C))).tolist()
        dut.clear.value, dut.valid.value, dut.plane.value = clear, valid, plane
        dut.p.value = common.pack([v for row in codes for v in row], adc)
        dut.p_mask.value = mask
        exp_S, exp_ops = list(model.S), model.ops
        await c.cycle()
        ctx = {"clear": clear, "valid": valid, "plane": plane, "mask": mask}
        sb.check("S", exp_S, common.unpack(dut.S.value, sb_bits, n_out, True), **ctx)
        sb.check("ops", exp_ops, int(dut.ops.value), **ctx)
        sb.transaction()
        model.edge(clear, valid, plane, codes, mask)
        if directed and max(sign * v for v in model.S) >= smax:
            burst = 0                                    # the extreme is reached
        control = ("clear+" if clear else "") + ("valid" if valid else "") or "idle"
        if control == "clear+":
            control = "clear"
        sample = {"control": control}
        if valid:
            sample.update(plane=plane, p_mask=mask, gap=common.gap_bin(idle_run),
                          read_clears=clear)
            idle_run, gap_left = 0, stalls.gap()
            flat = {v for row in codes for v in row}
            for e in (code_max, -code_max):
                if e in flat and mask:
                    sample["code_extreme"] = f"{e:+d}"
        if max(exp_S) >= smax:
            sample["S_extreme"] = "+sum_max"
        elif min(exp_S) <= -smax:
            sample["S_extreme"] = "-sum_max"
        cov.sample(**sample)
    common.finish(common.TbReport(), "aac", sb, s["coverage_goal"], cycles=c.cycles,
                  sum_max=smax, plane_bits=bits_for(A_max))
