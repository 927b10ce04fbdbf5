"""cocotb testbench of the emulated SOT-MTJ RNG (rtl.rng.SotMtjRng, top "rng").

test_random_ops: constrained-random cycles (step, hold, load, load of seed 0, external bit),
thresholds at their corners and random; ``bit`` and ``state`` checked every cycle against
:class:`spinbayes.sim.models.RngModel`. test_p_at_230uA: the bias of the paper's 230 uA
device, ``threshold_for(p_sw(230e-6), W)``, gives p = 0.5 within 4 sigma over
``stat_bits`` bits, bit-exact with the golden twin ``EmulatedRng``.
"""

import math

import cocotb
import numpy as np

from spinbayes.rtl.params import RtlParams
from spinbayes.sim.common import (
    CoverGroup,
    Scoreboard,
    Setup,
    TbReport,
    config_get,
    finish,
    gap_bin,
    start,
    tb_env,
)
from spinbayes.sim.models import RngModel

OPS = ("step", "hold", "load", "load0", "ext0", "ext1")
THR_KINDS = ("0", "1", "half", "max-1", "max", "random")


def thresholds(W):
    return {"0": 0, "1": 1, "half": 1 << (W - 1), "max-1": (1 << W) - 1, "max": 1 << W}


@cocotb.test()
async def test_random_ops(dut):
    described, s, rng, _ = Setup()
    W = RtlParams.from_describe(described).rng_bits
    thr_of = thresholds(W)
    cov = CoverGroup("rng", {
        "op": OPS,
        "threshold": THR_KINDS,
        "threshold_bit": ["0/0", "1/0", "half/0", "half/1", "max-1/1", "max/1", "random/0",
                          "random/1"],
        "idle_gap": ["0", "1", "2-3", "4+"],
    })
    sb = Scoreboard("rng")
    model = RngModel(W)
    c = await start(dut, load=0, step=0, ext_en=0, ext_bit=0, seed=0, threshold=0)
    kind, thr, idle = "0", 0, 0
    for _ in range(s["transactions"]):
        if rng.random() < 0.05:                      # new threshold, corners half the time
            kind = (THR_KINDS[rng.integers(5)] if rng.random() < 0.5 else "random")
            thr = thr_of[kind] if kind != "random" else int(rng.integers(2, (1 << W) - 1))
        u = rng.random()
        if u < s["stall_prob"]:
            op = "hold"
        elif u < s["stall_prob"] + 0.04:
            op = "load0" if rng.random() < 0.25 else "load"
        elif u < s["stall_prob"] + 0.10:
            op = "ext1" if rng.random() < 0.5 else "ext0"
        else:
            op = "step"
        seed = 0 if op == "load0" else int(rng.integers(1, 2 ** 32))
        load = int(op.startswith("load"))
        step = int(op != "hold" and (not load or rng.random() < 0.5))   # load beats step
        ext_en, ext_bit = int(op.startswith("ext")), int(op == "ext1")
        dut.threshold.value = thr
        dut.seed.value = seed
        dut.load.value = load
        dut.step.value = step
        dut.ext_en.value = ext_en
        dut.ext_bit.value = ext_bit
        exp_bit, exp_state = model.bit(thr, ext_en, ext_bit), model.state
        await c.cycle()
        got_bit, got_state = int(dut.bit.value), int(dut.state.value)
        ctx = {"op": op, "threshold": thr}
        sb.check("bit", exp_bit, got_bit, **ctx)
        sb.check("state", exp_state, got_state, **ctx)
        sb.transaction()
        sample = {"op": op, "threshold": kind}
        if op == "step":
            sample["threshold_bit"] = f"{kind}/{got_bit}"
            sample["idle_gap"] = gap_bin(idle)
            idle = 0
        elif op == "hold":
            idle += 1
        cov.sample(**sample)
        model.edge(load, seed, step)
    finish(TbReport(), "rng", sb, s["coverage_goal"], cycles=c.cycles)


@cocotb.test()
async def test_p_at_230uA(dut):
    """p = 0.5 +- 4 sigma (sigma = sqrt(p(1-p)/n)) at the 230 uA threshold."""
    from spinbayes.golden.mtj import EmulatedRng, p_sw, threshold_for

    described, config = tb_env()
    W = RtlParams.from_describe(described).rng_bits
    n = config_get(config, "stat_bits", 16384, lo=100)
    seed = config_get(config, "stat_seed", 2024, lo=1, hi=2 ** 32 - 1)
    thr = threshold_for(float(p_sw(230e-6)), W)
    assert thr == EmulatedRng.from_current(seed, 230e-6, threshold_bits=W).threshold
    c = await start(dut, load=1, step=0, ext_en=0, ext_bit=0, seed=seed, threshold=thr)
    await c.cycle()
    dut.load.value = 0
    dut.step.value = 1
    bits = np.empty(n, dtype=np.uint8)
    for i in range(n):
        await c.cycle()
        bits[i] = int(dut.bit.value)
    twin = EmulatedRng(seed, thr, W).bits(n)
    sb = Scoreboard("rng_230uA")
    sb.check("bits", twin, bits, seed=seed, threshold=thr)
    sb.transaction()
    p_hat = float(bits.mean())
    sigma = math.sqrt(0.25 / n)
    tol = 4 * sigma
    report = TbReport()
    report["rng_230uA"] = {"bits": n, "threshold": thr, "p_hat": p_hat, "tolerance": tol,
                           "z": (p_hat - 0.5) / sigma, "bit_exact_with_twin": sb.ok}
    report.write()
    sb.assert_ok()
    assert abs(p_hat - 0.5) <= tol, f"p = {p_hat} is not 0.5 +- {tol} over {n} bits"
