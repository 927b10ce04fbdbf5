"""cocotb testbench of the RNG health tests on one device (rtl.health.MonitoredRng).

The design's parameters (``rng_bits``, ``apt_window``, ``bias_window``, ``rct_bits``,
``count_bits``) come from params.json. Every cycle checks ``bit``, the three events
(combinational) and every registered output (alarms, ``bias_side``, counters, the tests'
state) against :class:`spinbayes.sim.models.RngModel` and the golden twin
:class:`spinbayes.golden.health.HealthTests`, which takes each step's bit one cycle late as
the RTL does (a step's sample is the tests' in the next cycle, with that cycle's ``clear``
and cutoffs).

test_stuck_device: at the default cutoffs, from reset, the device stuck at 0 (threshold 0),
at 1 (threshold 2^W) and by a forced external bit (0 and 1): the RCT fires at sample 21, the
sample of the twin, in the cycle after step 21; ``stuck_samples`` long streams show the APT
(589) and the bias monitor (2206) too; then a fault after a healthy stretch is flagged within
21 samples of its onset.
test_random: segments of healthy, biased and stuck sources with holds, re-seeds, clears and
cutoff rewrites (``transactions`` cycles), to 100 % of the cover bins.
"""

import cocotb

from spinbayes.golden.health import Cutoffs, HealthTests, bias_watermarks, rct_cutoff
from spinbayes.golden.health import apt_cutoff as apt_cut
from spinbayes.sim.common import (
    CoverGroup,
    Scoreboard,
    Setup,
    TbReport,
    config_get,
    finish,
    start,
    tb_env,
)
from spinbayes.sim.models import RngModel

STATE = ("rct_alarm", "apt_alarm", "bias_alarm", "bias_side", "rct_count", "apt_count",
         "bias_count", "rct_run", "apt_index", "apt_matches", "bias_index", "bias_ones")
EVENTS = ("rct_event", "apt_event", "bias_event")
SOURCES = ("healthy", "high", "low", "stuck0", "stuck1", "ext0", "ext1")


def design(params: dict) -> dict:
    return {k: params[k] for k in ("apt_window", "bias_window", "rct_bits", "count_bits")}


class Bench:
    """The DUT, its device model and health twin, advanced and checked one cycle at a time."""

    def __init__(self, dut, c, params, sb):
        self.dut, self.c, self.sb = dut, c, sb
        self.W = params["rng_bits"]
        self.rng = RngModel(self.W)
        self.twin = HealthTests(**design(params))
        self.inputs = {"load": 0, "step": 0, "seed": 1, "threshold": 1 << (self.W - 1),
                       "ext_en": 0, "ext_bit": 0, "clear": 0}
        #: the previous cycle's (valid, bit): the tests' sample in this cycle
        self.pending = (0, 0)

    def write(self, cut: Cutoffs):
        self.twin.write(cut)
        d = self.dut
        d.rct_cutoff.value, d.apt_cutoff.value = cut.rct, cut.apt
        d.bias_low.value, d.bias_high.value = cut.bias_low, cut.bias_high

    async def reset(self):
        self.dut.rst.value = 1
        await self.c.cycle(2)
        self.dut.rst.value = 0
        self.rng, self.twin = RngModel(self.W), self._fresh_twin()
        self.pending = (0, 0)

    def _fresh_twin(self):
        t = HealthTests(self.twin.apt_window, self.twin.bias_window, self.twin.rct_bits,
                        self.twin.count_bits)
        t.write(Cutoffs(self.twin.rct_cutoff, self.twin.apt_cutoff, self.twin.bias_low,
                        self.twin.bias_high))
        return t

    async def cycle(self, **inputs) -> tuple[int, tuple]:
        """One cycle with ``inputs`` (the rest held); checks everything; returns the bit and
        the events of the cycle (those of the previous cycle's step)."""
        self.inputs.update(inputs)
        x = self.inputs
        for name, value in x.items():
            getattr(self.dut, name).value = value
        bit = self.rng.bit(x["threshold"], x["ext_en"], x["ext_bit"])
        before = tuple(getattr(self.twin, n) for n in STATE)
        valid, sample = self.pending
        if valid:
            ev = self.twin.step(sample, x["clear"])
        else:
            self.twin.idle(x["clear"])
            ev = (0, 0, 0)
        self.pending = (int(x["step"] and not x["load"]), bit)
        await self.c.cycle()
        self.sb.check("bit", bit, int(self.dut.bit.value), **x)
        self.sb.check("events", ev, tuple(int(getattr(self.dut, n).value) for n in EVENTS), **x)
        self.sb.check("state", before, tuple(int(getattr(self.dut, n).value) for n in STATE),
                      **x)
        self.sb.transaction()
        self.rng.edge(x["load"], x["seed"], x["step"])
        return bit, ev


def fault_inputs(kind: str, W: int) -> dict:
    thr = {"stuck0": 0, "stuck1": 1 << W, "high": int(0.8 * (1 << W)),
           "low": int(0.2 * (1 << W))}.get(kind, 1 << (W - 1))
    ext = kind.startswith("ext")
    return {"threshold": thr, "ext_en": int(ext), "ext_bit": int(kind == "ext1")}


