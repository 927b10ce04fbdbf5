"""Running a sweep on Ray: the results table, the training and point tasks, the driver loop.

Output directory of a sweep (``sweep.out`` of the spec, or ``--out``)::

    results.sqlite            the results table: one row per point key (ResultsTable)
    train/<train key>/checkpoint/   each shared training (model.safetensors, manifest.json)
    points/<key>/             point.json and each stage's files (eval.json, eval.md,
                              coverify.json, energy.json)
    report.md, *.png          spinbayes sweep report

The table is SQLite (the standard library's sqlite3; pandas is not a dependency), opened in
pandas with ``pd.read_sql("SELECT * FROM points", sqlite3.connect(path))``.
Tasks return their files to the driver, which writes them: workers on other machines need no
shared file system.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

from .cluster import node_label, ray_session, resolve_address
from .config import Config
from .sweep import Point, Spec, environment, keyed

__all__ = ["RESULTS_DB", "ResultsTable", "keyed_points", "run_sweep"]

RESULTS_DB = "results.sqlite"
#: Ray re-runs a task whose worker process died this many times.
RETRIES = 3
_META = {"key": "TEXT PRIMARY KEY", "sweep": "TEXT", "status": "TEXT", "failure": "TEXT",
         "train_key": "TEXT", "stages": "TEXT", "images": "INTEGER", "simulator": "TEXT",
         "stall": "REAL", "threads": "INTEGER"}
#: Figures of a point: percentages (SpinBayes n = cfg.n_way, re-calibrated; AUROC and
#: detection averaged over the OoD sets), energy per image in nJ, the RTL check, run data.
METRICS = {"train_acc": "REAL", "error": "REAL", "ua": "REAL", "r_iu": "REAL", "r_cc": "REAL",
           "auroc": "REAL", "ood_detection": "REAL", "id_rejection": "REAL",
           "energy_nj": "REAL", "energy_measured_nj": "REAL", "rtl_images": "INTEGER",
           "rtl_mismatches": "INTEGER", "seconds": "REAL", "worker": "TEXT",
           "finished": "TEXT", "result_json": "TEXT"}


def _config_columns() -> dict[str, str]:
    out = {}
    for f in fields(Config):
        d = f.default
        out[f.name] = ("INTEGER" if isinstance(d, int) and not isinstance(d, bool) else
                       "REAL" if isinstance(d, float) else "TEXT")
    return out


class ResultsTable:
    """The ``points`` table of ``results.sqlite``: one row per point key, written by the
    driver only (INSERT OR REPLACE on the key: a point is never counted twice)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = {**_META, **_config_columns(), **METRICS}
        self.db = sqlite3.connect(self.path)
        cols = ", ".join(f'"{k}" {t}' for k, t in self.columns.items())
        self.db.execute(f"CREATE TABLE IF NOT EXISTS points ({cols})")
        have = {r[1] for r in self.db.execute("PRAGMA table_info(points)")}
        for k, t in self.columns.items():          # Config fields added since the table
            if k not in have:
                self.db.execute(f'ALTER TABLE points ADD COLUMN "{k}" {t.split()[0]}')
        self.db.commit()

    def ok_keys(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT key FROM points WHERE status = 'ok'")}

    def put(self, row: dict) -> None:
        row = {k: v for k, v in row.items() if k in self.columns}
        names = ", ".join(f'"{k}"' for k in row)
        self.db.execute(f"INSERT OR REPLACE INTO points ({names}) VALUES "
                        f"({', '.join('?' * len(row))})", list(row.values()))
        self.db.commit()

    def rows(self, keys=None) -> list[dict]:
        cur = self.db.execute("SELECT * FROM points ORDER BY rowid")
        names = [d[0] for d in cur.description]
        out = [dict(zip(names, r)) for r in cur]
        return out if keys is None else [r for r in out if r["key"] in set(keys)]

    def close(self) -> None:
        self.db.close()


def _read_dir(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}


def _write_dir(path: Path, files: dict) -> Path:
    """Write ``files`` (name -> bytes or str) into ``path`` through a temporary sibling
    directory renamed at the end, so a half-written directory is never taken as done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    for name, data in files.items():
        (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    if path.exists():
        import shutil
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _train_task(config: dict, threads: int) -> dict:
    """Ray task: train one network; returns its checkpoint files."""
    from . import workflow as wf

    t0 = time.perf_counter()
    wf.set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="spinbayes-train-") as d:
        trained = wf.train(Config.from_dict(config), Path(d), progress=False)
        return {"files": _read_dir(trained.checkpoint), "worker": node_label(),
                "seconds": time.perf_counter() - t0}


def _point_task(point: dict, checkpoint: dict) -> dict:
    """Ray task: one point's stages on its shared checkpoint, through the workflow layer."""
    from . import workflow as wf
    from . import workflow_hw as wh
    from .jsonable import to_jsonable

    t0 = time.perf_counter()
    wf.set_threads(point["threads"])
    cfg = Config.from_dict(point["config"])
    with tempfile.TemporaryDirectory(prefix="spinbayes-point-") as d:
        ckpt = _write_dir(Path(d) / "checkpoint", checkpoint["files"])
        # the point's Config whole: its training fields are the checkpoint's (train key)
        trained = wf.load(ckpt, {f.name: getattr(cfg, f.name) for f in fields(Config)})
    mapped = wf.map_trained(trained)
    hist = trained.history
    m: dict = {"train_acc": hist[-1]["train_acc"] if hist else None}
    files: dict[str, str] = {}

    def dump(obj):
        return json.dumps(obj, indent=2, allow_nan=True, default=to_jsonable)
    if "eval" in point["stages"]:
        ev = wf.evaluate(trained, mapped, wf.ood(trained), None, progress=False)
        files.update({"eval.json": dump(ev.report), "eval.md": ev.text})
        m.update(_eval_figures(ev.results, cfg))
    cov = None
    if "coverify" in point["stages"]:
        res, _ = wh.coverify(trained, mapped, images=point["images"],
                             simulator=point["simulator"], stall=point["stall"],
                             progress=False)
        cov = res.summary()
        files["coverify.json"] = dump(cov)
        m.update(rtl_images=res.images, rtl_mismatches=res.mismatches + res.vfy_errors)
    if "energy" in point["stages"]:
        try:
            wh.hw_params(mapped, cfg)              # the RTL's network, as the main job
            hw = mapped.hw(cfg.n_way)
        except ValueError:                         # no RTL for it: the model's shapes
            hw = None
        e = wh.energy(cfg, trained.model, trained.data.image_shape, hw=hw,
                      coverify_summary=cov)
        files["energy.json"] = dump(e)
        m["energy_nj"] = e["analytic"]["total_pj"] / 1000
        if "measured" in e:
            m["energy_measured_nj"] = e["measured"]["total_pj"] / 1000
    m.update(seconds=time.perf_counter() - t0, worker=node_label())
    return {"metrics": m, "files": files}


def _eval_figures(results, cfg: Config) -> dict:
    name = f"SpinBayes n={cfg.n_way}"
    r = next((r for r in results if r.name == name), None)
    if r is None:
        return {}
    ood = list(r.ood.values())

    def mean(attr):
        return sum(getattr(o, attr) for o in ood) / len(ood) if ood else None
    return {"error": r.error, "ua": r.ratios.UA, "r_iu": r.ratios.R_iu, "r_cc": r.ratios.R_cc,
            "auroc": mean("auroc"), "ood_detection": mean("detection"),
            "id_rejection": ood[0].id_rejection if ood else None}


def _row(spec: Spec, p: Point, status: str, metrics: dict | None = None,
         failure: str | None = None) -> dict:
    row = {"key": p.key, "sweep": spec.name, "status": status, "failure": failure,
           "train_key": p.train_key, "stages": ",".join(p.stages), "images": p.images,
           "simulator": p.simulator, "stall": p.stall, "threads": p.threads,
           "finished": datetime.now(UTC).isoformat(timespec="seconds")}
    for k, v in p.cfg.to_dict().items():
        row[k] = ",".join(map(str, v)) if isinstance(v, list) else v
    metrics = metrics or {}
    row.update(metrics)
    row["result_json"] = json.dumps(metrics, allow_nan=True)
    return row


def resolved(points: list[Point]) -> list[Point]:
    """The points with the simulator of each coverify point chosen (it is in the key)."""
    from .workflow_hw import choose_simulator

    return [replace(p, simulator=choose_simulator(p.simulator, prefer="icarus")[0])
            if "coverify" in p.stages else p for p in points]


def keyed_points(spec: Spec) -> list[Point]:
    """The spec's points with their simulators chosen and their keys."""
    return keyed(resolved(spec.points), environment(spec.points))


def run_sweep(spec: Spec, *, address: str | None = None, workers: int | None = None,
              force: bool = False, progress: bool = True) -> dict:
    """Run every point of ``spec`` without an ``ok`` row (all with ``force``) on Ray
    (embedded with ``workers`` CPUs, or the cluster at ``address`` / ``RAY_ADDRESS``).
    Returns counts (points, ran, skipped, failed, trained), seconds, the points' keys and
    the seconds of each task that ran (trainings and points, inside their workers)."""
    t0 = time.perf_counter()
    points = keyed_points(spec)
    table = ResultsTable(spec.out / RESULTS_DB)
    done = set() if force else table.ok_keys()
    todo = [p for p in points if p.key not in done]
    summary = {"points": len(points), "ran": 0, "skipped": len(points) - len(todo),
               "failed": 0, "trained": 0, "out": str(spec.out),
               "keys": [p.key for p in points], "task_seconds": []}
    if not todo:
        table.close()
        return {**summary, "seconds": time.perf_counter() - t0}
    address = resolve_address(address)
    try:
        _run(spec, todo, summary, table, address=address, workers=workers, progress=progress)
    finally:
        table.close()
    return {**summary, "seconds": time.perf_counter() - t0}


def _run(spec, todo, summary, table, *, address, workers, progress) -> None:
    """Submit the trainings and the points, write each result as its task returns."""
    from tqdm.auto import tqdm

    with ray_session(address, num_cpus=None if address else workers) as ray:
        train = ray.remote(num_cpus=1, max_retries=RETRIES)(_train_task)
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(_point_task)
        ckpts, trains = {}, {}
        for p in todo:
            if p.train_key in ckpts:
                continue
            path = spec.out / "train" / p.train_key / "checkpoint"
            if (path / "manifest.json").is_file():      # trained by an earlier run
                ckpts[p.train_key] = ray.put({"files": _read_dir(path), "worker": None})
            else:
                ref = train.remote(p.cfg.to_dict(), p.threads)
                trains[ref] = p.train_key
                ckpts[p.train_key] = ref
        running = {task.remote(p.describe(), ckpts[p.train_key]): p for p in todo}
        bar = tqdm(total=len(todo), unit="point", desc=f"sweep {spec.name}",
                   disable=None if progress else True)
        try:
            while running or trains:
                ready, _ = ray.wait([*running, *trains], num_returns=1)
                ref = ready[0]
                if ref in trains:
                    _store_training(ray, ref, spec.out / "train" / trains.pop(ref), summary)
                    continue
                p = running.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as e:           # the task failed, or died RETRIES times
                    table.put(_row(spec, p, "failed", failure=f"{type(e).__name__}: {e}"[:4000]))
                    summary["failed"] += 1
                else:
                    _write_dir(spec.out / "points" / p.key,
                               {"point.json": json.dumps(p.describe(), indent=2),
                                **out["files"]})
                    table.put(_row(spec, p, "ok", out["metrics"]))
                    summary["ran"] += 1
                    summary["task_seconds"].append(out["metrics"]["seconds"])
                bar.update(1)
        finally:
            bar.close()


def _store_training(ray, ref, path: Path, summary: dict) -> None:
    try:
        out = ray.get(ref)
    except Exception as e:                        # its points fail and say why
        print(f"training {path.name} failed: {type(e).__name__}: {str(e)[:300]}")
        return
    _write_dir(path / "checkpoint", out["files"])
    summary["trained"] += 1
    summary["task_seconds"].append(out["seconds"])
