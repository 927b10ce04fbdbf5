"""Sweeps (spinbayes/sweep.py, sweep_run.py, sweep_report.py, cli_sweep.py).

Without Ray: the spec's checks (every bad spec fails before any work, naming the problem),
its expansion into points, the keys (shared trainings), the results table, the Pareto front.
On Ray (tiny networks: hidden 8, one epoch, 20 OoD samples): a two-node cluster
(ray.cluster_utils.Cluster) runs a 2-point sweep (golden evaluation and energy) and a 2-shard
co-verification on Icarus, both through ``address=`` (slow: the same sweep with every stage,
2 images co-verified per point, the RTL's counters checked against the analytic count); then
on a local Ray with 2 CPUs
a 4-point sweep writes 4 rows, its re-run runs 0 points, and a sweep whose worker process is
killed mid-point ends with every point once.
Every test that starts Ray shuts it down (the fixtures' and ``ray_session``'s finally).
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from spinbayes.cli import EVAL_FIELDS, main
from spinbayes.sweep import EVAL_ONLY, load_spec, parse_spec
from spinbayes.sweep_report import pareto_front, write_report
from spinbayes.sweep_run import RESULTS_DB, ResultsTable, keyed_points, run_sweep

TINY = {"hidden": [8], "epochs": 1, "ood_samples": 20, "recal_batches": 1}


def _spec(tmp_path, grid, *, stages=("eval", "energy"), seeds=None, name="t", **sweep):
    doc = {"sweep": {"name": name, "out": str(tmp_path / name), "stages": list(stages),
                     **sweep},
           "base": dict(TINY), "grid": grid}
    if seeds is not None:
        doc["sweep"]["seeds"] = seeds
    return parse_spec(doc, source="test.toml")


# --- the spec -------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, message", [
    ({"grid": {"Nx": [1]}}, r"unknown key\(s\) \['Nx'\] in \[grid\]"),
    ({"base": {"epoch": 3}, "grid": {"N": [2]}}, r"unknown key\(s\) \['epoch'\] in \[base\]"),
    ({"sweep": {"stage": ["eval"]}, "grid": {"N": [2]}}, r"\['stage'\] in \[sweep\]"),
    ({"grids": {"N": [2]}}, r"unknown key\(s\) \['grids'\] in \[top level\]"),
    ({}, "the sweep has no points"),
    ({"grid": {}}, "the sweep has no points"),
    ({"grid": {"N": []}}, r"grid.N must be a non-empty list of values, not \[\]"),
    ({"grid": {"N": 5}}, "grid.N must be a non-empty list of values, not 5"),
    ({"grid": {"N": [2, 2]}}, "grid.N repeats a value"),
    ({"grid": {"N": [2, 0]}}, r"N \(--N\) must be an integer in 1..64.*not 0"),
    ({"grid": {"T": [1.5]}}, r"T \(--T\) must be an integer"),
    ({"grid": {"n_way": [3]}, "base": {"N": 2}}, r"n_way \(--n-way\) must be an integer in"),
    ({"grid": {"stall": [1.0]}}, r"stall must be a probability in \[0, 1\), not 1.0"),
    ({"grid": {"N": [2]}, "sweep": {"stages": ["eval", "synth"]}}, "sweep.stages must be"),
    ({"grid": {"N": [2]}, "sweep": {"stages": ["coverify"]}, "base": {"activation": "relu"}},
     "the coverify stage runs comparator networks only"),
    ({"grid": {"N": [2]}, "sweep": {"threads": 0}}, "sweep.threads must be a positive"),
    ({"grid": {"seed": [1]}, "sweep": {"seeds": [0, 1]}}, "give seeds either"),
    ({"random": {"samples": 2, "fields": {"lr": {"low": 0.1}}}}, "random.fields.lr must be"),
    ({"random": {"samples": 0, "fields": {"lr": {"low": 0.1, "high": 0.2}}}},
     "random.samples must be"),
])
def test_bad_specs_fail_before_any_work(doc, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(doc, source="bad.toml")


def test_spec_files_missing_or_malformed(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_spec(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nN = [2, 3\n")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        load_spec(bad)
    # the CLI says so with exit code 2 and starts nothing
    assert main(["sweep", str(bad)]) == 2


def test_grid_seeds_and_random_samples_expand_into_points(tmp_path):
    spec = _spec(tmp_path, {"N": [2, 3], "T": [5, 10]}, seeds=[0, 1])
    assert len(spec.points) == 8 and spec.swept == ["N", "T", "seed"]
    assert spec.stages == ("train", "eval", "energy")
    assert {(p.cfg.N, p.cfg.T, p.cfg.seed) for p in spec.points} == \
        {(n, t, s) for n in (2, 3) for t in (5, 10) for s in (0, 1)}
    assert all(p.cfg.hidden == (8,) and p.cfg.epochs == 1 for p in spec.points)
    doc = {"base": TINY, "grid": {"N": [2, 3]},
           "random": {"samples": 3, "seed": 4,
                      "fields": {"kl_weight": {"low": 0.05, "high": 0.2},
                                 "hidden": {"choices": [8, [8, 8]]}}}}
    pts = parse_spec(doc).points
    assert len(pts) == 6
    assert all(0.05 <= p.cfg.kl_weight <= 0.2 and p.cfg.hidden in ((8,), (8, 8)) for p in pts)
    assert [p.cfg.kl_weight for p in pts] == [p.cfg.kl_weight for p in parse_spec(doc).points]


def test_keys_share_trainings_and_name_everything_that_decides_numbers(tmp_path):
    assert EVAL_ONLY <= EVAL_FIELDS - {"data_dir"}      # a shared checkpoint may change them
    pts = keyed_points(_spec(tmp_path, {"N": [2, 3], "T": [5, 10]}, seeds=[0, 1]))
    assert len({p.key for p in pts}) == 8
    assert len({p.train_key for p in pts}) == 2         # one training per seed
    again = keyed_points(_spec(tmp_path, {"N": [2, 3], "T": [5, 10]}, seeds=[0, 1]))
    assert [p.key for p in pts] == [p.key for p in again]   # stable across runs
    other = keyed_points(_spec(tmp_path, {"N": [2]}, stages=("eval",), threads=2))
    first = next(p for p in pts if p.cfg.N == 2 and p.cfg.T == 10 and p.cfg.seed == 0)
    assert other[0].key != first.key and other[0].train_key != first.train_key


def test_results_table_one_row_per_key_and_pareto_front(tmp_path):
    table = ResultsTable(tmp_path / RESULTS_DB)
    table.put({"key": "a", "status": "failed", "failure": "boom"})
    table.put({"key": "a", "status": "ok", "N": 2, "energy_nj": 2.0, "auroc": 80.0})
    table.put({"key": "b", "status": "ok", "N": 3, "energy_nj": 1.0, "auroc": 70.0})
    table.put({"key": "c", "status": "ok", "N": 5, "energy_nj": 3.0, "auroc": 75.0})
    assert table.ok_keys() == {"a", "b", "c"} and len(table.rows()) == 3
    table.close()
    front = pareto_front(ResultsTable(tmp_path / RESULTS_DB).rows())
    assert [r["key"] for r in front] == ["b", "a"]     # c: more energy, lower AUROC than a
    text = write_report(tmp_path).read_text()
    assert "3 points finished, 0 failed; swept: N" in text and "Pareto front" in text


# --- on Ray ---------------------------------------------------------------------------------

def _rows(spec):
    con = sqlite3.connect(spec.out / RESULTS_DB)
    try:
        return con.execute("SELECT key, status, N, T, seed, error, energy_nj, worker "
                           "FROM points").fetchall()
    finally:
        con.close()


def test_two_node_cluster_runs_a_sweep_and_a_sharded_coverification(tmp_path, tiny_trained,
                                                                    monkeypatch, ray_lock):
    """Both through ``address=`` on a two-node ray.cluster_utils.Cluster (1 CPU a node): a
    2-point sweep (golden evaluation and energy) and a 2-shard co-verification on Icarus whose
    shards run on the two nodes. The sweep's RTL stage on a cluster: the slow test below."""
    from ray.cluster_utils import Cluster

    from spinbayes.cluster import bind_loopback
    from spinbayes.shard import coverify_sharded

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bind_loopback()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        spec = _spec(tmp_path, {"T": [2, 4]}, stages=("eval", "energy"), name="cluster")
        s = run_sweep(spec, address=cluster.address, progress=False)
        assert (s["ran"], s["failed"], s["trained"]) == (2, 0, 1)
        assert sorted(r[3] for r in _rows(spec)) == [2, 4]
        assert all(r[1] == "ok" and r[6] > 0 for r in _rows(spec))
        trained, mapped = tiny_trained
        res, _, info = coverify_sharded(trained, mapped, images=2, simulator="icarus",
                                        workers=2, address=cluster.address, progress=False)
        assert res.images == 2 and res.mismatches == 0 and res.passed
        assert info["shards"] == [[0, 1], [1, 2]] and len(info["hosts"]) == 2
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_two_node_cluster_runs_every_stage_of_a_sweep(tmp_path, monkeypatch, ray_lock):
    """A sweep with co-verification on a two-node cluster: every point's RTL stage on a node,
    the RTL's activity counters equal to the analytic count."""
    from ray.cluster_utils import Cluster

    from spinbayes.cluster import bind_loopback

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bind_loopback()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        spec = _spec(tmp_path, {"T": [2, 4]}, stages=("eval", "coverify", "energy"),
                     name="cluster", images=2, simulator="icarus")
        s = run_sweep(spec, address=cluster.address, progress=False)
        assert (s["ran"], s["failed"], s["trained"]) == (2, 0, 1)
        con = sqlite3.connect(spec.out / RESULTS_DB)
        rtl = con.execute("SELECT rtl_images, rtl_mismatches, energy_measured_nj, key "
                          "FROM points").fetchall()
        con.close()
        assert len(rtl) == 2 and all(r[:2] == (2, 0) and r[2] > 0 for r in rtl)
        for r in rtl:       # the RTL's activity counters equal the analytic count
            energy = json.loads((spec.out / "points" / r[3] / "energy.json").read_text())
            assert energy["measured"]["all_counters_equal"]
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def local_ray(ray_test_lock):
    """A local Ray with 2 CPUs for this module's sweeps, shut down at its end (under the Ray
    test lock, tests/conftest.py)."""
    from spinbayes.cluster import ray_session

    with ray_test_lock.held(), ray_session(num_cpus=2) as ray:
        yield ray


