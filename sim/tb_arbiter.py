"""cocotb testbench of the stochastic arbiter (rtl.arbiter.Arbiter, top "arbiter").

test_random_selections: start/done selections with random n_way (0 and values above n_max
included: they clamp), random idle gaps (0 = the next start in the done cycle), thresholds
at 230 uA and biased, occasional re-seeding, and passes driven by external device bits;
every cycle of every selection is checked against :class:`spinbayes.sim.models.ArbiterModel`
(busy, done, mask, trace indices, draw/rejection counters, stuck).
test_chi_square: N choices with n_way = 1 at 230 uA pass a chi-square test (p > chi_p_min).
test_stuck_device: device 0 (the code's MSB) forced to 0 through ext_en/ext_bits must FAIL
the same test (p < 1e-6, the top crossbars never chosen); forced to 1 with n_way = 2 no
selection completes and ``stuck`` rises after 64 * 2^k rejections.
"""

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
    pack,
    start,
    tb_env,
    unpack,
)
from spinbayes.sim.models import ArbiterModel


def thresholds(W):
    from spinbayes.golden.mtj import p_sw, threshold_for
    return {"230uA": threshold_for(float(p_sw(230e-6)), W), "low": threshold_for(0.3, W),
            "high": threshold_for(0.7, W)}


class Bench:
    """Drives the arbiter and checks each selection cycle by cycle."""

    def __init__(self, dut, c, params: RtlParams, sb):
        self.dut, self.c, self.sb = dut, c, sb
        self.N, self.n_max, self.W = params.N, params.n_max, params.rng_bits
        self.model = ArbiterModel(self.N, self.n_max, self.W)
        self.idx_bits = params.index_bits
        self.k = self.model.k
        self.pending = None        # the expected done-cycle view of the last selection

    async def seed(self, seeds):
        d = self.dut
        for dev, s in enumerate(seeds):
            d.seed.value, d.seed_dev.value, d.seed_load.value = s, dev, 1
            await self.cycle()
            self.model.seed_load(dev, s)
        d.seed_load.value = 0

    async def cycle(self) -> bool:
        """End one cycle; True when it was the last selection's done cycle (then checked)."""
        await self.c.cycle()
        if self.pending is None:
            return False
        self.check_done(self.pending)
        self.pending = None
        return True

    def check_done(self, exp):
        d, sb = self.dut, self.sb
        ctx = exp["ctx"]
        sb.check("done", 1, int(d.done.value), **ctx)
        sb.check("busy", 0, int(d.busy.value), **ctx)
        sb.check("mask", exp["mask"], int(d.mask.value), **ctx)
        sb.check("indices", self.model.trace(exp["indices"]),
                 unpack(d.indices.value, self.idx_bits, self.n_max), **ctx)
        sb.check("draws", exp["total_draws"], int(d.draws.value), **ctx)
        sb.check("rejections", exp["total_rejections"], int(d.rejections.value), **ctx)
        sb.check("stuck", exp["stuck"], int(d.stuck.value), **ctx)

    async def select(self, n_way, threshold, ext_bits=None, gap_before=0):
        """One selection: ``gap_before`` idle cycles (0: start in the previous done cycle),
        start, then every busy cycle checked. The done cycle is checked by the next cycle
        that ends (a gap cycle or the next start)."""
        d, sb = self.dut, self.sb
        for _ in range(gap_before):
            if not await self.cycle():
                sb.check("idle done", 0, int(d.done.value))
                sb.check("idle busy", 0, int(d.busy.value))
        it = iter(ext_bits) if ext_bits is not None else None
        exp = self.model.select(n_way, threshold,
                                ext=(lambda: next(it)) if it is not None else None)
        exp.update(total_draws=self.model.draws, total_rejections=self.model.rejections,
                   stuck=self.model.stuck)     # snapshots: the model moves on before the check
        exp["ctx"] = {"n_way": n_way, "threshold": threshold, "ext": ext_bits is not None,
                      "selection": sb.transactions}
        d.threshold.value = threshold
        d.n_way.value = n_way
        d.ext_en.value = int(ext_bits is not None)
        d.start.value = 1
        await self.cycle()                   # the start cycle
        d.start.value = 0
        for i in range(exp["draws"]):
            if ext_bits is not None:
                d.ext_bits.value = pack(ext_bits[i], 1)
            await self.cycle()
            sb.check("busy", 1, int(d.busy.value), **exp["ctx"])
            sb.check("done", 0, int(d.done.value), **exp["ctx"])
        self.pending = exp
        sb.transaction()
        return exp

    async def flush(self):
        d = self.dut
        d.start.value = 0
        await self.cycle()


def ext_draws(rng, k, n, stuck=None):
    """n draws of k external device bits; ``stuck``: (device, value) forced."""
    bits = rng.integers(0, 2, size=(n, k))
    if stuck is not None:
        bits[:, stuck[0]] = stuck[1]
    return bits.tolist()


