"""Online health tests of one RNG device's bit stream (NIST SP 800-90B section 4.4).

:class:`HealthTests` runs three tests on one bit per cycle: the Repetition Count Test, the
Adaptive Proportion Test and a windowed bias monitor with low and high watermarks. The
cutoffs are input ports (registers the firmware computes from (H, α) with
:class:`spinbayes.golden.health.Cutoffs` and writes); each test latches its alarm and counts
its events. :class:`MonitoredRng` is one emulated SOT-MTJ device
(:class:`~spinbayes.rtl.rng.SotMtjRng`) with its health tests on the bits it hands out, which
they take from registers one cycle after the step.
The semantics (sample numbering, "fires at C", events) are those of
:mod:`spinbayes.golden.health`, whose :class:`~spinbayes.golden.health.HealthTests` is the
bit-exact twin.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.health import APT_WINDOW, BIAS_WINDOW, Cutoffs
from .rng import SotMtjRng

__all__ = ["HealthTests", "MonitoredRng", "health_members", "repetition_count"]


def repetition_count(m, valid, sample, cutoff, run) -> Signal:
    """The Repetition Count Test of one bit stream, added to ``m``: ``run`` (a Signal, its
    width the counter's) is B after the last sample, saturating at its maximum; returns this
    cycle's event (combinational: a valid sample with B >= ``cutoff`` that is the first
    failing sample of its run). Semantics of :class:`HealthTests`."""
    run_max = 2 ** len(run) - 1
    has_prev, last, run_failed = Signal(), Signal(), Signal()
    match, fail, event = Signal(), Signal(), Signal()
    b = Signal.like(run)
    m.d.comb += [
        match.eq(has_prev & (sample == last)),
        b.eq(Mux(match, Mux(run == run_max, run_max, run + 1), 1)),
        fail.eq(b >= cutoff),
        event.eq(valid & fail & ~(match & run_failed)),
    ]
    with m.If(valid):
        m.d.sync += [has_prev.eq(1), last.eq(sample), run.eq(b),
                     run_failed.eq(fail | (match & run_failed))]
    return event


def _check(component, name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        component._MustUse__silence = True
        raise ValueError(f"{name} must be a positive integer, not {v!r}")


def health_members(apt_window: int = APT_WINDOW, bias_window: int = BIAS_WINDOW,
                   rct_bits: int = 8, count_bits: int = 16) -> dict:
    """The ports shared by HealthTests and MonitoredRng (all but the sample input): name ->
    wiring member, the cutoffs' reset values those of H = 1, α = 2^-20."""
    c = Cutoffs.derive(apt_window=apt_window, bias_window=bias_window)
    apt_bits, bias_bits = (apt_window + 1).bit_length(), bias_window.bit_length()
    return {
        "rct_cutoff": In(rct_bits, init=min(c.rct, 2 ** rct_bits - 1)),
        "apt_cutoff": In(apt_bits, init=c.apt),
        "bias_low": In(bias_bits, init=c.bias_low),
        "bias_high": In(bias_bits, init=c.bias_high),
        "clear": In(3),
        "rct_event": Out(1), "apt_event": Out(1), "bias_event": Out(1),
        "rct_alarm": Out(1), "apt_alarm": Out(1), "bias_alarm": Out(1), "bias_side": Out(2),
        "rct_count": Out(count_bits), "apt_count": Out(count_bits),
        "bias_count": Out(count_bits),
        "rct_run": Out(rct_bits),
        "apt_index": Out(max((apt_window - 1).bit_length(), 1)),
        "apt_matches": Out(unsigned(apt_window.bit_length())),
        "bias_index": Out(max((bias_window - 1).bit_length(), 1)),
        "bias_ones": Out(unsigned(bias_window.bit_length())),
    }


