"""Checking a DUT in a cocotb testbench: the scoreboard (expected against observed outputs,
transaction by transaction) and functional coverage over cocotb-coverage (cover groups, the
coverage database as a JSON-able dict, the coverage goal).
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["CoverGroup", "Scoreboard", "assert_coverage", "coverage_report"]


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
