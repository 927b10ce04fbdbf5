"""The stochastic arbiter of one layer (paper sections 3.3, 3.5.1; docs/HARDWARE.md "Arbiter").

k = ceil(log2 N) emulated SOT-MTJ devices (:class:`~spinbayes.rtl.rng.SotMtjRng`) are read in
parallel, one draw per cycle; device 0's bit is the code's MSB (golden ``DeviceBank`` order).
A code >= N, or a crossbar already held in this pass, is rejected and redrawn (exact
uniformity, distinct n-way choices). The held crossbars form the DEMUX's n-hot mask, which
drives the N read decoders' enables; the same choices, ascending, are on ``indices`` (the
trace port). Bit-exact with :class:`spinbayes.golden.arbiter.Arbiter` over a
:class:`~spinbayes.golden.arbiter.DeviceBank` of :class:`~spinbayes.golden.mtj.EmulatedRng`
twins with the same seeds and threshold.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .health import MonitoredRng, health_members, repetition_count
from .params import bits_for
from .regs import HEALTH_LAYOUT
from .rng import SotMtjRng

__all__ = ["Arbiter", "CUTOFF_PORTS", "HEALTH_COUNT_BITS"]

#: Width of each device test's event counter in an arbiter with health tests (the health
#: read registers' field per device).
HEALTH_COUNT_BITS = HEALTH_LAYOUT["count_bits"]
#: The health tests' cutoff inputs (shared by the devices of an arbiter).
CUTOFF_PORTS = ("rct_cutoff", "apt_cutoff", "bias_low", "bias_high")
TESTS = HEALTH_LAYOUT["tests"]


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


class Arbiter(wiring.Component):
    """One layer's arbiter: n of N crossbars per pass, k = ceil(log2 N) SOT-MTJ devices.

    On ``start`` the held mask is cleared and the arbiter goes busy. In each busy cycle all k
    devices ``step`` together and give one code, device 0's bit as the MSB ... device k-1's
    bit as the LSB. If code < N and crossbar ``code`` is not yet held, its mask bit is set;
    otherwise the draw is a rejection. When n_way crossbars are held, ``busy`` falls,
    ``done`` pulses for one cycle and ``mask`` / ``indices`` hold the pass's choice until the
    next ``start``. With N = 1 (k = 0, no devices) ``done`` follows ``start`` by one cycle
    with mask = 1, and no draw is counted. A ``start`` while busy restarts the selection
    (the draw of that cycle is not taken).

    Stuck detection follows the golden model's ``max_redraws`` = 64 * 2^k: when a rejection
    makes more than 64 * 2^k consecutive rejected draws, ``stuck`` is set (sticky until
    reset). The hardware keeps drawing (the golden model raises instead): a pass that cannot
    complete (a stuck-at-1 device with N not a power of two, or any stuck device with
    n_way > 1) never raises ``done``.

    Parameters
    ----------
    N : int
        Crossbars of the layer (DEMUX outputs used), >= 1.
    n_max : int
        Largest n-way supported, 1 .. N.
    rng_bits : int
        W of the emulated devices (threshold compare width), 1 .. 32 (default 16).
    thr_override : bool
        Give every device a threshold register of its own (``thr_load``; default False).
    health : bool
        Run the online health tests on every device (default False): each device is a
        :class:`~spinbayes.rtl.health.MonitoredRng` (RCT, APT and bias monitor on the bits it
        hands out, :data:`HEALTH_COUNT_BITS`-bit event counters), and each pair of adjacent
        devices (d, d + 1) has a Repetition Count Test on the XOR of their bits, which fires
        when two devices hand out the same stream (e.g. both unseeded). The draws and the
        selections are the same with and without.

    Ports
    -----
    start : In(1)
        Pulse: begin one pass's selection (sampled on the clock edge).
    n_way : In(bits of 0 .. n_max)
        Crossbars to choose, 1 .. n_max; latched on ``start``. Values outside 1 .. n_max are
        clamped into that range (0 -> 1), so a bad register never hangs the arbiter.
    threshold : In(rng_bits + 1)
        Threshold of the k emulated devices (shared), 0 .. 2^W.
    seed : In(32)
        Seed written by ``seed_load`` (0 loads as 1, see :class:`SotMtjRng`).
    seed_dev : In(bits of 0 .. k-1, at least 1)
        Device that ``seed_load`` seeds; values >= k load nothing.
    seed_load : In(1)
        Load ``seed`` into device ``seed_dev`` on the clock edge (priority over its step).
    thr_load : In(1) (``thr_override`` only)
        On the clock edge: device ``seed_dev`` takes its own threshold ``seed[0:W+1]`` from
        now on, or (``seed`` negative, bit 31 set) the shared ``threshold`` again (reset: the
        shared one). A fault map's stuck (0 or 2^W) and biased devices, from firmware.
    ext_en : In(1)
        All devices output their external bit instead of the emulated one (their emulated
        states keep stepping).
    ext_bits : In(max(k, 1))
        External bits, ``ext_bits[d]`` is device d's bit (so ``ext_bits[0]`` is the code's MSB).
    busy : Out(1)
        A selection is in progress (one draw per busy cycle).
    done : Out(1)
        One-cycle pulse: the selection is complete; ``mask`` and ``indices`` are valid.
    mask : Out(N)
        The DEMUX's n-hot read-decoder enables (bit c = crossbar c chosen). Cleared on
        ``start``, built up while busy, held stable from ``done`` until the next ``start``.
    indices : Out(ArrayLayout(unsigned(index_bits), n_max))
        The set bits of ``mask`` ascending (slot s = the (s+1)-th chosen crossbar); slots
        >= n_way are 0. Combinational from ``mask``: the trace port.
    draws : Out(32)
        Codes drawn since reset, rejected included (wraps at 2^32).
    rejections : Out(32)
        Codes rejected since reset (code >= N or already held).
    stuck : Out(1)
        Sticky: more than 64 * 2^k consecutive draws were rejected. Cleared by reset only.
    rct_cutoff, apt_cutoff, bias_low, bias_high : In (``health`` only)
        The cutoffs of every device's tests (:class:`~spinbayes.rtl.health.HealthTests`,
        reset values H = 1, α = 2^-20); the pair tests use ``rct_cutoff``.
    dev_alarms : Out(3k) (``health`` only)
        Latched alarms, bit 3d + t: device d's RCT (t = 0), APT (1), bias monitor (2).
    dev_counts : Out(ArrayLayout(HEALTH_COUNT_BITS, 3k)) (``health`` only)
        Events since reset, element 3d + t as in ``dev_alarms``, saturating.
    bias_sides : Out(2k) (``health`` only)
        Bits 2d, 2d + 1: device d's ``bias_side`` (low, high watermark crossed).
    pair_alarms : Out(max(k - 1, 1)) (``health`` only)
        Latched alarms of the pair tests, bit d: devices d and d + 1 gave the same bit
        ``rct_cutoff`` draws in a row.
    pair_count : Out(16) (``health`` only)
        Draws with a pair-test event since reset, saturating.

    Every draw is one sample of each device's tests and of the pair tests, which take it from
    registers in the cycle after the draw: a draw in cycle t sets an alarm (and counts its
    event) on the clock edge that ends cycle t+1, visible in cycle t+2 (2 cycles after the
    draw); alarms are sticky until reset. The tests never feed the draws.

    Latency: one cycle per draw. ``start`` in cycle t -> draws in cycles t+1 .. t+D ->
    ``done`` (and the final ``mask``/``indices``) in cycle t+D+1, i.e. D + 1 cycles, where D
    is the number of draws, expected ``golden.arbiter.expected_draws(N, n_way)`` (8/5 for
    N = 5, n = 1: 2.6 cycles; 18/5 for n = 2: 4.6 cycles). N = 1: 1 cycle. ``start`` may be
    asserted in the ``done`` cycle, so back-to-back selections take D + 1 cycles each.
    """

    def __init__(self, N: int, n_max: int, rng_bits: int = 16, *, health: bool = False,
                 thr_override: bool = False):
        if not _positive_int(N):
            self._MustUse__silence = True
            raise ValueError(f"N must be a positive integer, not {N!r}")
        if not _positive_int(n_max) or n_max > N:
            self._MustUse__silence = True
            raise ValueError(f"n_max must be an integer in 1..N={N}, not {n_max!r}")
        if not _positive_int(rng_bits):
            self._MustUse__silence = True
            raise ValueError(f"rng_bits must be a positive integer, not {rng_bits!r}")
        if rng_bits > 32:
            self._MustUse__silence = True
            raise ValueError(f"rng_bits must be at most 32 (the xorshift32 state), "
                             f"not {rng_bits!r}")
        self.N, self.n_max, self.rng_bits = N, n_max, rng_bits
        self.k = k = (N - 1).bit_length()
        self.index_bits = bits_for(N)
        #: consecutive rejections tolerated before ``stuck`` (golden ``max_redraws``)
        self.max_redraws = 64 << k
        self.health, self.thr_override = bool(health), bool(thr_override)
        ports = {"thr_load": In(1)} if self.thr_override else {}
        if self.health:
            members = health_members(rct_bits=8, count_bits=HEALTH_COUNT_BITS)
            ports.update({name: members[name] for name in CUTOFF_PORTS})
            ports.update({
                "dev_alarms": Out(max(3 * k, 1)),
                "dev_counts": Out(data.ArrayLayout(unsigned(HEALTH_COUNT_BITS), max(3 * k, 1))),
                "bias_sides": Out(max(2 * k, 1)),
                "pair_alarms": Out(max(k - 1, 1)), "pair_count": Out(16),
            })
        super().__init__({
            "start": In(1),
            "n_way": In(unsigned(n_max.bit_length())),
            "threshold": In(unsigned(rng_bits + 1)),
            "seed": In(32),
            "seed_dev": In(unsigned(bits_for(k))),
            "seed_load": In(1),
            "ext_en": In(1),
            "ext_bits": In(max(k, 1)),
            "busy": Out(1),
            "done": Out(1),
            "mask": Out(N),
            "indices": Out(data.ArrayLayout(unsigned(self.index_bits), n_max)),
            "draws": Out(32),
            "rejections": Out(32),
            "stuck": Out(1),
            **ports,
        })

    def elaborate(self, platform):
        N, n_max, k = self.N, self.n_max, self.k
        m = Module()

        # --- the k devices, stepped together while busy ---------------------------------
        step = Signal()
        m.d.comb += step.eq(self.busy & ~self.start)
        devs = []
        for d in range(k):
            dev = MonitoredRng(self.rng_bits, count_bits=HEALTH_COUNT_BITS) if self.health \
                else SotMtjRng(self.rng_bits)
            m.submodules[f"mtj{d}"] = dev
            m.d.comb += [
                dev.seed.eq(self.seed),
                dev.load.eq(self.seed_load & (self.seed_dev == d)),
                dev.step.eq(step),
                dev.threshold.eq(self._threshold(m, d)),
                dev.ext_en.eq(self.ext_en),
                dev.ext_bit.eq(self.ext_bits[d]),
            ]
            devs.append(dev)
        if self.health and k:
            self._health(m, devs, step)

        # --- DEMUX and rejection ---------------------------------------------------------
        n_reg = Signal(range(n_max + 1), init=1)    # n_way of the current pass
        held = Signal(range(n_max + 1))             # crossbars held so far
        accept = Signal()
        dmx = Signal(N)                             # one-hot of an accepted code
        if k:
            code = Signal(k)
            m.d.comb += code.eq(Cat(dev.bit for dev in reversed(devs)))   # device 0 = MSB
            in_range = (code < N) if N < 2 ** k else Const(1)
            m.d.comb += accept.eq(in_range & ~(self.mask >> code)[0])
            m.d.comb += dmx.eq(Cat(accept & (code == c) for c in range(N)))
        else:
            m.d.comb += [accept.eq(1), dmx.eq(1)]

        n_in = Signal.like(n_reg)
        m.d.comb += n_in.eq(Mux(self.n_way == 0, 1,
                                Mux(self.n_way > n_max, n_max, self.n_way)))

        streak = Signal(range(self.max_redraws + 2))
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            if k:
                m.d.sync += [self.mask.eq(0), held.eq(0), n_reg.eq(n_in), self.busy.eq(1)]
            else:               # N = 1: nothing to draw, crossbar 0 at once
                m.d.sync += [self.mask.eq(1), self.busy.eq(0), self.done.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += self.mask.eq(self.mask | dmx)
            if k:
                m.d.sync += self.draws.eq(self.draws + 1)
            with m.If(accept):
                m.d.sync += [held.eq(held + 1), streak.eq(0)]
                with m.If(held + 1 == n_reg):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += self.rejections.eq(self.rejections + 1)
                with m.If(streak != self.max_redraws + 1):
                    m.d.sync += streak.eq(streak + 1)
                with m.If(streak >= self.max_redraws):
                    m.d.sync += self.stuck.eq(1)

        # --- trace: the set bits of mask, ascending ----------------------------------------
        # before[c] = number of set bits of mask[0:c]; crossbar c fills slot before[c]
        for s in range(n_max):
            terms = []
            before = Const(0, range(N + 1))
            for c in range(N):
                if c >= s:              # fewer than s bits can precede position c < s
                    terms.append(Mux(self.mask[c] & (before == s), c, 0))
                before = before + self.mask[c]
            slot = terms[0]
            for t in terms[1:]:
                slot = slot | t
            m.d.comb += self.indices[s].eq(slot)
        return m

    def _threshold(self, m, d: int):
        """Device d's threshold: the shared one, or its own override (``thr_override``)."""
        if not self.thr_override:
            return self.threshold
        own = Signal.like(self.threshold, name=f"thr{d}")
        use = Signal(name=f"thr{d}_en")
        with m.If(self.thr_load & (self.seed_dev == d)):
            m.d.sync += [own.eq(self.seed[:len(own)]), use.eq(~self.seed[31])]
        return Mux(use, own, self.threshold)

    def _health(self, m, devs, step) -> None:
        """Cutoffs into every device's tests; alarms, counts and sides out; the pair tests."""
        for d, dev in enumerate(devs):
            m.d.comb += [getattr(dev, name).eq(getattr(self, name)) for name in CUTOFF_PORTS]
            for t, test in enumerate(TESTS):
                m.d.comb += [self.dev_alarms[3 * d + t].eq(getattr(dev, f"{test}_alarm")),
                             self.dev_counts[3 * d + t].eq(getattr(dev, f"{test}_count"))]
            m.d.comb += self.bias_sides[2 * d:2 * d + 2].eq(dev.bias_side)
        # the pair tests, like the devices' own, see each draw one cycle later (registered
        # inputs: the devices' compares do not feed the tests' logic combinationally)
        valid = Signal(name="pair_valid")
        m.d.sync += valid.eq(step)
        events = []
        for d in range(len(devs) - 1):
            run = Signal(len(self.rct_cutoff), name=f"pair{d}_run")
            xor = Signal(name=f"pair{d}_xor")
            m.d.sync += xor.eq(devs[d].bit ^ devs[d + 1].bit)
            ev = repetition_count(m, valid, xor, self.rct_cutoff, run)
            events.append(ev)
            with m.If(ev):
                m.d.sync += self.pair_alarms[d].eq(1)
        if events:
            with m.If(Cat(*events).any() & (self.pair_count != 2 ** 16 - 1)):
                m.d.sync += self.pair_count.eq(self.pair_count + 1)
