"""Speed-up of 2 Ray workers over 1, and Ray's overhead per task (docs/SCALE.md).

* sweep of trainings: ``--trainings`` points that differ only in their seed (so each one is a
  training of its own: hidden 64, ``--epochs`` epochs on the digits, one torch thread), run
  by :func:`spinbayes.sweep_run.run_sweep` into a fresh directory;
* sharded co-verification: ``--images`` test images of a 64-16-10 network (T = 10, Icarus)
  by :func:`spinbayes.shard.coverify_sharded`, one shard per worker;
* Ray's overhead per task: a task that does nothing, 200 times one after the other (submit,
  wait, fetch) and 2000 submitted at once, against the same function called directly.

Both workloads run on a local Ray with 1 and with 2 CPUs, alternately (1, 2, 1, 2, ...), for
``--rounds`` rounds; each figure is the median over rounds. Starting Ray (a few seconds) is
outside the timings. The sweep's worker processes are started (torch imported) before its
timing; the co-verification's actors are new processes inside its timing (they hold the
model), as they are for a user. The machine's load is recorded (``os.getloadavg``): on a
machine shared with other work the ratios are low. "busy" is the seconds the tasks (the
sweep's trainings and points, the co-verification's shards) spent inside their workers over
workers x wall seconds: 1.0 when Ray keeps every worker busy all the time; on a loaded
machine the tasks' own seconds grow as well, so it shows Ray's idle time, not the load.
Writes bench/results/ray_speedup.json.

    python bench/ray_speedup.py                     # defaults below
    python bench/ray_speedup.py --rounds 3 --trainings 4 --epochs 60 --images 60   # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULT = Path(__file__).resolve().parent / "results" / "ray_speedup.json"


def _warm() -> None:
    """Import what a sweep task imports, and hold the worker a moment (so that W of these
    occupy W worker processes)."""
    import spinbayes.workflow  # noqa: F401

    time.sleep(1.0)


def sweep_seconds(workers: int, trainings: int, epochs: int) -> tuple[float, float]:
    from spinbayes.cluster import ray_session
    from spinbayes.sweep import parse_spec
    from spinbayes.sweep_run import run_sweep

    with tempfile.TemporaryDirectory(prefix="ray-bench-") as d:
        spec = parse_spec({"sweep": {"out": d, "stages": ["train"], "threads": 1,
                                     "seeds": list(range(trainings))},
                           "base": {"hidden": [64], "epochs": epochs}})
        with ray_session(num_cpus=workers) as ray:
            warm = ray.remote(num_cpus=1)(_warm)
            ray.get([warm.remote() for _ in range(workers)])
            t0 = time.perf_counter()
            s = run_sweep(spec, progress=False)
            dt = time.perf_counter() - t0
    if s["ran"] != trainings or s["trained"] != trainings:
        raise RuntimeError(f"the sweep ran {s['ran']} points, trained {s['trained']}")
    return dt, sum(s["task_seconds"]) / (workers * dt)


def coverify_seconds(workers: int, trained, mapped, images: int) -> tuple[float, dict]:
    """Wall seconds and the parts of the work (summed over shards), with ``busy``: the
    shards' seconds inside their actors over workers x wall seconds."""
    from spinbayes.cluster import ray_session
    from spinbayes.shard import coverify_sharded

    with ray_session(num_cpus=workers):
        t0 = time.perf_counter()
        res, _, _ = coverify_sharded(trained, mapped, images=images, simulator="icarus",
                                     workers=workers, progress=False)
        dt = time.perf_counter() - t0
    if res.mismatches or res.images != images:
        raise RuntimeError(f"co-verification: {res.mismatches} mismatches")
    t = res.timings
    return dt, {"images_s": t["images_s"], "programming_s": t["programming_s"],
                "build_and_start_s": t["build_and_start_s"], "export_s": t["export_s"],
                "busy": t["shard_wall_s"] / (workers * dt)}


def task_overhead() -> dict:
    from spinbayes.cluster import ray_session

    def noop():
        return None

    with ray_session(num_cpus=1) as ray:
        f = ray.remote(num_cpus=1)(noop)
        ray.get([f.remote() for _ in range(20)])                      # worker warm
        t0 = time.perf_counter()
        for _ in range(200):
            ray.get(f.remote())
        serial = (time.perf_counter() - t0) / 200
        t0 = time.perf_counter()
        ray.get([f.remote() for _ in range(2000)])
        batch = (time.perf_counter() - t0) / 2000
    t0 = time.perf_counter()
    for _ in range(200_000):
        noop()
    direct = (time.perf_counter() - t0) / 200_000
    return {"serial_ms": serial * 1e3, "batched_ms": batch * 1e3, "direct_ms": direct * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trainings", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args()

    import torch

    from spinbayes import workflow as wf
    from spinbayes.config import Config

    torch.set_num_threads(1)
    trained = wf.train(Config(hidden=(16,), epochs=3, T=10), None, progress=False)
    mapped = wf.map_trained(trained)
    coverify_seconds(1, trained, mapped, 2)     # the simulator build, once, outside timings
    load = [os.getloadavg()]
    runs: dict = {"sweep": {1: [], 2: []}, "coverify": {1: [], 2: []},
                  "busy": {"sweep": {1: [], 2: []}, "coverify": {1: [], 2: []}},
                  "coverify_parts": []}
    for r in range(args.rounds):
        for w in (1, 2):
            ds, busy = sweep_seconds(w, args.trainings, args.epochs)
            runs["sweep"][w].append(ds)
            runs["busy"]["sweep"][w].append(busy)
            dt, parts = coverify_seconds(w, trained, mapped, args.images)
            runs["coverify"][w].append(dt)
            runs["busy"]["coverify"][w].append(parts["busy"])
            runs["coverify_parts"].append({"workers": w, **parts})
            print(f"round {r}, {w} worker(s): sweep {ds:.1f} s (busy {busy:.2f}), "
                  f"co-verification {dt:.1f} s (busy {parts['busy']:.2f})", flush=True)
        load.append(os.getloadavg())
    overhead = task_overhead()
    med = {k: {w: statistics.median(v) for w, v in runs[k].items()}
           for k in ("sweep", "coverify")}
    busy = {k: {w: statistics.median(v) for w, v in runs["busy"][k].items()}
            for k in ("sweep", "coverify")}
    out = {"args": vars(args), "median_s": med, "median_busy": busy,
           "speedup": {k: med[k][1] / med[k][2] for k in med}, "runs": runs,
           "task_overhead": overhead, "loadavg": load, "cpus": os.cpu_count(),
           "python": platform.python_version()}
    print("\n| workload | 1 worker (s) | 2 workers (s) | speed-up | busy, 1 / 2 workers |\n"
          "|---|---:|---:|---:|---:|")
    for k, label in (("sweep", f"sweep of {args.trainings} trainings"),
                     ("coverify", f"co-verification of {args.images} images")):
        print(f"| {label} | {med[k][1]:.1f} | {med[k][2]:.1f} | {out['speedup'][k]:.2f}x | "
              f"{busy[k][1]:.2f} / {busy[k][2]:.2f} |")
    print(f"\nRay per task: {overhead['serial_ms']:.2f} ms one after the other, "
          f"{overhead['batched_ms']:.3f} ms when submitted at once (a direct call: "
          f"{overhead['direct_ms'] * 1e3:.2f} us); load average {load[0]} -> {load[-1]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