class HealthTests(wiring.Component):
    """RCT, APT and bias monitor on one bit per cycle; alarms latched, events counted.

    Each cycle with ``valid`` carries one sample; samples are numbered 1, 2, ... from reset.
    Per sample (exactly :class:`spinbayes.golden.health.HealthTests`):

    * RCT: B = run length (1 for the first sample and after a change, B + 1 for a repeat,
      saturating at 2^rct_bits - 1); fails when B >= ``rct_cutoff``; its event is the first
      failing sample of a run. A stream stuck from reset has its event at sample C (21 at the
      default cutoff).
    * APT: windows of ``apt_window`` samples from reset; B = 1 at the window's first sample
      A, B + 1 for each later sample equal to A; fails when B >= ``apt_cutoff``; one event
      per window (its first failing sample).
    * Bias: windows of ``bias_window`` samples; fails when the window's ones exceed
      ``bias_high`` or its zeros exceed ``bias_window - bias_low`` (the window then ends with
      fewer than ``bias_low`` ones); one event per window.

    Parameters
    ----------
    apt_window : int
        APT window W (default 1024, 90B's window for binary samples).
    bias_window : int
        Bias-monitor window (default 4096).
    rct_bits : int
        Width of the RCT run counter and of ``rct_cutoff`` (default 8: cutoffs up to 255).
    count_bits : int
        Width of the saturating event counters (default 16).

    Ports
    -----
    valid : In(1)
        This cycle carries a sample. Without it the tests hold their state.
    sample : In(1)
        The sample bit.
    rct_cutoff : In(rct_bits)
        RCT cutoff C. Reset value (undriven): 21, ``rct_cutoff(1, 2^-20)``.
    apt_cutoff : In(bits of 0 .. apt_window + 1)
        APT cutoff C; above ``apt_window`` the test never fires. Init: ``apt_cutoff(1,
        2^-20, apt_window)`` (589 for W = 1024).
    bias_low, bias_high : In(bits of 0 .. bias_window)
        Watermarks: a window is healthy iff its ones lie in [low, high]. low = 0 or
        high >= bias_window disables that side. Init: ``bias_watermarks(bias_window, 2^-20)``
        ((1891, 2205) for 4096).
    clear : In(3)
        Clear the latched alarm of the RCT (bit 0), APT (bit 1), bias monitor (bit 2, with
        ``bias_side``) on the clock edge; an event in the same cycle sets the alarm anyway.
    rct_event, apt_event, bias_event : Out(1)
        Combinational: this cycle's sample is the test's event.
    rct_alarm, apt_alarm, bias_alarm : Out(1)
        Latched events (sticky until ``clear`` or reset).
    bias_side : Out(2)
        Which watermark the latched bias events crossed: bit 0 low, bit 1 high.
    rct_count, apt_count, bias_count : Out(count_bits)
        Events since reset, saturating at 2^count_bits - 1 (``clear`` leaves them).
    rct_run : Out(rct_bits)
        The RCT's B after the last sample (0 after reset).
    apt_index, bias_index : Out
        Samples of the current window already taken (0 .. window - 1).
    apt_matches : Out(bits of 0 .. apt_window)
        The APT's B after the last sample.
    bias_ones : Out(bits of 0 .. bias_window)
        Ones in the window after the last sample.

    Latency: the events are combinational from ``valid``, ``sample``, the cutoffs and the
    state (0 cycles); alarms, ``bias_side``, counters and state change on the clock edge that
    ends the sample's cycle (visible 1 cycle later). One sample per cycle.
    """

    def __init__(self, apt_window: int = APT_WINDOW, bias_window: int = BIAS_WINDOW,
                 rct_bits: int = 8, count_bits: int = 16):
        for name, v in (("apt_window", apt_window), ("bias_window", bias_window),
                        ("rct_bits", rct_bits), ("count_bits", count_bits)):
            _check(self, name, v)
        self.apt_window, self.bias_window = apt_window, bias_window
        self.rct_bits, self.count_bits = rct_bits, count_bits
        super().__init__({"valid": In(1), "sample": In(1),
                          **health_members(apt_window, bias_window, rct_bits, count_bits)})

    def elaborate(self, platform):
        m = Module()
        v, x = self.valid, self.sample
        count_max = 2 ** self.count_bits - 1
        Wa, Wb = self.apt_window, self.bias_window

        # --- RCT: B, the previous sample, and whether this run has failed -----------------
        m.d.comb += self.rct_event.eq(repetition_count(m, v, x, self.rct_cutoff, self.rct_run))

        # --- APT: the window's first sample A, B, and whether this window has failed -------
        a_first, a_failed = Signal(), Signal()
        a_start = Signal()
        matches = Signal.like(self.apt_matches)
        a_fail = Signal()
        m.d.comb += [
            a_start.eq(self.apt_index == 0),
            matches.eq(Mux(a_start, 1, self.apt_matches + (x == a_first))),
            a_fail.eq(matches >= self.apt_cutoff),
            self.apt_event.eq(v & a_fail & ~(~a_start & a_failed)),
        ]
        with m.If(v):
            m.d.sync += [self.apt_matches.eq(matches),
                         a_failed.eq(a_fail | (~a_start & a_failed)),
                         self.apt_index.eq(Mux(self.apt_index == Wa - 1, 0,
                                               self.apt_index + 1))]
            with m.If(a_start):
                m.d.sync += a_first.eq(x)

        # --- bias monitor: ones in the window against [low, high] --------------------------
        # With o ones and z zeros before this sample (z in a register of its own), the sample
        # fails high when o + x > high and low when z + ~x + low > Wb; both are decided from
        # registers by one compare or one adder each (x only selects), not by a chain of
        # adders in front of a compare.
        b_failed = Signal()
        b_start = Signal()
        o, high, low = self.bias_ones, self.bias_high, self.bias_low
        z = Signal(unsigned(Wb.bit_length()))             # zeros in the window so far
        z_low = Signal(unsigned(Wb.bit_length() + 1))
        f_hi, f_lo = Signal(), Signal()
        m.d.comb += [
            b_start.eq(self.bias_index == 0),
            z_low.eq(z + low),
            f_hi.eq(Mux(b_start, x & (high == 0), Mux(x, o >= high, o > high))),
            f_lo.eq(Mux(b_start, Mux(x, low > Wb, low >= Wb),
                        Mux(x, z_low > Wb, z_low >= Wb))),
            self.bias_event.eq(v & (f_hi | f_lo) & ~(~b_start & b_failed)),
        ]
        with m.If(v):
            m.d.sync += [self.bias_ones.eq(Mux(b_start, x, o + x)),
                         z.eq(Mux(b_start, ~x, z + ~x)),
                         b_failed.eq(f_hi | f_lo | (~b_start & b_failed)),
                         self.bias_index.eq(Mux(self.bias_index == Wb - 1, 0,
                                                self.bias_index + 1))]

        # --- alarms and counters -------------------------------------------------------------
        for i, (ev, alarm, count) in enumerate((
                (self.rct_event, self.rct_alarm, self.rct_count),
                (self.apt_event, self.apt_alarm, self.apt_count),
                (self.bias_event, self.bias_alarm, self.bias_count))):
            m.d.sync += alarm.eq((alarm & ~self.clear[i]) | ev)
            with m.If(ev & (count != count_max)):
                m.d.sync += count.eq(count + 1)
        side = Mux(self.clear[2], 0, self.bias_side)
        m.d.sync += self.bias_side.eq(side | Mux(self.bias_event, Cat(f_lo, f_hi), 0))
        return m