@cocotb.test()
async def test_random_selections(dut):
    described, s, rng, stalls = Setup()
    params = RtlParams.from_describe(described)
    N, n_max, W = params.N, params.n_max, params.rng_bits
    thr = thresholds(W)
    n_way_values = list(range(2 ** n_max.bit_length()))
    cov = CoverGroup("arbiter", {
        "index": list(range(N)),
        "n_way": n_way_values,
        "redraw": ["none", "out_of_range", "repeat", "both"] if N & (N - 1) else
                  ["none", "repeat"] if n_max > 1 else ["none"],
        "gap": ["0", "1", "2-3", "4+"],
        "source": ["emulated", "external"],
        "threshold": list(thr),
        "reseed": [False, True],
    }, {"n_way_x_gap": ("n_way", "gap")})
    sb = Scoreboard("arbiter")
    c = await start(dut, start=0, n_way=1, threshold=thr["230uA"], seed=0, seed_dev=0,
                    seed_load=0, ext_en=0, ext_bits=0)
    bench = Bench(dut, c, params, sb)
    k = bench.k
    await bench.seed([int(x) for x in rng.integers(1, 2 ** 32, size=k)])
    kind = "230uA"
    for _ in range(s["transactions"]):
        reseed = bool(rng.random() < 0.02)
        if reseed:
            await bench.seed([int(rng.integers(0, 2 ** 32))])   # device 0; 0 loads as 1
        if rng.random() < 0.03:
            kind = list(thr)[rng.integers(3)] if rng.random() < 0.5 else "230uA"
        n_way = int(rng.choice(n_way_values)) if rng.random() < 0.2 else \
            int(rng.integers(1, n_max + 1))
        ext = ext_draws(rng, k, 512) if rng.random() < 0.05 else None
        gap = stalls.gap()
        exp = await bench.select(n_way, thr[kind], ext, gap_before=gap)
        oor, rep = exp["out_of_range"], exp["repeats"]
        cov.sample(n_way=n_way, gap=gap_bin(gap), threshold=kind, reseed=reseed,
                   source="external" if ext is not None else "emulated",
                   redraw="both" if oor and rep else "out_of_range" if oor else
                   "repeat" if rep else "none")
        for i in exp["indices"]:
            cov.sample(index=i)
    await bench.flush()
    finish(TbReport(), "arbiter", sb, s["coverage_goal"], cycles=c.cycles)


def chi_square(counts):
    from scipy.stats import chisquare
    return float(chisquare(counts).pvalue)


@cocotb.test()
async def test_chi_square(dut):
    described, config = tb_env()
    params = RtlParams.from_describe(described)
    N, W = params.N, params.rng_bits
    passes = config_get(config, "chi_passes", 2000, lo=10)
    p_min = config_get(config, "chi_p_min", 1e-3, kind=float, lo=0, hi=1)
    seed = config_get(config, "seed", 0, lo=0)
    from spinbayes.golden.arbiter import device_seed
    sb = Scoreboard("arbiter_chi_square")
    c = await start(dut, start=0, n_way=1, threshold=0, seed=0, seed_dev=0, seed_load=0,
                    ext_en=0, ext_bits=0)
    bench = Bench(dut, c, params, sb)
    await bench.seed([device_seed(seed, 0, d, bench.k) for d in range(bench.k)])
    counts = np.zeros(N, dtype=np.int64)
    thr = thresholds(W)["230uA"]
    for _ in range(passes):
        exp = await bench.select(1, thr)
        counts[exp["indices"][0]] += 1
    await bench.flush()
    p = chi_square(counts)
    report = TbReport()
    report["arbiter_chi_square"] = {"passes": passes, "counts": counts.tolist(),
                                    "p_value": p, "p_min": p_min, **sb.summary()}
    report.write()
    sb.assert_ok()
    assert p > p_min, f"choices {counts.tolist()} fail uniformity: p = {p} <= {p_min}"


@cocotb.test()
async def test_stuck_device(dut):
    described, config = tb_env()
    params = RtlParams.from_describe(described)
    N, n_max = params.N, params.n_max
    passes = config_get(config, "stuck_passes", 500, lo=10)
    seed = config_get(config, "seed", 0, lo=0)
    rng = np.random.default_rng(seed + 7)
    sb = Scoreboard("arbiter_stuck")
    c = await start(dut, start=0, n_way=1, threshold=0, seed=0, seed_dev=0, seed_load=0,
                    ext_en=0, ext_bits=0)
    bench = Bench(dut, c, params, sb)
    k = bench.k
    counts = np.zeros(N, dtype=np.int64)
    for _ in range(passes):        # device 0 (MSB) stuck at 0, the others fair
        exp = await bench.select(1, 0, ext_draws(rng, k, 512, stuck=(0, 0)))
        counts[exp["indices"][0]] += 1
    await bench.flush()
    p = chi_square(counts)
    never = [i for i in range(N) if counts[i] == 0]
    result = {"passes": passes, "counts": counts.tolist(), "p_value": p, "never_chosen": never}
    # stuck-at-1 MSB with n_way = 2 and N = 2^(k-1) + 1 (N = 5: only code 4 is valid): no
    # selection completes
    hang = None
    if n_max >= 2 and k and N - 2 ** (k - 1) == 1:
        d = dut
        limit = bench.model.max_redraws + 64     # P(no accept in the first 56) < 1e-7
        d.ext_en.value, d.n_way.value, d.start.value = 1, 2, 1
        await c.cycle()
        d.start.value = 0
        dones, stuck_at = 0, None
        for i in range(limit):
            bits = [1, *rng.integers(0, 2, size=k - 1).tolist()]
            d.ext_bits.value = pack(bits, 1)
            await c.cycle()
            dones += int(d.done.value)
            if stuck_at is None and int(d.stuck.value):
                stuck_at = i
        hang = {"cycles": limit, "dones": dones, "stuck_after_cycles": stuck_at}
        sb.check("no done while stuck", 0, dones)
        sb.check("stuck raised after max_redraws", True,
                 stuck_at is not None and stuck_at >= bench.model.max_redraws)
    result["stuck_at_1_n_way_2"] = hang
    report = TbReport()
    report["arbiter_stuck"] = {**result, **sb.summary()}
    report.write()
    sb.assert_ok()
    assert p < 1e-6 and never, (f"a stuck device was not detected: counts {counts.tolist()}, "
                                f"p = {p}")
