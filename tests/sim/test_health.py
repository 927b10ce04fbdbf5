"""cocotb testbench of the RNG health tests (sim/tb_health.py) on Icarus and Verilator.

Design "default" (W = 16, APT window 1024, bias window 4096): a device stuck at 0 and at 1
(by its threshold and by a forced external bit) is flagged by the RCT at sample 21 from
reset, the sample of the golden twin, and within 21 samples of a fault's onset after a
healthy stretch. Design "small" (windows 32 and 48, 4-bit counters): random segments of
healthy, biased and stuck sources, every cycle checked against the twin, 100 % coverage.
Icarus runs in the default run; Verilator (a C++ build per design, about a minute each) with
``-m slow``.
"""

from __future__ import annotations

import pytest
from amaranth.back import verilog

from spinbayes.rtl.health import MonitoredRng
from spinbayes.sim.runner import SimulatorMissing, run_cocotb

#: Per design: (MonitoredRng parameters, cocotb testcase, tb config).
DESIGNS = {
    "default": (dict(rng_bits=16, apt_window=1024, bias_window=4096, rct_bits=8,
                     count_bits=16), "test_stuck_device", {"stuck_samples": 2300}),
    "small": (dict(rng_bits=16, apt_window=32, bias_window=48, rct_bits=5, count_bits=4),
              "test_random", {"transactions": 3000, "stall_prob": 0.2, "seed": 1}),
}
_verilog: dict[str, str] = {}


def run(design: str, sim: str) -> dict:
    params, testcase, config = DESIGNS[design]
    if design not in _verilog:
        _verilog[design] = verilog.convert(MonitoredRng(**params), name="spinbayes_health",
                                           emit_src=False)
    try:
        res = run_cocotb(verilog=_verilog[design], toplevel="spinbayes_health",
                         test_module="tb_health", params=params,
                         config={"coverage_goal": 100.0, **config}, simulator=sim,
                         testcase=testcase)
    except SimulatorMissing as e:
        pytest.skip(str(e))
    return res.data


def check_stuck(data: dict):
    r = data["health_stuck"]
    assert r["mismatches"] == 0 and r["transactions"] > 5000
    assert r["cutoffs"] == {"rct": 21, "apt": 589, "bias_low": 1891, "bias_high": 2205}
    for kind in ("stuck0", "stuck1", "ext0", "ext1"):
        assert r["from_reset"][kind]["rct"] == 21 and r["from_reset"][kind]["rct_alarm"] == 1
    for kind in ("stuck0", "stuck1"):
        assert (r["from_reset"][kind]["apt"], r["from_reset"][kind]["bias"]) == (589, 2206)
    for kind, a in r["after_healthy"].items():
        assert a["samples_after_onset"] == 21 - a["equal_bits_before_onset"], kind


def check_random(data: dict):
    r = data["health"]
    assert r["mismatches"] == 0 and r["transactions"] >= 3000
    assert r["coverage"]["percent"] == 100.0 and r["coverage"]["bins"] == 21


def test_icarus_stuck_device():
    check_stuck(run("default", "icarus"))


def test_icarus_random():
    check_random(run("small", "icarus"))


@pytest.mark.slow
def test_verilator_stuck_device():
    check_stuck(run("default", "verilator"))


@pytest.mark.slow
def test_verilator_random():
    check_random(run("small", "verilator"))