@cocotb.test()
async def test_stuck_device(dut):
    params, config = tb_env()
    n_long = config_get(config, "stuck_samples", 2300, lo=30)
    sb = Scoreboard("health_stuck")
    cut = Cutoffs.derive(apt_window=params["apt_window"], bias_window=params["bias_window"])
    c = await start(dut, load=0, step=0, seed=1, threshold=0, ext_en=0, ext_bit=0, clear=0)
    b = Bench(dut, c, params, sb)
    b.write(cut)
    result = {"cutoffs": cut.__dict__, "from_reset": {}, "after_healthy": {}}
    for kind in ("stuck0", "stuck1", "ext0", "ext1"):
        await b.reset()
        await b.cycle(load=1, seed=12345, step=0, clear=0, **fault_inputs(kind, b.W))
        n = n_long if kind.startswith("stuck") else 30
        first = [None, None, None]
        for i in range(1, n + 2):             # step i in cycle i, its events in cycle i + 1
            _, ev = await b.cycle(load=0, step=int(i <= n))
            for k in range(3):
                if ev[k] and first[k] is None:
                    first[k] = i - 1
        await b.cycle(step=0)                             # the alarm is visible now
        alarm = int(dut.rct_alarm.value)
        result["from_reset"][kind] = {"rct": first[0], "apt": first[1], "bias": first[2],
                                      "rct_alarm": alarm, "rct_count": b.twin.rct_count}
        assert first[0] == 21 and alarm == 1, (kind, first)
    for kind in ("stuck0", "stuck1", "ext1"):               # a fault after 300 healthy bits
        await b.reset()
        await b.cycle(load=1, seed=777, step=0, **fault_inputs("healthy", b.W))
        bits = [(await b.cycle(load=0, step=1))[0] for _ in range(300)]
        stuck = int(kind != "stuck0")
        run_before = 0
        while run_before < len(bits) and bits[-1 - run_before] == stuck:
            run_before += 1
        assert run_before < 21, "the healthy stretch ended in a failing run"
        b.inputs.update(fault_inputs(kind, b.W))
        after = None
        for i in range(1, 40):
            if (await b.cycle())[1][0]:       # the event of step i - 1
                after = i - 1
                break
        result["after_healthy"][kind] = {"samples_after_onset": after,
                                         "equal_bits_before_onset": run_before}
        assert after == 21 - run_before, (kind, after, run_before)
    report = TbReport()
    report["health_stuck"] = {**sb.summary(), **result}
    report.write()
    sb.assert_ok()


@cocotb.test()
async def test_random(dut):
    params, s, gen, stalls = Setup()
    sb = Scoreboard("health")
    W, Wa, Wb = params["rng_bits"], params["apt_window"], params["bias_window"]
    sets = [Cutoffs(rct_cutoff(1, a), apt_cut(1, a, Wa), *bias_watermarks(Wb, a))
            for a in (2 ** -2, 2 ** -4, 2 ** -8)]
    cov = CoverGroup("health", {
        "source": SOURCES,
        "op": ["step", "hold", "load"],
        "event": ["rct", "apt", "bias_high", "bias_low"],
        "clear": ["rct", "apt", "bias"],
        "clear_with_event": ["yes"],
        "saturated": ["rct", "apt", "bias"],
    })
    c = await start(dut, load=0, step=0, seed=1, threshold=1 << (W - 1), ext_en=0, ext_bit=0,
                    clear=0)
    b = Bench(dut, c, params, sb)
    b.write(sets[0])
    left, kind, order = 0, "healthy", []
    for _ in range(s["transactions"]):
        if left == 0:                       # a new segment: every source once per round
            order = order or list(gen.permutation(SOURCES))
            kind = str(order.pop())
            left = int(gen.integers(20, 4 * Wb))
            b.inputs.update(fault_inputs(kind, W))
            b.write(sets[int(gen.integers(len(sets)))])
        left -= 1
        load = int(gen.random() < 0.01)
        step = int(not stalls.stall())
        clear = int(gen.integers(1, 8)) if gen.random() < 0.05 else 0
        seed = int(gen.integers(0, 2 ** 32))
        alarms = (b.twin.rct_alarm, b.twin.apt_alarm, b.twin.bias_alarm)
        _, ev = await b.cycle(load=load, step=step, clear=clear, seed=seed)
        sample = {"source": kind, "op": "load" if load else "step" if step else "hold"}
        for k, name in enumerate(("rct", "apt", "bias")):
            if clear >> k & 1 and alarms[k]:
                sample["clear"] = name
            if clear >> k & 1 and ev[k]:
                sample["clear_with_event"] = "yes"
        if ev[0] or ev[1]:
            sample["event"] = "rct" if ev[0] else "apt"
        if ev[2]:
            sample["event"] = "bias_high" if b.twin.bias_ones > b.twin.bias_high else "bias_low"
        cov.sample(**sample)
        for name in ("rct", "apt", "bias"):
            if getattr(b.twin, f"{name}_count") == b.twin.max_count:
                cov.sample(saturated=name)
    finish(TbReport(), "health", sb, s["coverage_goal"], cycles=c.cycles)