class MonitoredRng(wiring.Component):
    """One emulated SOT-MTJ device with its health tests on every bit it hands out.

    The device ports behave as in :class:`~spinbayes.rtl.rng.SotMtjRng`; a cycle with
    ``step`` and without ``load`` hands out ``bit`` (emulated, or the external bit: a forced
    stuck-at fault is flagged too) and is a valid sample of :class:`HealthTests`, whose other
    ports (cutoffs, ``clear``, events, alarms, counters, state) are this component's.

    Parameters
    ----------
    rng_bits : int
        W of the emulated device (default 16).
    apt_window, bias_window, rct_bits, count_bits : int
        As in :class:`HealthTests`.

    Ports
    -----
    seed, load, step, threshold, ext_en, ext_bit, bit, state
        The device's (:class:`~spinbayes.rtl.rng.SotMtjRng`).
    rct_cutoff ... bias_ones
        The health tests' (:class:`HealthTests`), whose valid and sample are registers of
        (step & ~load, bit): a step's bit is the tests' sample in the next cycle.

    Latency: ``bit`` is combinational in the cycle of the step and the device's state
    changes on its clock edge. The step's bit is the tests' sample 1 cycle later: its events
    are combinational in the cycle after the step (with that cycle's cutoffs and ``clear``),
    and the alarms, ``bias_side``, counters and state change on that cycle's clock edge (visible
    2 cycles after the step). Samples are numbered as the steps, so a device stuck from reset
    has its RCT event in the cycle after its 21st step (default cutoff) and ``rct_alarm`` one
    cycle after that.
    """

    def __init__(self, rng_bits: int = 16, apt_window: int = APT_WINDOW,
                 bias_window: int = BIAS_WINDOW, rct_bits: int = 8, count_bits: int = 16):
        for name, v in (("rng_bits", rng_bits), ("apt_window", apt_window),
                        ("bias_window", bias_window), ("rct_bits", rct_bits),
                        ("count_bits", count_bits)):
            _check(self, name, v)
        if rng_bits > 32:
            self._MustUse__silence = True
            raise ValueError(f"rng_bits must be at most 32 (the xorshift32 state), "
                             f"not {rng_bits!r}")
        self.rng_bits = rng_bits
        self._health = (apt_window, bias_window, rct_bits, count_bits)
        super().__init__({
            "seed": In(32), "load": In(1), "step": In(1),
            "threshold": In(unsigned(rng_bits + 1)), "ext_en": In(1), "ext_bit": In(1),
            "bit": Out(1), "state": Out(32, init=1),
            **health_members(*self._health),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dev = dev = SotMtjRng(self.rng_bits)
        m.submodules.health = ht = HealthTests(*self._health)
        for name in ("seed", "load", "step", "threshold", "ext_en", "ext_bit"):
            m.d.comb += getattr(dev, name).eq(getattr(self, name))
        # the tests see each step's bit one cycle later, from registers: the path from the
        # threshold (a register upstream) through the device's compare ends here, not at the
        # end of the tests' carry chains
        valid, sample = Signal(), Signal()
        m.d.sync += [valid.eq(self.step & ~self.load), sample.eq(dev.bit)]
        m.d.comb += [self.bit.eq(dev.bit), self.state.eq(dev.state),
                     ht.valid.eq(valid), ht.sample.eq(sample)]
        for name, member in ht.signature.members.items():
            if name in ("valid", "sample"):
                continue
            src, dst = (self, ht) if member.flow == wiring.In else (ht, self)
            m.d.comb += getattr(dst, name).eq(getattr(src, name))
        return m
