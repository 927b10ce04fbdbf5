"""Driving and sampling a DUT from a cocotb testbench: clock and reset, cycle stepping, seeded
stalls, valid/ready stream drivers and monitors, address stimulus and flat bit vectors.

Timing convention (checked on Icarus and Verilator): a testbench writes a cycle's inputs,
then ``await RisingEdge(dut.clk)``; signals read right after that edge still hold the values
of the cycle that just ended (registered outputs from before the edge, combinational outputs
of the inputs that were written). So one ``await`` per cycle both ends the cycle and
observes it, like Amaranth's ``ctx.get`` before ``ctx.tick``. :class:`Clocked` wraps that.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLOCK_NS", "KINDS", "Clocked", "Stalls", "StreamDriver", "StreamMonitor", "address",
           "gap_bin", "pack", "start", "unpack"]

CLOCK_NS = 10

# --- clock, reset, cycles --------------------------------------------------------------------

async def start(dut, reset_cycles: int = 2, **inputs) -> Clocked:
    """Start a 10 ns clock on ``dut.clk``, hold ``dut.rst`` for ``reset_cycles`` cycles with
    ``inputs`` (name=value) driven, release it; returns a :class:`Clocked` for ``dut``."""
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for name, value in inputs.items():
        getattr(dut, name).value = value
    dut.rst.value = 1
    for _ in range(reset_cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    return Clocked(dut)


class Clocked:
    """Cycle stepping: ``await c.cycle()`` ends the current cycle; read the DUT right after it
    to see that cycle's values (see the module docstring). ``c.cycles`` counts them."""

    def __init__(self, dut):
        from cocotb.triggers import RisingEdge
        self.dut = dut
        self._edge = RisingEdge(dut.clk)
        self.cycles = 0
        #: called after every cycle that :meth:`cycle` ends (e.g. ``StreamMonitor.sample``)
        self.hooks: list = []

    async def cycle(self, n: int = 1):
        for _ in range(n):
            await self._edge
            self.cycles += 1
            for hook in self.hooks:
                hook()

    async def skip(self, n: int):
        """End n cycles (n >= 1) with two triggers, no Python in between: a timer to the
        middle of the n-th cycle, then its closing edge. Call right after an edge."""
        from cocotb.triggers import Timer
        if n < 1:
            raise ValueError(f"skip needs n >= 1, not {n!r}")
        await Timer(n * CLOCK_NS - CLOCK_NS // 2, unit="ns")
        await self._edge
        self.cycles += n


# --- stalls and streams ----------------------------------------------------------------------

class Stalls:
    """Seeded idle gaps: :meth:`gap` is the number of idle cycles to insert before the next
    request (0 with probability 1 - ``prob``, else uniform in 1 .. ``max_gap``, so short and
    long gaps both occur); :meth:`stall` is one Bernoulli(``prob``) decision (e.g. drop
    ready). ``prob`` = 0 gives back-to-back traffic."""

    def __init__(self, prob: float, seed: int, max_gap: int = 8):
        if not 0 <= prob < 1:
            raise ValueError(f"stall probability must lie in [0, 1), not {prob!r}")
        self.prob, self.max_gap = float(prob), int(max_gap)
        self.rng = np.random.default_rng(seed)

    def gap(self) -> int:
        if not self.prob or self.rng.random() >= self.prob:
            return 0
        return int(self.rng.integers(1, self.max_gap + 1))

    def stall(self) -> bool:
        return bool(self.prob) and self.rng.random() < self.prob


def gap_bin(n: int) -> str:
    """Coverage label of an idle gap: "0", "1", "2-3", "4+"."""
    return "0" if n == 0 else "1" if n == 1 else "2-3" if n < 4 else "4+"


class StreamDriver:
    """Drives a valid/ready stream: ``await drv.send({"field": value, ...})``.

    ``fields`` maps transaction keys to DUT signals; ``valid`` is the DUT's valid input,
    ``ready`` its ready output (None: always ready). A transfer happens in a cycle with
    valid and ready both high; :meth:`send` holds the data until then (ready sampled in the
    cycle, per the module's timing convention), then drops valid after ``stalls.gap()`` idle
    cycles are inserted *before* the transfer. Returns the cycles the send took, and counts
    ``waits`` (cycles with valid high and ready low) and ``idles``."""

    def __init__(self, clocked: Clocked, valid, fields: dict, ready=None,
                 stalls: Stalls | None = None):
        self.c, self.valid, self.ready, self.fields = clocked, valid, ready, fields
        self.stalls = stalls
        self.waits = self.idles = self.sent = 0
        self.last_gap = 0

    async def send(self, txn: dict) -> int:
        cycles = 0
        self.last_gap = gap = self.stalls.gap() if self.stalls else 0
        if gap:
            self.valid.value = 0
            await self.c.cycle(gap)
            self.idles += gap
            cycles += gap
        for key, sig in self.fields.items():
            sig.value = txn[key]
        self.valid.value = 1
        while True:
            await self.c.cycle()
            cycles += 1
            if self.ready is None or int(self.ready.value):
                break
            self.waits += 1
        self.valid.value = 0
        self.sent += 1
        return cycles


class StreamMonitor:
    """Collects transfers of a valid(/ready) stream: :meth:`sample` right after each cycle
    (``clocked.hooks.append(mon.sample)`` does it for every :meth:`Clocked.cycle`); when
    valid (and ready, if given) were high, the fields' integer values are passed to
    ``callback`` (a dict) and appended to ``items`` if no callback is given."""

    def __init__(self, valid, fields: dict, ready=None, callback=None):
        self.valid, self.ready, self.fields, self.callback = valid, ready, fields, callback
        self.items: list[dict] = []

    def sample(self) -> dict | None:
        if not int(self.valid.value) or (self.ready is not None and not int(self.ready.value)):
            return None
        txn = {k: int(s.value) for k, s in self.fields.items()}
        if self.callback is None:
            self.items.append(txn)
        else:
            self.callback(txn)
        return txn


# --- stimulus -----------------------------------------------------------------------------------

#: Address kinds of an array of n entries on a wider port (coverage labels of :func:`address`).
KINDS = ("first", "last", "inside", "outside")


def address(rng, kind: str, n: int, bits: int) -> int:
    """A random address of ``kind`` (one of :data:`KINDS`) for n entries on a ``bits``-bit
    port: 0, n - 1, uniform inside, or uniform in n .. 2^bits - 1 (outside the array)."""
    if kind == "first":
        return 0
    if kind == "last":
        return n - 1
    if kind == "outside":
        if n >= 1 << bits:
            raise ValueError(f"no address outside {n} entries on a {bits}-bit port")
        return int(rng.integers(n, 1 << bits))
    if kind != "inside":
        raise ValueError(f"address kind must be one of {KINDS}, not {kind!r}")
    return int(rng.integers(0, n))


# --- flat vectors ------------------------------------------------------------------------------

def pack(values, width: int) -> int:
    """Element i of ``values`` (two's complement if negative) at bits [i*width +: width]."""
    mask, out = (1 << width) - 1, 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack(value, width: int, n: int, signed: bool = False) -> list[int]:
    """The n elements of a flat vector (``value`` an int or a cocotb LogicArray)."""
    v = int(value)
    mask, out = (1 << width) - 1, []
    for i in range(n):
        e = (v >> (i * width)) & mask
        if signed and e >> (width - 1):
            e -= 1 << width
        out.append(e)
    return out
