"""Helpers shared by every cocotb testbench (sim/tb_*.py); no per-block boilerplate.

Timing convention (checked on Icarus and Verilator): a testbench writes a cycle's inputs,
then ``await RisingEdge(dut.clk)``; signals read right after that edge still hold the values
of the cycle that just ended (registered outputs from before the edge, combinational outputs
of the inputs that were written). So one ``await`` per cycle both ends the cycle and
observes it, like Amaranth's ``ctx.get`` before ``ctx.tick``. :class:`Clocked` wraps that.

Contents:

* :func:`tb_env` / :class:`TbReport`: read ``SPINBAYES_PARAMS`` and ``SPINBAYES_TB_CONFIG``,
  write ``SPINBAYES_TB_RESULT`` (atomically, merged over every cocotb test of the module).
* :func:`start` : clock (10 ns) and synchronous reset of Amaranth's ``clk`` / ``rst``.
* :class:`Stalls` : seeded idle gaps (back-pressure / bubbles) with a configured probability.
* :class:`StreamDriver` / :class:`StreamMonitor` : valid/ready streams with optional stalls.
* :class:`Scoreboard` : expected vs observed, transaction by transaction, with context.
* :class:`CoverGroup` / :func:`coverage_report` : cocotb-coverage points and crosses, and the
  coverage database as a JSON-able dict.
* :func:`pack` / :func:`unpack` : flat bit vectors of Amaranth's array ports.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from spinbayes.jsonable import to_jsonable

__all__ = ["KINDS", "Clocked", "CoverGroup", "Scoreboard", "Stalls", "StreamDriver",
           "Setup", "StreamMonitor", "TbReport", "address", "assert_coverage", "config_get",
           "coverage_report", "finish", "gap_bin", "pack", "start", "tb_env", "tb_settings",
           "unpack"]

PARAMS_ENV, CONFIG_ENV, RESULT_ENV = ("SPINBAYES_PARAMS", "SPINBAYES_TB_CONFIG",
                                      "SPINBAYES_TB_RESULT")
CLOCK_NS = 10


# --- environment and result ------------------------------------------------------------------

def tb_env() -> tuple[dict, dict]:
    """(params, config): the design's ``RtlParams.describe()`` and the tb's own settings.

    Raises RuntimeError naming the variable when the runner did not set it."""
    out = []
    for var in (PARAMS_ENV, CONFIG_ENV):
        path = os.environ.get(var)
        if not path:
            raise RuntimeError(f"{var} is not set: run testbenches through "
                               "spinbayes.sim.runner.run_cocotb")
        out.append(json.loads(Path(path).read_text()))
    return out[0], out[1]


def config_get(config: dict, name: str, default=None, *, kind=int, lo=None, hi=None):
    """``config[name]`` (or ``default``) checked for type and range; ValueError names it."""
    v = config.get(name, default)
    if v is None:
        raise ValueError(f"tb config needs {name!r}")
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ValueError(f"tb config {name!r} must be an integer, not {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ValueError(f"tb config {name!r} must be a number, not {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"tb config {name!r} must lie in {lo}..{hi}, not {v!r}")
    return kind(v)


def tb_settings(config: dict) -> dict:
    """The settings every block tb reads: ``transactions`` (>= 1), ``seed``, ``stall_prob``
    (idle-gap probability, default 0.2) and ``coverage_goal`` (percent, default 100)."""
    return {"transactions": config_get(config, "transactions", lo=1),
            "seed": config_get(config, "seed", 0, lo=0),
            "stall_prob": config_get(config, "stall_prob", 0.2, kind=float, lo=0, hi=0.95),
            "coverage_goal": config_get(config, "coverage_goal", 100.0, kind=float, lo=0,
                                        hi=100)}


class Setup:
    """What a block tb starts from: ``params``, ``config``, ``s`` (:func:`tb_settings`),
    ``rng`` (numpy, seeded with s["seed"]) and ``stalls`` (:class:`Stalls` at
    s["stall_prob"], seeded with s["seed"] + 1)."""

    def __init__(self):
        self.params, self.config = tb_env()
        self.s = tb_settings(self.config)
        self.rng = np.random.default_rng(self.s["seed"])
        self.stalls = Stalls(self.s["stall_prob"], self.s["seed"] + 1)

    def __iter__(self):
        """params, s, rng, stalls: ``params, s, rng, stalls = Setup()``."""
        return iter((self.params, self.s, self.rng, self.stalls))


def finish(report: TbReport, block: str, sb: Scoreboard, goal: float, **extra) -> dict:
    """Write the block's result (scoreboard summary, coverage of ``block.*``, ``extra``),
    then assert 0 mismatches and the coverage goal. Returns the coverage report."""
    cov = coverage_report(block)
    report[block] = {**sb.summary(), "coverage": cov, "coverage_goal": goal, **extra}
    report.write()
    sb.assert_ok()
    assert_coverage(cov, goal, block)
    return cov


class TbReport:
    """The tb's JSON result: ``report[key] = value`` then :meth:`write` (atomic rename).

    Several cocotb tests of one module share the file: :meth:`write` merges into what is
    already there, so each test may write its own keys."""

    def __init__(self):
        path = os.environ.get(RESULT_ENV)
        if not path:
            raise RuntimeError(f"{RESULT_ENV} is not set: run testbenches through "
                               "spinbayes.sim.runner.run_cocotb")
        self.path = Path(path)
        self.data: dict = {}

    def __setitem__(self, key, value):
        self.data[key] = value

    def write(self):
        merged = json.loads(self.path.read_text()) if self.path.exists() else {}
        merged.update(self.data)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        with os.fdopen(fd, "w") as f:
            json.dump(merged, f, indent=2, sort_keys=True, default=to_jsonable)
        os.replace(tmp, self.path)


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


# --- scoreboard ------------------------------------------------------------------------------

class Scoreboard:
    """Compares observed with expected outputs, transaction by transaction.

    ``sb.check(name, expected, observed, **context)`` compares one output; a mismatch is
    counted and, for the first ``detail`` mismatches, recorded with the transaction number
    and the context. ``sb.transaction()`` closes a transaction (counted in ``transactions``).
    :meth:`summary` is the JSON-able record; ``sb.ok`` is True when nothing mismatched."""

    def __init__(self, name: str, detail: int = 5):
        self.name, self.detail = name, detail
        self.transactions = self.checks = self.mismatches = 0
        self.first: list[dict] = []
        self.by_output: dict[str, int] = {}

    def check(self, output: str, expected, observed, **context) -> bool:
        self.checks += 1
        if _equal(expected, observed):
            return True
        self.mismatches += 1
        self.by_output[output] = self.by_output.get(output, 0) + 1
        if len(self.first) < self.detail:
            self.first.append({"transaction": self.transactions, "output": output,
                               "expected": _plain(expected), "observed": _plain(observed),
                               "context": {k: _plain(v) for k, v in context.items()}})
        return False

    def transaction(self):
        self.transactions += 1

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def summary(self) -> dict:
        return {"transactions": self.transactions, "checks": self.checks,
                "mismatches": self.mismatches, "mismatches_by_output": self.by_output,
                "first_mismatches": self.first}

    def assert_ok(self):
        assert self.mismatches == 0, (
            f"{self.name}: {self.mismatches} mismatches in {self.transactions} transactions; "
            f"first: {json.dumps(self.first, default=str)[:2000]}")


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


# --- functional coverage (cocotb-coverage) -----------------------------------------------------

class CoverGroup:
    """Cover points and crosses sampled together, over :mod:`cocotb_coverage.coverage`.

    ``points``: name -> list of bins (hashable labels, matched by equality; the tb computes
    the label, e.g. with :func:`gap_bin`). ``crosses``: name -> tuple of point names.
    Items are registered in cocotb-coverage's ``coverage_db`` as ``<prefix>.<name>``.
    ``group.sample(name=value, ...)`` samples every point given a value (a point without a
    value is not sampled); a cross is sampled when all its points are."""

    def __init__(self, prefix: str, points: dict, crosses: dict | None = None):
        from cocotb_coverage import coverage as cc

        self.prefix = prefix
        self.names = list(points)
        self._missing = object()
        crosses = crosses or {}
        for name, items in crosses.items():
            bad = [i for i in items if i not in points]
            if bad:
                raise ValueError(f"cross {name!r} names unknown points {bad}")

        def sample(values):
            return None

        pts = []
        for name, bins in points.items():        # points first: a cross looks them up
            if len(set(bins)) != len(bins):
                raise ValueError(f"cover point {name!r} has duplicate bins")
            pts.append(cc.CoverPoint(f"{prefix}.{name}", xf=self._getter(name),
                                     bins=list(bins)))
        f = sample
        for name, items in crosses.items():      # crosses innermost: run after the points
            f = cc.CoverCross(f"{prefix}.{name}", items=[f"{prefix}.{i}" for i in items])(f)
        for pt in pts:
            f = pt(f)
        self._sample = f

    def _getter(self, name):
        missing = self._missing

        def xf(values):
            return values.get(name, missing)
        return xf

    def sample(self, **values):
        unknown = set(values) - set(self.names)
        if unknown:
            raise ValueError(f"{self.prefix}: no cover point named {sorted(unknown)}")
        self._sample(values)


def coverage_report(prefix: str) -> dict:
    """The coverage of every item under ``prefix`` as a JSON-able dict:
    ``{"percent": total %, "bins": n, "covered": n, "points": {name: {"bins", "covered",
    "percent", "hits": {bin: count}, "missing": [bins never hit]}}}``."""
    from cocotb_coverage.coverage import coverage_db

    points = {}
    for name, item in coverage_db.items():
        if not name.startswith(prefix + ".") or not hasattr(item, "detailed_coverage"):
            continue
        if not hasattr(item, "_hits"):
            continue
        hits = {_label(b): int(n) for b, n in item.detailed_coverage.items()}
        points[name[len(prefix) + 1:]] = {
            "bins": int(item.size), "covered": int(item.coverage),
            "percent": round(100.0 * item.coverage / item.size, 3) if item.size else 100.0,
            "hits": hits, "missing": [b for b, n in hits.items() if n == 0]}
    bins = sum(p["bins"] for p in points.values())
    covered = sum(p["covered"] for p in points.values())
    return {"percent": round(100.0 * covered / bins, 3) if bins else 0.0, "bins": bins,
            "covered": covered, "points": points}


def _label(b) -> str:
    return "x".join(map(str, b)) if isinstance(b, tuple) else str(b)


def assert_coverage(report: dict, goal: float, name: str):
    """AssertionError naming the missing bins when ``report["percent"]`` < ``goal``."""
    if report["percent"] < goal:
        missing = {k: v["missing"][:10] for k, v in report["points"].items() if v["missing"]}
        raise AssertionError(f"{name}: coverage {report['percent']} % < goal {goal} %; "
                             f"missing bins: {missing}")


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
