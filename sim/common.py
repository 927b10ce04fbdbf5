"""Helpers shared by every cocotb testbench (sim/tb_*.py); no per-block boilerplate.

This module holds the testbench's environment, settings and result, and re-exports the helpers
of :mod:`.drivers` and :mod:`.checks`, so a testbench imports everything from here:

* :func:`tb_env` / :func:`tb_settings` / :class:`Setup` / :class:`TbReport` / :func:`finish`:
  read ``SPINBAYES_PARAMS`` and ``SPINBAYES_TB_CONFIG``, write ``SPINBAYES_TB_RESULT``
  (atomically, merged over every cocotb test of the module).
* :func:`start` (drivers): clock (10 ns) and synchronous reset of Amaranth's ``clk`` / ``rst``;
  :class:`Clocked` steps cycles (the timing convention is in :mod:`.drivers`).
* :class:`Stalls` (drivers): seeded idle gaps (back-pressure / bubbles) with a configured
  probability.
* :class:`StreamDriver` / :class:`StreamMonitor` (drivers): valid/ready streams with optional
  stalls.
* :func:`address` / :func:`pack` / :func:`unpack` (drivers): address stimulus, flat bit
  vectors of Amaranth's array ports.
* :class:`Scoreboard` (checks): expected vs observed, transaction by transaction, with context.
* :class:`CoverGroup` / :func:`coverage_report` (checks): cocotb-coverage points and crosses,
  and the coverage database as a JSON-able dict.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from spinbayes.jsonable import to_jsonable

from .checks import CoverGroup, Scoreboard, assert_coverage, coverage_report
from .drivers import (
    KINDS,
    Clocked,
    Stalls,
    StreamDriver,
    StreamMonitor,
    address,
    gap_bin,
    pack,
    start,
    unpack,
)

__all__ = ["KINDS", "Clocked", "CoverGroup", "Scoreboard", "Stalls", "StreamDriver",
           "Setup", "StreamMonitor", "TbReport", "address", "assert_coverage", "config_get",
           "coverage_report", "finish", "gap_bin", "pack", "start", "tb_env", "tb_settings",
           "unpack"]

PARAMS_ENV, CONFIG_ENV, RESULT_ENV = ("SPINBAYES_PARAMS", "SPINBAYES_TB_CONFIG",
                                      "SPINBAYES_TB_RESULT")


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
