"""Host driver of the SpinBayes core: programs it, streams images, collects results.

The driver talks to the core through a *bus*: anything with ``set(port, value)``,
``get(port)`` and ``async tick()``, where ``port`` is a port name of
:class:`~spinbayes.rtl.network.SpinBayesCore`. :class:`AmaranthBus` adapts Amaranth's
simulator; a cocotb adapter (issue 6) only has to provide the same three methods, so the
same driver runs unchanged against both. Cycle counts are measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rtl.regs import OutKind
from .compiler import Program, Write

__all__ = ["AmaranthBus", "CoreDriver", "ImageResult"]


class AmaranthBus:
    """Bus adapter for an Amaranth simulator testbench context."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    def set(self, port: str, value) -> None:
        self.ctx.set(getattr(self.dut, port), value)

    def get(self, port: str):
        return self.ctx.get(getattr(self.dut, port))

    async def tick(self) -> None:
        await self.ctx.tick()


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
            if pending:
                b.set("in_valid", 1)
                b.set("in_data", pending[0])
                if b.get("in_ready"):
                    pending.pop(0)
            else:
                b.set("in_valid", 0)
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