def test_four_points_write_four_rows_and_a_rerun_runs_none(tmp_path, local_ray, capsys):
    path = tmp_path / "four.toml"
    path.write_text(f'[sweep]\nout = "{tmp_path / "four"}"\nstages = ["eval", "energy"]\n'
                    '[base]\nhidden = [8]\nepochs = 1\nood_samples = 20\n'
                    'recal_batches = 1\n[grid]\nN = [2, 3]\nT = [2, 4]\n')
    spec = load_spec(path)
    s = run_sweep(spec, progress=False)
    assert (s["points"], s["ran"], s["skipped"], s["failed"], s["trained"]) == (4, 4, 0, 0, 1)
    rows = _rows(spec)
    assert len(rows) == 4 and {r[1] for r in rows} == {"ok"}
    assert {(r[2], r[3]) for r in rows} == {(2, 2), (2, 4), (3, 2), (3, 4)}
    # energy per image grows with T; the figures are real numbers
    e = {(r[2], r[3]): r[6] for r in rows}
    assert e[2, 4] > e[2, 2] > 0 and all(0 <= r[5] <= 100 for r in rows)
    assert (spec.out / "train").is_dir() and len(list((spec.out / "train").iterdir())) == 1
    capsys.readouterr()
    assert main(["sweep", str(path), "--quiet"]) == 0        # the same spec again
    assert "0 points run, 4 already done, 0 failed, 0 trainings" in capsys.readouterr().out
    assert len(_rows(spec)) == 4
    text = (spec.out / "report.md").read_text()
    assert "4 points finished, 0 failed; swept: N, T" in text
    assert (spec.out / "pareto.png").is_file() and (spec.out / "sweep_T.png").is_file()


def test_a_killed_worker_leaves_every_point_exactly_once(tmp_path, local_ray, ray_killer):
    spec = _spec(tmp_path, {"N": [2, 3], "T": [2, 4]}, seeds=[7], name="killed")
    killer = ray_killer("ray::_point_task")
    s = run_sweep(spec, progress=False)
    killer.stop()
    assert len(killer.killed) == 1, "no point task was seen running"
    rows = _rows(spec)
    assert (s["ran"], s["failed"]) == (4, 0)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 4 and {r[1] for r in rows} == {"ok"}
    # the killed process finished no point: its point ran again in another worker
    assert all(not r[7].endswith(f":{killer.killed[0]}") for r in rows)
    assert np.isfinite([r[5] for r in rows]).all()
