"""Host driver of the SpinBayes core: programs it, streams images, collects results.

The driver talks to the core through a *bus*: anything with ``set(port, value)``,
``get(port)``, ``async settle()`` and ``async tick()``, where ``port`` is a port name of
:class:`~spinbayes.rtl.network.SpinBayesCore`. :class:`AmaranthBus` adapts Amaranth's
simulator, :class:`CocotbBus` a cocotb handle of the exported Verilog, so the same driver
runs unchanged against both. Cycle counts are measured, not assumed.

Timing contract of a bus: after ``await tick()`` the clock edge has happened and ``get``
returns the settled values after it. ``set`` drives an input for the coming edge. A ``get``
of a combinational output that depends on inputs ``set`` in the same cycle must be preceded
by ``await settle()`` (a no-op in Amaranth, whose ``ctx.set`` settles at once; in cocotb,
writes are applied at the end of the time step, so ``settle`` waits 1 ps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rtl.regs import (
    COUNTER_REGS,
    COUNTERS,
    HEALTH_REGS,
    PROG_ORDER,
    READ_FIELDS,
    OutKind,
    ReadReg,
    Reg,
    Status,
)
from .alarms import alarm_error
from .bus import AmaranthBus, CocotbBus
from .compiler import Program, Write

__all__ = ["ALARM_POLL", "AmaranthBus", "CellFault", "CocotbBus", "CoreDriver", "ImageResult",
           "ProgramReport"]

#: Cycles between two STATUS reads of :meth:`CoreDriver.infer` (its bound on the delay from
#: ALARM to the named error, with one cycle of read latency).
ALARM_POLL = 64


@dataclass
class ImageResult:
    """Per-pass outputs y (T, C), averaged (C,), class, choices (L, T, n), cycles; with
    ``trace_layers``, ``activations``: the activation trace's beats in order, (layer, pass,
    position, codes of every channel)."""

    per_pass: np.ndarray
    averaged: np.ndarray
    prediction: int
    choices: np.ndarray
    cycles: int
    counters: dict = field(default_factory=dict)
    activations: list = field(default_factory=list)
    #: passes the image ran (ReadReg.PASSES_RUN; T unless an adaptive rule stopped it)
    passes: int = 0


@dataclass(frozen=True)
class CellFault:
    """A crossbar cell that never read back its wanted level."""

    k: int
    row: int
    col: int
    wanted: int
    read: int


@dataclass
class ProgramReport:
    """What :meth:`CoreDriver.program_verified` did.

    cell_writes: XBAR_CELL writes issued (first pass and retries); descriptor_writes: the
    other register writes; read_backs: cells read through the vfy port; rounds: read-back
    rounds (1 + the retry rounds that were needed); retried: cells written again at least
    once; failed: cells still wrong after ``retries`` re-writes; cycles: clock cycles the
    driver waited; seconds: wall-clock time.
    """

    cell_writes: int = 0
    descriptor_writes: int = 0
    read_backs: int = 0
    rounds: int = 0
    retried: list[tuple[int, int, int]] = field(default_factory=list)
    failed: list[CellFault] = field(default_factory=list)
    cycles: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (f"{self.cell_writes} cell writes, {self.descriptor_writes} descriptor writes, "
                f"{self.read_backs} read-backs in {self.rounds} round(s), "
                f"{len(self.retried)} cell(s) retried, {len(self.failed)} never verified; "
                f"{self.cycles} cycles, {self.seconds:.2f} s")
        for f in self.failed[:10]:
            text += (f"\n  crossbar {f.k} row {f.row} col {f.col}: wanted {f.wanted}, "
                     f"read {f.read}")
        if len(self.failed) > 10:
            text += f"\n  ... and {len(self.failed) - 10} more"
        return text


class CoreDriver:
    """Program the core and run images through it.

    ``max_wait`` bounds every wait in cycles (a write's ``prog_ready``, an image's class
    beat: ``TimeoutError``). During :meth:`infer` the driver reads ``STATUS`` every
    ``alarm_poll`` cycles and once after the image: an ALARM raises the named
    :class:`~spinbayes.firmware.alarms.CoreAlarmError` (``RngHealthError`` or
    ``ArbiterStuckError``, naming layer, device and test from the health registers) at most
    ``alarm_poll`` + 1 cycles after ALARM rises, instead of waiting for ``max_wait``."""

    def __init__(self, bus, *, max_wait: int = 1_000_000, alarm_poll: int = ALARM_POLL):
        for name, v in (("max_wait", max_wait), ("alarm_poll", alarm_poll)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.bus, self.max_wait, self.alarm_poll = bus, max_wait, alarm_poll
        #: clock cycles waited by write / program / read-back (not by ``infer``)
        self.cycles = 0

    async def _tick(self) -> None:
        await self.bus.tick()
        self.cycles += 1

    async def write(self, w: Write) -> None:
        """One register write: present it with ``prog_en``, hold until ``prog_ready``."""
        await self.write_all([w])

    async def write_all(self, writes) -> int:
        """Stream writes back to back, one per cycle while ``prog_ready`` stays high;
        ``prog_en`` stays asserted between them and only changed fields are driven.
        Returns the number of writes."""
        b = self.bus
        ports = [(f"prog_{name}", name) for name in PROG_ORDER]
        last = dict.fromkeys(PROG_ORDER)
        n = 0
        try:
            for w in writes:
                for port, name in ports:
                    v = int(getattr(w, name))
                    if v != last[name]:
                        b.set(port, v)
                        last[name] = v
                if n == 0:
                    b.set("prog_en", 1)
                await b.settle()
                for _ in range(self.max_wait):
                    ready = b.get("prog_ready")
                    await self._tick()
                    if ready:
                        break
                else:
                    raise TimeoutError(f"programming port never ready for {w}")
                n += 1
        finally:
            b.set("prog_en", 0)
        return n

    async def program(self, program: Program, *, cells: bool = True) -> None:
        """Write the descriptor table (and, with ``cells``, every non-zero crossbar cell),
        without read-back; :meth:`program_verified` verifies and retries."""
        await self.write_all((program.cell_writes() if cells else []) + program.descriptor)

    async def read_regs(self, regs, index: int = 0) -> list[int]:
        """Registers ``regs`` (:class:`~spinbayes.rtl.regs.ReadReg`, or any select that fits
        ``rd_sel``) through the read port, one per cycle: the port has one cycle of latency,
        so the value of a select presented before a clock edge is read after it, while the
        next select is already being presented (n registers take n cycles)."""
        b, widths, regs = self.bus, dict(READ_FIELDS), list(regs)
        for name, v in (("index", index), *(("sel", r) for r in regs)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2 ** widths[name]:
                raise ValueError(f"read {name} must be an integer in 0..{2 ** widths[name] - 1}"
                                 f" (rd_{name} has {widths[name]} bits), not {v!r}")
        out = []
        b.set("rd_index", index)
        b.set("rd_en", 1)
        try:
            for r in regs:
                b.set("rd_sel", int(r))
                await self._tick()
                if not b.get("rd_valid"):
                    raise RuntimeError(f"rd_valid low one cycle after a read of {r!r}")
                out.append(int(b.get("rd_data")))
        finally:
            b.set("rd_en", 0)
        return out

    async def read(self, reg, index: int = 0) -> int:
        """One register through the read port (:meth:`read_regs`), e.g.
        ``await drv.read(ReadReg.CNT_CYCLES)``."""
        return (await self.read_regs([reg], index))[0]

    async def status(self) -> Status:
        """The status flags (``ReadReg.STATUS``), e.g. ``Status.DONE in await drv.status()``."""
        return Status(await self.read(ReadReg.STATUS))

    async def health(self, n_layers: int) -> dict[int, dict[ReadReg, int]]:
        """The health registers (``ReadReg.HEALTH_*``) of layers 0 .. n_layers - 1."""
        return {layer: dict(zip(HEALTH_REGS, await self.read_regs(HEALTH_REGS, layer)))
                for layer in range(n_layers)}

    async def check_alarm(self, n_layers: int, cycles: int | None = None) -> None:
        """Raise :func:`~spinbayes.firmware.alarms.alarm_error` of the first ``n_layers``
        layers' health registers if ``STATUS`` shows ALARM (sticky until reset)."""
        if Status.ALARM in await self.status():
            raise alarm_error(await self.health(n_layers), cycles)

    async def counters(self) -> dict[str, int]:
        """The six activity counters by name (:data:`~spinbayes.rtl.regs.COUNTERS`), read in
        six cycles; a consistent set while the core is idle."""
        return dict(zip(COUNTERS, await self.read_regs(COUNTER_REGS)))

    async def read_cells(self, k, row, col) -> np.ndarray:
        """Levels of cells (k[i], row[i], col[i]) through the vfy port, one per cycle.

        The port has one cycle of latency: the address presented before a clock edge is
        read after it, while the next address is already being presented, so n cells take
        n cycles."""
        b = self.bus
        out = np.empty(len(k), dtype=np.int64)
        lk = lr = lc = None
        for i, (ki, ri, ci) in enumerate(zip(k, row, col)):
            if ki != lk:
                b.set("vfy_k", ki)
                lk = ki
            if ri != lr:
                b.set("vfy_row", ri)
                lr = ri
            if ci != lc:
                b.set("vfy_col", ci)
                lc = ci
            await self._tick()
            out[i] = b.get("vfy_level")
        return out

    async def verify_cells(self, program: Program, sample: int | None = None,
                           seed: int = 0) -> list[tuple[int, int, int]]:
        """Read cells back; returns the (k, row, col) that differ. ``sample``: how many."""
        k, r, c = np.indices(program.cells.shape).reshape(3, -1)
        if sample is not None:
            pick = np.sort(np.random.default_rng(seed).choice(k.size, size=sample,
                                                              replace=False))
            k, r, c = k[pick], r[pick], c[pick]
        got = await self.read_cells(k.tolist(), r.tolist(), c.tolist())
        bad = np.nonzero(got != program.cells[k, r, c])[0]
        return [(int(k[i]), int(r[i]), int(c[i])) for i in bad]

    async def program_verified(self, program: Program, retries: int = 3, *,
                               skip_zeros: bool = True, descriptor: bool = True
                               ) -> ProgramReport:
        """Program every crossbar through the write port, verify by read-back, retry.

        1. Write the cells through ``prog_sel = Reg.XBAR_CELL`` (the write decoder). With
           ``skip_zeros`` only non-zero levels are written (a reset array holds zeros; the
           read-back below checks that assumption for every cell).
        2. Read every cell of every crossbar back through the vfy port and compare.
        3. Re-write the cells that differ and read them back again, at most ``retries``
           times; cells still wrong are reported in ``failed`` with the level read.
        4. Write the descriptor table (with ``descriptor``), also when cells failed: the
           report says whether the core may be used.
        """
        import time

        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        t0, c0 = time.perf_counter(), self.cycles
        cells = np.asarray(program.cells)
        rep = ProgramReport()
        rep.cell_writes += await self.write_all(program.cell_writes(nonzero_only=skip_zeros))
        k, r, c = (a.tolist() for a in np.indices(cells.shape).reshape(3, -1))
        retried: set = set()
        for attempt in range(retries + 1):
            got = await self.read_cells(k, r, c)
            rep.read_backs += len(k)
            rep.rounds += 1
            bad = np.nonzero(got != cells[k, r, c])[0]
            k, r, c, got = ([a[i] for i in bad] for a in (k, r, c, got.tolist()))
            if not k or attempt == retries:
                break
            retried.update(zip(k, r, c))
            rep.cell_writes += await self.write_all(
                Write(Reg.XBAR_CELL, ri, ci, ki, int(cells[ki, ri, ci]))
                for ki, ri, ci in zip(k, r, c))
        rep.failed = [CellFault(ki, ri, ci, int(cells[ki, ri, ci]), int(gi))
                      for ki, ri, ci, gi in zip(k, r, c, got)]
        rep.retried = sorted(retried)
        if descriptor:
            rep.descriptor_writes = await self.write_all(program.descriptor)
        rep.cycles, rep.seconds = self.cycles - c0, time.perf_counter() - t0
        return rep

    async def infer(self, codes: np.ndarray, program: Program, n_layers: int,
                    n_way: int, *, in_gap: float = 0.0, out_stall: float = 0.0,
                    rng=None, trace_layers: bool = False) -> ImageResult:
        """Stream one image's input codes (layer 0's input tensor in torch's flatten order)
        and collect its results; with ``trace_layers`` also every beat of the core's
        activation trace (``act_*``: each hidden layer's output vectors).

        Back-pressure (optional): before each new input beat, ``in_valid`` stays low for a
        cycle with probability ``in_gap`` (a beat once offered is held until accepted), and
        ``out_ready`` is low in a cycle with probability ``out_stall``. ``rng`` is a
        ``numpy.random.Generator`` (default: ``default_rng(0)`` when a probability is > 0).
        """
        for name, v in (("in_gap", in_gap), ("out_stall", out_stall)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), not {v!r}")
        if rng is None and (in_gap or out_stall):
            rng = np.random.default_rng(0)
        b = self.bus
        T, C = program.T, program.n_outputs
        per_pass = np.zeros((T, C), dtype=np.int64)
        averaged = np.zeros(C, dtype=np.int64)
        choices = np.zeros((n_layers, T, n_way), dtype=np.int64)
        before = await self.counters()
        pending = [int(v) for v in codes]
        offered = False                     # in_valid was high and the beat not yet taken
        b.set("out_ready", 1)
        cycles, prediction, acts = 0, None, []
        while prediction is None:
            if cycles > self.max_wait:
                raise TimeoutError(f"no result after {cycles} cycles")
            poll = cycles % self.alarm_poll == 0     # STATUS read in this cycle
            if poll:
                b.set("rd_index", 0)
                b.set("rd_sel", int(ReadReg.STATUS))
                b.set("rd_en", 1)
            valid = bool(pending) and (offered or not (in_gap and rng.random() < in_gap))
            ready = not (out_stall and rng.random() < out_stall)
            b.set("in_valid", int(valid))
            if out_stall:
                b.set("out_ready", int(ready))
            if valid:
                b.set("in_data", pending[0])
            await b.settle()
            offered = valid
            if valid and b.get("in_ready"):
                pending.pop(0)
                offered = False
            if trace_layers and b.get("act_valid"):
                acts.append((b.get("act_layer"), b.get("act_pass"), b.get("act_pos"),
                             [int(v) for v in b.get("act_codes")]))
            if b.get("trace_valid"):
                idx = b.get("trace_indices")
                choices[b.get("trace_layer"), b.get("trace_pass")] = [int(idx[s])
                                                                       for s in range(n_way)]
            if ready and b.get("out_valid"):
                kind, i, value = b.get("out_kind"), b.get("out_index"), b.get("out_data")
                if kind == OutKind.PASS:
                    per_pass[b.get("out_pass"), i] = value
                elif kind == OutKind.AVERAGE:
                    averaged[i] = value
                else:
                    prediction = int(value)
            await b.tick()
            cycles += 1
            if poll:
                b.set("rd_en", 0)
                if int(b.get("rd_data")) & Status.ALARM:
                    b.set("in_valid", 0)
                    raise alarm_error(await self.health(n_layers), cycles)
        b.set("in_valid", 0)
        b.set("out_ready", 1)
        await self.check_alarm(n_layers, cycles)
        after = await self.counters()
        counters = {name: (after[name] - before[name]) % 2 ** 32 for name in COUNTERS}
        (passes,) = await self.read_regs([ReadReg.PASSES_RUN])
        return ImageResult(per_pass, averaged, prediction, choices, cycles, counters, acts,
                           passes)
