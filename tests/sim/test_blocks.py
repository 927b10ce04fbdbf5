"""cocotb block testbenches (sim/tb_*.py) on Icarus and Verilator, and their reference models
against the golden model.

Each block runs its tb through :func:`spinbayes.sim.runner.run_cocotb` with small
parameters; the tb checks every output against sim/models.py and asserts 0 mismatches and
its coverage goal; here the returned JSON is checked again. The default run uses a few
thousand transactions per block, every block on Icarus and one block
(:data:`VERILATOR_DEFAULT_BLOCK`) on Verilator as well: a Verilator build takes tens of seconds
per block. Without Icarus every block runs on Verilator. ``-m slow`` runs the other blocks
on Verilator, and 10^5 transactions per block on both simulators. Waveforms: set
``SPINBAYES_WAVES=1``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from amaranth.back import verilog

from spinbayes.golden.arbiter import Arbiter as GoldenArbiter
from spinbayes.golden.arbiter import DeviceBank
from spinbayes.golden.hardware import HwLayer, HwOutput
from spinbayes.golden.mtj import EmulatedRng
from spinbayes.rtl.export import build_top
from spinbayes.rtl.params import MAC_LATENCY, RtlParams, divide_cycles
from spinbayes.sim import common, models
from spinbayes.sim.runner import (
    SIMULATORS,
    SimulatorMissing,
    run_cocotb,
    simulator_available,
)

#: Per block: (export top, design parameters, default transactions, extra tb config).
BLOCKS = {
    "decoders": ("decoders", RtlParams(rows_max=8, outputs_max=3, groups_total=3), 3000, {}),
    "rng": ("rng", RtlParams(), 3000, {"stat_bits": 16384}),
    "arbiter": ("arbiter", RtlParams(N=5, n_max=2), 1500,
                {"chi_passes": 2000, "stuck_passes": 400}),
    "crossbar": ("crossbar", RtlParams(rows_max=8, outputs_max=3, groups_total=3), 3000, {}),
    "aac": ("aac", RtlParams(N=3, n_max=2, rows_max=8, outputs_max=3, groups_total=2,
                             A_in=2), 2000, {}),
    "comparator": ("comparator", RtlParams(rows_max=5, outputs_max=3, groups_total=2, A=2,
                                           A_in=2), 2000, {}),
    "averaging": ("averaging", RtlParams(N=2, n_max=1, Q=3, rows_max=3, outputs_max=3,
                                         groups_total=1, A_in=2, T_max=5, scale_bits=5,
                                         offset_bits=6), 1500, {}),
}
SLOW_TRANSACTIONS = 100_000
#: The block the default run also builds on Verilator: one of the cheapest builds, and signed
#: multiply-add, division and argmax, where the simulators' width and sign rules could differ.
VERILATOR_DEFAULT_BLOCK = "averaging"


def _block_sims(block: str) -> list:
    """Icarus, and Verilator in the default run only for VERILATOR_DEFAULT_BLOCK or when
    Icarus is missing (else behind ``slow``)."""
    verilator_default = block == VERILATOR_DEFAULT_BLOCK or not simulator_available("icarus")
    return [pytest.param(block, sim, marks=() if sim == "icarus" or verilator_default
                         else pytest.mark.slow) for sim in SIMULATORS]


_verilog_cache: dict[str, str] = {}


def block_verilog(block: str) -> str:
    top, p, _, _ = BLOCKS[block]
    if block not in _verilog_cache:
        _verilog_cache[block] = verilog.convert(build_top(top, p), name=f"spinbayes_{top}",
                                                emit_src=False)
    return _verilog_cache[block]


def run_block(block: str, sim: str, transactions: int, seed: int = 1) -> tuple[dict, float]:
    top, p, _, extra = BLOCKS[block]
    config = {"transactions": transactions, "seed": seed, "stall_prob": 0.25,
              "coverage_goal": 100.0, **extra}
    t0 = time.perf_counter()
    try:
        res = run_cocotb(verilog=block_verilog(block), toplevel=f"spinbayes_{top}",
                         test_module=f"tb_{block}", params=p.describe(), config=config,
                         simulator=sim, waves=os.environ.get("SPINBAYES_WAVES") == "1")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    wall = time.perf_counter() - t0
    data = res.data
    assert block in data, f"tb_{block} wrote no result for {block}: {sorted(data)}"
    r = data[block]
    assert r["mismatches"] == 0, r["first_mismatches"]
    assert r["transactions"] >= transactions
    assert r["coverage"]["percent"] >= 100.0, r["coverage"]
    assert r["coverage"]["bins"] > 0
    print(f"\n{block} [{sim}]: {r['transactions']} transactions, {r['checks']} checks, "
          f"coverage {r['coverage']['percent']} % of {r['coverage']['bins']} bins, "
          f"{wall:.1f} s")
    return data, wall


@pytest.mark.parametrize(("block", "sim"), [p for b in BLOCKS for p in _block_sims(b)])
def test_block(block, sim):
    data, _ = run_block(block, sim, BLOCKS[block][2])
    if block == "rng":
        st = data["rng_230uA"]
        assert st["bit_exact_with_twin"] and abs(st["p_hat"] - 0.5) <= st["tolerance"]
        assert st["bits"] >= 10_000
    if block == "crossbar":
        prog = data["crossbar_program"]
        assert prog["mismatches"] == 0 and prog["transactions"] == prog["writes"] > 0
    if block == "arbiter":
        assert data["arbiter_chi_square"]["p_value"] > 1e-3
        stuck = data["arbiter_stuck"]
        assert stuck["p_value"] < 1e-6 and stuck["never_chosen"] == [4]
        assert stuck["stuck_at_1_n_way_2"]["dones"] == 0
        assert stuck["stuck_at_1_n_way_2"]["stuck_after_cycles"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("block", list(BLOCKS))
def test_block_slow(block, sim):
    run_block(block, sim, SLOW_TRANSACTIONS, seed=2)


# --- the reference models against the golden model (no simulator) ------------------------------

def test_rng_model_equals_emulated_rng():
    rng = np.random.default_rng(0)
    for W, thr, seed in ((16, 32768, 1), (5, 7, 0xDEADBEEF), (32, 2 ** 31 + 5, 77)):
        m = models.RngModel(W)
        m.edge(1, seed, 0)
        bits = []
        for _ in range(500):
            bits.append(m.bit(thr))
            m.edge(0, 0, 1)
        twin = EmulatedRng(seed, thr, W)
        assert bits == twin.bits(500).tolist() and m.state == twin.state
    m = models.RngModel(16)
    m.edge(1, 0, 1)                           # seed 0 loads as 1, load beats step
    assert m.state == 1
    assert m.bit(0, 1, 1) == 1 and m.bit(2 ** 16, 1, 0) == 0
    assert rng is not None


@pytest.mark.parametrize(("N", "n_way"), [(5, 1), (5, 2), (3, 3), (8, 2), (2, 1)])
def test_arbiter_model_equals_golden_arbiter(N, n_way):
    k, W, thr = (N - 1).bit_length(), 16, 32768
    seeds = [11 + d for d in range(k)]
    m = models.ArbiterModel(N, n_way, W)
    for d, s in enumerate(seeds):
        m.seed_load(d, s)
    gold = GoldenArbiter(N, n_way, DeviceBank([EmulatedRng(s, thr, W) for s in seeds]))
    for _ in range(200):
        before = gold.draws
        expect = gold.choose(1)[0].tolist()
        got = m.select(n_way, thr)
        assert got["indices"] == expect and got["draws"] == gold.draws - before
    assert m.draws == gold.draws and m.rejections == gold.rejections


def test_arbiter_model_clamps_and_flags_stuck():
    m = models.ArbiterModel(5, 2, 16)
    assert m.clamp(0) == 1 and m.clamp(3) == 2
    bits = iter([[1, 0, 0]] + [[1, 1, 1]] * 1000)       # code 4, then only rejections
    r = m.select(2, 0, ext=lambda: next(bits), max_draws=600)
    assert not r["done"] and m.stuck == 1 and r["out_of_range"] == 599


def test_comparator_model_equals_hw_layer():
    rng = np.random.default_rng(3)
    S = rng.integers(-50, 51, size=6)
    theta = np.sort(rng.integers(-60, 61, size=(6, 3)), axis=1)
    sign = rng.integers(0, 2, size=6)
    layer = HwLayer("linear", torch.zeros(1, 6, 1, dtype=torch.long), 1,
                    thresholds=torch.from_numpy(theta), sign=torch.from_numpy(1 - 2 * sign),
                    out_bits=1)
    gold = layer.activate(torch.from_numpy(S)[None])[0].tolist()
    mask = int(sum(int(b) << j for j, b in enumerate(sign)))
    assert models.comparator_act(S.tolist(), theta.tolist(), mask) == gold


def test_averaging_model_equals_hw_output():
    params = RtlParams(outputs_max=4, rows_max=4, groups_total=1, T_max=7)
    rng = np.random.default_rng(4)
    for T in (1, 2, 5, 7):
        m = models.AveragingModel(params)
        S = rng.integers(-300, 301, size=(T, 4))
        M = rng.integers(-100, 101, size=4).tolist()
        B = rng.integers(-1000, 1001, size=4).tolist()
        ys = []
        for t in range(T):
            m.edge(t == 0, 1, S[t].tolist(), M, B, 4)
            edges = 1
            while m.busy:                       # the multiply-adds, one class per cycle
                assert m.y_count == max(0, edges - MAC_LATENCY + 1)
                m.edge(0, 0, None, None, None, 4)
                edges += 1
            assert m.y_count == 4 and edges == MAC_LATENCY + 4
            ys.append(list(m.y))
        out = HwOutput(torch.tensor(ys)[None], 0, torch.zeros(1, 1, T, 1, dtype=torch.long))
        r = m.finish(T, 3)
        used = HwOutput(out.per_pass[..., :3], 0, out.choices)
        assert m.Y == out.total[0].tolist()
        assert r["averaged"] == [*used.averaged[0].tolist(), 0]
        assert r["cls"] == int(used.prediction[0])
        assert r["cycles"] == 3 * divide_cycles(params) + 4


def test_crossbar_and_decoder_models():
    p = RtlParams(rows_max=8, outputs_max=3, groups_total=3)
    m = models.CrossbarModel(p)
    assert m.cycle(w_en=1, w_row=5, w_col=2, w_level=-3)["w_error"] == 0
    assert m.cycle(w_en=1, w_row=12, w_col=0, w_level=4)["w_error"] == 1   # row 12 outside
    m.cycle(v_row=5, v_col=2, rd_en=1, rd_group=1, rd_bits=0b0010)
    out = m.cycle()
    assert out["v_level"] == -3 and out["p_valid"] == 1 and out["p"].tolist()[2] == -3
    assert models.write_decoder(p, 1, 13, 1) == {"group": 3, "lane": 1, "col_sel": 1,
                                                  "we": 0, "error": 1}
    assert models.read_decoder(p, 1, 3)["row_base"] == 12


def test_models_take_rtl_params():
    """The block models read the RtlParams the RTL is built from; a describe() dict (what a
    tb reads from params.json) is refused with a message naming RtlParams.from_describe."""
    p = RtlParams(rows_max=8, outputs_max=3, groups_total=3)
    d = p.describe()
    for make in (models.CrossbarModel, models.AacModel, models.AveragingModel,
                 lambda q: models.read_decoder(q, 1, 0),
                 lambda q: models.write_decoder(q, 1, 0, 0)):
        with pytest.raises(ValueError, match="params must be an RtlParams.*from_describe"):
            make(d)
    assert models.AacModel(RtlParams.from_describe(d)).p == p


# --- helpers ---------------------------------------------------------------------------------

def test_scoreboard_records_mismatches_with_context():
    sb = common.Scoreboard("x", detail=2)
    for i in range(5):
        sb.check("out", i, i if i < 2 else -1, step=i)
        sb.transaction()
    s = sb.summary()
    assert s["mismatches"] == 3 and s["transactions"] == 5 and len(s["first_mismatches"]) == 2
    assert s["first_mismatches"][0] == {"transaction": 2, "output": "out", "expected": 2,
                                        "observed": -1, "context": {"step": 2}}
    with pytest.raises(AssertionError, match="3 mismatches in 5 transactions"):
        sb.assert_ok()


def test_cover_group_report():
    g = common.CoverGroup("unit_cov", {"a": [0, 1, 2], "b": ["x", "y"]},
                          {"axb": ("a", "b")})
    g.sample(a=0, b="x")
    g.sample(a=2, b="x")
    g.sample(a=1)                          # b not sampled: no cross hit
    r = common.coverage_report("unit_cov")
    assert r["points"]["a"]["percent"] == 100.0
    assert r["points"]["b"]["missing"] == ["y"]
    assert r["points"]["axb"]["covered"] == 2 and r["points"]["axb"]["bins"] == 6
    assert r["bins"] == 11 and r["covered"] == 6
    with pytest.raises(AssertionError, match="missing bins"):
        common.assert_coverage(r, 100.0, "unit_cov")
    with pytest.raises(ValueError, match="no cover point named"):
        g.sample(c=1)
    with pytest.raises(ValueError, match="unknown points"):
        common.CoverGroup("unit_cov2", {"a": [0]}, {"bad": ("a", "z")})


def test_settings_and_pack_errors():
    with pytest.raises(ValueError, match="needs 'transactions'"):
        common.tb_settings({})
    with pytest.raises(ValueError, match="'stall_prob' must lie in"):
        common.tb_settings({"transactions": 1, "stall_prob": 1.5})
    with pytest.raises(ValueError, match="'transactions' must be an integer"):
        common.tb_settings({"transactions": "10"})
    with pytest.raises(ValueError, match="stall probability"):
        common.Stalls(1.0, 0)
    assert common.unpack(common.pack([-3, 2, 7], 4), 4, 3, signed=True) == [-3, 2, 7]
    s = common.Stalls(0.5, 1, max_gap=3)
    gaps = [s.gap() for _ in range(1000)]
    assert max(gaps) == 3 and 0.3 < np.mean(np.array(gaps) > 0) < 0.7
    assert common.Stalls(0.0, 1).gap() == 0


def test_waves_on_request():
    """waves=True (what SPINBAYES_WAVES=1 sets) builds with the dump and returns the file;
    the default run writes none."""
    p = BLOCKS["rng"][1]
    config = {"transactions": 100, "stat_bits": 100, "coverage_goal": 0.0}
    kw = dict(verilog=block_verilog("rng"), toplevel="spinbayes_rng", test_module="tb_rng",
              params=p.describe(), config=config, simulator="icarus",
              testcase="test_random_ops")
    try:
        plain = run_cocotb(**kw)
        traced = run_cocotb(**kw, waves=True)
    except SimulatorMissing as e:
        pytest.skip(str(e))
    assert plain.waves == []
    assert traced.waves and all(w.stat().st_size > 0 for w in traced.waves)
