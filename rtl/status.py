"""The network core's register read path: status flags and activity counters by select.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore`'s elaboration (not a block of its own:
the signals keep their names and places in the core's Verilog). A read presents ``rd_sel``
(:class:`~spinbayes.rtl.regs.ReadReg`) and ``rd_index`` with ``rd_en`` in cycle k; ``rd_data``
holds the register's value as it was in cycle k, with ``rd_valid`` high, in cycle k + 1
(:data:`READ_LATENCY`; one read per cycle, back to back). A select that is not a ``ReadReg``
reads :data:`~spinbayes.rtl.regs.READ_UNKNOWN`. ``rd_data`` keeps its value in cycles without
a read. The counters keep counting while the core is busy: six reads give one consistent set
only while ``busy`` is low (docs/HARDWARE.md, "Register read path").

The RNG health tests' cutoff registers (``Reg.HEALTH_*``, shared by every arbiter) and the
health read registers (``ReadReg.HEALTH_*``, one per layer by ``rd_index``,
:data:`~spinbayes.rtl.regs.HEALTH_LAYOUT`) are here too (docs/HARDWARE.md, "RNG health").
"""

from __future__ import annotations

from amaranth import Cat, Const, Signal

from .arbiter import CUTOFF_PORTS
from .regs import (
    COUNTER_REGS,
    COUNTERS,
    HEALTH_LAYOUT,
    READ_UNKNOWN,
    OutKind,
    ReadReg,
    Reg,
    Status,
)

__all__ = ["READ_LATENCY", "health_registers", "read_port", "status_word"]

#: The cutoff write selects, in the order of the arbiters' cutoff ports.
CUTOFF_REGS = (Reg.HEALTH_RCT_CUTOFF, Reg.HEALTH_APT_CUTOFF, Reg.HEALTH_BIAS_LOW,
               Reg.HEALTH_BIAS_HIGH)

#: Cycles from a read request (``rd_en``) to its ``rd_data`` / ``rd_valid``.
READ_LATENCY = 1


def status_word(core, m, alarm) -> Signal:
    """The :class:`~spinbayes.rtl.regs.Status` word of ``core``, from its ports: BUSY,
    READY (an input beat would start an image), PROGRAMMED (an N_LAYERS write has landed),
    DONE (the class beat was taken, until the next image's first input beat), ALARM (the
    ``stuck`` port or ``alarm``, any health alarm)."""
    programmed, done, n_layers_w = Signal(), Signal(), Signal()
    # an N_LAYERS write accepted in cycle k lands at the end of k + 1 (the write stage)
    m.d.sync += n_layers_w.eq(core.prog_en & core.prog_ready & (core.prog_sel == Reg.N_LAYERS))
    with m.If(n_layers_w):
        m.d.sync += programmed.eq(1)
    with m.If(core.out_valid & core.out_ready & (core.out_kind == OutKind.CLASS)):
        m.d.sync += done.eq(1)
    with m.Elif(core.in_valid & core.in_ready & ~core.busy):
        m.d.sync += done.eq(0)
    flags = {Status.BUSY: core.busy, Status.READY: core.in_ready & ~core.busy,
             Status.PROGRAMMED: programmed, Status.DONE: done, Status.ALARM: core.stuck | alarm}
    word = Signal(len(Status), name="status")
    m.d.comb += [word[f.bit_length() - 1].eq(v) for f, v in flags.items()]
    return word


