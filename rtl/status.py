"""The network core's register read path: status flags and activity counters by select.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore`'s elaboration (not a block of its own:
the signals keep their names and places in the core's Verilog). A read presents ``rd_sel``
(:class:`~spinbayes.rtl.regs.ReadReg`) and ``rd_index`` with ``rd_en`` in cycle k; ``rd_data``
holds the register's value as it was in cycle k, with ``rd_valid`` high, in cycle k + 1
(:data:`READ_LATENCY`; one read per cycle, back to back). A select that is not a ``ReadReg``
reads :data:`~spinbayes.rtl.regs.READ_UNKNOWN`. ``rd_data`` keeps its value in cycles without
a read. The counters keep counting while the core is busy: six reads give one consistent set
only while ``busy`` is low (docs/HARDWARE.md, "Register read path").
"""

from __future__ import annotations

from amaranth import Signal

from .regs import COUNTER_REGS, COUNTERS, READ_UNKNOWN, OutKind, ReadReg, Reg, Status

__all__ = ["READ_LATENCY", "read_port", "status_word"]

#: Cycles from a read request (``rd_en``) to its ``rd_data`` / ``rd_valid``.
READ_LATENCY = 1


def status_word(core, m) -> Signal:
    """The :class:`~spinbayes.rtl.regs.Status` word of ``core``, from its ports: BUSY,
    READY (an input beat would start an image), PROGRAMMED (an N_LAYERS write has landed),
    DONE (the class beat was taken, until the next image's first input beat), ALARM."""
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
             Status.PROGRAMMED: programmed, Status.DONE: done, Status.ALARM: core.stuck}
    word = Signal(len(Status), name="status")
    m.d.comb += [word[f.bit_length() - 1].eq(v) for f, v in flags.items()]
    return word


def read_port(core, m, counters: dict) -> None:
    """Drive ``core``'s ``rd_data`` / ``rd_valid`` from ``rd_en`` / ``rd_sel``: the status word
    and the counters (``counters``: name in :data:`~spinbayes.rtl.regs.COUNTERS` -> Signal)."""
    if set(counters) != set(COUNTERS):
        raise ValueError(f"counters must be exactly {COUNTERS}, not {tuple(counters)}")
    words = {ReadReg.STATUS: status_word(core, m)}
    words.update({reg: counters[name] for reg, name in zip(COUNTER_REGS, COUNTERS)})
    m.d.sync += core.rd_valid.eq(core.rd_en)
    with m.If(core.rd_en):
        with m.Switch(core.rd_sel):
            for reg, value in words.items():
                with m.Case(reg):
                    m.d.sync += core.rd_data.eq(value)
            with m.Default():
                m.d.sync += core.rd_data.eq(READ_UNKNOWN)
