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

from ..rtl.regs import OutKind
from .compiler import Program, Write

__all__ = ["AmaranthBus", "CocotbBus", "CoreDriver", "ImageResult"]


class AmaranthBus:
    """Bus adapter for an Amaranth simulator testbench context."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    def set(self, port: str, value) -> None:
        self.ctx.set(getattr(self.dut, port), value)

    def get(self, port: str):
        return self.ctx.get(getattr(self.dut, port))

    async def settle(self) -> None:
        """Amaranth settles combinational logic on every ``ctx.set``: nothing to wait for."""

    async def tick(self) -> None:
        await self.ctx.tick()


class CocotbBus:
    """Bus adapter for a cocotb handle of the exported core (``spinbayes_core``).

    ``tick`` waits for the rising edge of ``clk`` and then 1 ps, so that every register
    update of the edge is visible to ``get``; ``settle`` waits 1 ps so that writes made in
    this cycle have been applied and combinational outputs have settled. Array ports
    (``trace_indices``) are returned as one integer; :meth:`get` splits those of a
    :class:`~amaranth.lib.data.ArrayLayout` when ``fields`` names their element width.
    """

    def __init__(self, dut, *, clock: str = "clk",
                 fields: dict[str, tuple[int, int]] | None = None):
        self.dut = dut
        self._clk = getattr(dut, clock)
        #: port -> (element width, count) for ports to be returned as a list of elements
        self.fields = dict(fields or {})
        self._handles: dict = {}

    def _h(self, port: str):
        h = self._handles.get(port)
        if h is None:
            h = self._handles[port] = getattr(self.dut, port)
        return h

    def set(self, port: str, value) -> None:
        self._h(port).value = int(value)

    def get(self, port: str):
        v = self._h(port).value
        if port in self.fields:
            width, count = self.fields[port]
            raw = int(v)
            return [(raw >> (width * i)) & ((1 << width) - 1) for i in range(count)]
        return v.to_signed() if port in ("out_data", "vfy_level") else int(v)

    async def settle(self) -> None:
        from cocotb.triggers import Timer
        await Timer(1, unit="ps")

    async def tick(self) -> None:
        from cocotb.triggers import RisingEdge, Timer
        await RisingEdge(self._clk)
        await Timer(1, unit="ps")


@dataclass
class ImageResult:
    """Per-pass outputs y (T, C), averaged (C,), class, choices (L, T, n), cycles."""

    per_pass: np.ndarray
    averaged: np.ndarray
    prediction: int
    choices: np.ndarray
    cycles: int
    counters: dict = field(default_factory=dict)


COUNTERS = ("cnt_xbar_reads", "cnt_rng_draws", "cnt_aac_ops", "cnt_cmp_ops", "cnt_avg_ops",
            "cnt_cycles")


class CoreDriver:
    """Program the core and run images through it."""

    def __init__(self, bus, *, max_wait: int = 1_000_000):
        self.bus, self.max_wait = bus, max_wait

    async def write(self, w: Write) -> None:
        b = self.bus
        b.set("prog_sel", int(w.sel))
        b.set("prog_a", w.a)
        b.set("prog_b", w.b)
        b.set("prog_c", w.c)
        b.set("prog_data", w.data)
        b.set("prog_en", 1)
        await b.settle()
        for _ in range(self.max_wait):
            ready = b.get("prog_ready")
            await b.tick()
            if ready:
                break
        else:
            raise TimeoutError(f"programming port never ready for {w}")
        b.set("prog_en", 0)

    async def program(self, program: Program, *, cells: bool = True) -> None:
        """Write the descriptor table (and, with ``cells``, every non-zero crossbar cell)."""
        for w in (program.cell_writes() if cells else []) + program.descriptor:
            await self.write(w)

    async def verify_cells(self, program: Program, sample: int | None = None,
                           seed: int = 0) -> list[tuple[int, int, int]]:
        """Read cells back; returns the (k, row, col) that differ. ``sample``: how many."""
        k, r, c = np.indices(program.cells.shape).reshape(3, -1)
        if sample is not None:
            pick = np.random.default_rng(seed).choice(k.size, size=sample, replace=False)
            k, r, c = k[pick], r[pick], c[pick]
        bad = []
        for ki, ri, ci in zip(k.tolist(), r.tolist(), c.tolist()):
            self.bus.set("vfy_k", ki)
            self.bus.set("vfy_row", ri)
            self.bus.set("vfy_col", ci)
            await self.bus.settle()
            await self.bus.tick()
            if self.bus.get("vfy_level") != program.cells[ki, ri, ci]:
                bad.append((ki, ri, ci))
        return bad

    async def infer(self, codes: np.ndarray, program: Program, n_layers: int,
                    n_way: int) -> ImageResult:
        """Stream one image's input codes (rows of layer 0) and collect its results."""
        b = self.bus
        T, C = program.T, program.n_outputs
        per_pass = np.zeros((T, C), dtype=np.int64)
        averaged = np.zeros(C, dtype=np.int64)
        choices = np.zeros((n_layers, T, n_way), dtype=np.int64)
        before = {name: b.get(name) for name in COUNTERS}
        pending = [int(v) for v in codes]
        b.set("out_ready", 1)
        cycles, prediction = 0, None
        while prediction is None:
            if cycles > self.max_wait:
                raise TimeoutError(f"no result after {cycles} cycles")
            b.set("in_valid", int(bool(pending)))
            if pending:
                b.set("in_data", pending[0])
            await b.settle()
            if pending and b.get("in_ready"):
                pending.pop(0)
            if b.get("trace_valid"):
                idx = b.get("trace_indices")
                choices[b.get("trace_layer"), b.get("trace_pass")] = [int(idx[s])
                                                                       for s in range(n_way)]
            if b.get("out_valid"):
                kind, i, value = b.get("out_kind"), b.get("out_index"), b.get("out_data")
                if kind == OutKind.PASS:
                    per_pass[b.get("out_pass"), i] = value
                elif kind == OutKind.AVERAGE:
                    averaged[i] = value
                else:
                    prediction = int(value)
            await b.tick()
            cycles += 1
        b.set("in_valid", 0)
        counters = {name: b.get(name) - before[name] for name in COUNTERS}
        return ImageResult(per_pass, averaged, prediction, choices, cycles, counters)