def health_registers(core, m, arbs) -> tuple[dict, Signal]:
    """The cutoff registers of the arbiters ``arbs`` (built with ``health`` and
    ``thr_override``; a write accepted in cycle k lands at the end of cycle k, reset values
    H = 1, α = 2^-20), the decode of their ``RNG_DEV_THRESHOLD`` writes and their health read
    words. Returns ({ReadReg: [word of layer 0, 1, ...]}, any alarm)."""
    lay = HEALTH_LAYOUT
    n_dev = lay["devices"]
    k = arbs[0].k
    if k > n_dev:
        raise ValueError(f"the health registers hold {n_dev} devices per arbiter "
                         f"(N <= {2 ** n_dev}), not k = {k}")
    for reg, name in zip(CUTOFF_REGS, CUTOFF_PORTS):
        shape = arbs[0].signature.members[name]
        cut = Signal(shape.shape, init=shape.init, name=f"health_{name}")
        with m.If(core.prog_en & core.prog_ready & (core.prog_sel == reg)):
            m.d.sync += cut.eq(core.prog_data)
        m.d.comb += [getattr(arb, name).eq(cut) for arb in arbs]
    # per-device thresholds: the arbiters take seed / seed_dev from the write stage, so the
    # load is registered like every non-cell write (lands at the end of cycle k + 1)
    for i, arb in enumerate(arbs):
        hit = Signal(name=f"thr_load{i}")
        m.d.sync += hit.eq(core.prog_en & core.prog_ready & (core.prog_sel == Reg.RNG_DEV_THRESHOLD)
                           & (core.prog_c == i))
        m.d.comb += arb.thr_load.eq(hit)
    words = {reg: [] for reg in ReadReg if reg.name.startswith("HEALTH_")}
    alarms = []
    for arb in arbs:
        if not k:                         # N = 1: no devices, only the stuck flag
            words[ReadReg.HEALTH_ALARMS].append(Cat(Const(0, lay["stuck"]), arb.stuck))
            for reg in list(words)[1:]:
                words[reg].append(Const(0, 32))
            continue
        alarms.append(arb.dev_alarms.any() | arb.pair_alarms.any())
        words[ReadReg.HEALTH_ALARMS].append(Cat(
            arb.dev_alarms, Const(0, lay["pair"] - 3 * k), arb.pair_alarms[:k - 1],
            Const(0, lay["stuck"] - lay["pair"] - (k - 1)), arb.stuck))
        for t in range(3):
            counts = [arb.dev_counts[3 * d + t] for d in range(k)]
            for half, reg in enumerate((ReadReg.HEALTH_RCT_EVENTS + t,
                                        ReadReg.HEALTH_RCT_EVENTS_HI + t)):
                part = counts[4 * half:4 * half + 4]
                words[ReadReg(reg)].append(Cat(*part) if part else Const(0, 32))
        words[ReadReg.HEALTH_SIDES].append(Cat(arb.bias_sides, Const(0, 16 - 2 * k),
                                               arb.pair_count))
    alarm = Signal(name="health_alarm")
    m.d.comb += alarm.eq(Cat(*alarms).any() if alarms else 0)
    return words, alarm


def read_port(core, m, counters: dict, arbs, extra: dict | None = None) -> None:
    """Drive ``core``'s ``rd_data`` / ``rd_valid`` from ``rd_en`` / ``rd_sel`` / ``rd_index``:
    the status word, the counters (``counters``: name in
    :data:`~spinbayes.rtl.regs.COUNTERS` -> Signal) and the health registers of the
    per-layer arbiters ``arbs`` (:func:`health_registers`) and the words ``extra``
    (ReadReg -> value, e.g. PASSES_RUN)."""
    if set(counters) != set(COUNTERS):
        raise ValueError(f"counters must be exactly {COUNTERS}, not {tuple(counters)}")
    health, alarm = health_registers(core, m, arbs)
    words = {ReadReg.STATUS: status_word(core, m, alarm)}
    words.update({reg: counters[name] for reg, name in zip(COUNTER_REGS, COUNTERS)})
    words.update(extra or {})
    m.d.sync += core.rd_valid.eq(core.rd_en)
    with m.If(core.rd_en):
        with m.Switch(core.rd_sel):
            for reg, value in words.items():
                with m.Case(reg):
                    m.d.sync += core.rd_data.eq(value)
            for reg, per_layer in health.items():
                with m.Case(reg):
                    with m.Switch(core.rd_index):
                        for i, value in enumerate(per_layer):
                            with m.Case(i):
                                m.d.sync += core.rd_data.eq(value)
                        with m.Default():
                            m.d.sync += core.rd_data.eq(READ_UNKNOWN)
            with m.Default():
                m.d.sync += core.rd_data.eq(READ_UNKNOWN)
