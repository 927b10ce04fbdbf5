"""Design-space sweeps on Ray: ``spinbayes sweep SPEC.toml`` (docs/SCALE.md).

A spec (TOML, :func:`load_spec`) names Config fields shared by every point (``[base]``), a
grid of values (``[grid]``, every combination) and optionally random samples
(``[random]``), the seeds, and the stages each point runs: ``train`` always, then any of
``eval`` (Tables 1 and 3 through :func:`spinbayes.workflow.evaluate`), ``coverify`` (K test
images through the RTL, :func:`spinbayes.workflow_hw.coverify`) and ``energy``
(:func:`spinbayes.workflow_hw.energy`). The whole spec is checked before any work starts.

Each point is keyed by a hash of everything that decides its numbers (:func:`point_key`:
its Config, stages, stage options, torch threads, the package versions and the data set's
checksum). Points whose training is the same (they differ only in fields that training does
not read: N, Q, T, n, the evaluation settings) share one training, run once as its own Ray
task. Each point is a Ray task that calls the workflow layer; the driver alone writes the
results table (:class:`~spinbayes.sweep_run.ResultsTable`, SQLite), one row per key, after
each point (:func:`~spinbayes.sweep_run.run_sweep`). Re-running a spec runs only the points
without an ``ok`` row; Ray re-runs a task whose worker process died (``max_retries``), and a
row is written only when its task has returned, so no point is lost or counted twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .config import Config, config_with_recipe

__all__ = ["EVAL_ONLY", "OPTIONS", "STAGES", "Point", "Spec", "load_spec", "parse_spec",
           "point_key", "train_key"]

STAGES = ("train", "eval", "coverify", "energy")
#: Stage options (sweepable like Config fields) and their defaults.
OPTIONS = {"images": 4, "simulator": None, "stall": 0.0}
#: Config fields that training does not read: points that differ only in these share one
#: checkpoint (each is one that ``spinbayes eval`` may change on a checkpoint, cli.EVAL_FIELDS;
#: a field missing here only stops points from sharing a training).
EVAL_ONLY = frozenset({"N", "Q", "T", "n_way", "recal_batches", "uncertainty_measure",
                       "threshold_mode", "uncertainty_threshold", "ood_quantile",
                       "ood_threshold", "noisy_sigma", "ood_samples"})
#: Config fields that decide the data set (its checksum is part of every key).
DATA_FIELDS = ("dataset", "data_dir", "split_seed", "test_fraction")
_SWEEP_KEYS = {"name", "out", "stages", "seeds", "threads", *OPTIONS}
_TABLES = ("sweep", "base", "grid", "random")
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its Config, the stages it runs and their options."""

    cfg: Config
    stages: tuple[str, ...]
    images: int
    simulator: str | None
    stall: float
    threads: int
    key: str = ""
    train_key: str = ""

    def describe(self) -> dict:
        """JSON-ready: what the point task receives and point.json records."""
        return {"config": self.cfg.to_dict(), "stages": list(self.stages),
                "images": self.images, "simulator": self.simulator, "stall": self.stall,
                "threads": self.threads, "key": self.key, "train_key": self.train_key}


@dataclass
class Spec:
    """A checked sweep spec: its points (keys not yet assigned), where results go."""

    name: str
    out: Path
    stages: tuple[str, ...]
    points: list[Point]
    swept: list[str]                  # the fields and options that vary between points
    source: str = "<spec>"


def load_spec(path, *, out=None) -> Spec:
    """Read and check a TOML spec; ValueError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep spec {path}: no such file")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"sweep spec {path} is not valid TOML: {e}") from None
    return parse_spec(doc, source=str(path), out=out)


def _known(source: str, table: str, keys, allowed, what: str) -> None:
    bad = sorted(set(keys) - set(allowed))
    if bad:
        raise ValueError(f"sweep spec {source}: unknown key(s) {bad} in [{table}]; {what}")


def _values(source: str, name: str, values) -> list:
    if not isinstance(values, list) or not values:
        raise ValueError(f"sweep spec {source}: grid.{name} must be a non-empty list of "
                         f"values, not {values!r}")
    shown = [json.dumps(v, sort_keys=True) for v in values]
    if len(set(shown)) != len(shown):
        raise ValueError(f"sweep spec {source}: grid.{name} repeats a value: {values!r}")
    return values


def _convert(name: str, value):
    """A TOML value as the Config field wants it (hidden: a tuple of widths)."""
    if name == "hidden":
        return (value,) if isinstance(value, int) and not isinstance(value, bool) else \
            tuple(value) if isinstance(value, list) else value
    return value


def _random_points(source: str, table: dict) -> list[dict]:
    _known(source, "random", table, {"samples", "seed", "fields"},
           "it takes samples, seed and a [random.fields] table")
    n, seed, space = table.get("samples"), table.get("seed", 0), table.get("fields")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_POINTS:
        raise ValueError(f"sweep spec {source}: random.samples must be an integer in "
                         f"1..{MAX_POINTS}, not {n!r}")
    if not isinstance(space, dict) or not space:
        raise ValueError(f"sweep spec {source}: [random.fields] must name at least one field")
    rng = random.Random(seed)
    draws = []
    for _ in range(n):
        d = {}
        for name, how in space.items():
            if isinstance(how, dict) and set(how) == {"choices"} and how["choices"]:
                d[name] = rng.choice(how["choices"])
            elif isinstance(how, dict) and set(how) == {"low", "high"}:
                lo, hi = how["low"], how["high"]
                ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
                d[name] = rng.randint(lo, hi) if ints else rng.uniform(lo, hi)
            else:
                raise ValueError(f"sweep spec {source}: random.fields.{name} must be "
                                 f"{{choices = [...]}} or {{low = .., high = ..}}, not {how!r}")
        draws.append(d)
    return draws


def parse_spec(doc: dict, *, source: str = "<spec>", out=None) -> Spec:
    """Check a parsed spec and expand it into points (see the module docstring)."""
    cfg_fields = {f.name for f in fields(Config)}
    sweepable = cfg_fields | set(OPTIONS)
    what = "Config fields (see `spinbayes train --help`) and the stage options " \
           f"{sorted(OPTIONS)}"
    _known(source, "top level", doc, _TABLES, f"a spec has the tables {list(_TABLES)}")
    sw, base = doc.get("sweep", {}), doc.get("base", {})
    grid, rnd = doc.get("grid", {}), doc.get("random")
    for t, v in (("sweep", sw), ("base", base), ("grid", grid)):
        if not isinstance(v, dict):
            raise ValueError(f"sweep spec {source}: [{t}] must be a table, not {v!r}")
    _known(source, "sweep", sw, _SWEEP_KEYS, f"it takes {sorted(_SWEEP_KEYS)}")
    _known(source, "base", base, sweepable, f"it takes {what}")
    _known(source, "grid", grid, sweepable, f"it takes {what}")
    draws = _random_points(source, rnd) if rnd is not None else [{}]
    if rnd is not None:
        _known(source, "random.fields", draws[0], sweepable, f"it takes {what}")
    seeds = sw.get("seeds")
    if seeds is not None:
        if "seed" in grid or "seed" in base:
            raise ValueError(f"sweep spec {source}: give seeds either as sweep.seeds or as "
                             f"the seed field, not both")
        grid = {**grid, "seed": seeds}
    if not grid and rnd is None:
        raise ValueError(f"sweep spec {source}: the sweep has no points: give [grid] (lists "
                         f"of values), sweep.seeds or [random]")
    axes = {k: _values(source, k, v) for k, v in grid.items()}
    stages = sw.get("stages", ["train", "eval"])
    if not isinstance(stages, list) or not stages or any(s not in STAGES for s in stages):
        raise ValueError(f"sweep spec {source}: sweep.stages must be a non-empty list of "
                         f"{list(STAGES)}, not {stages!r}")
    stages = tuple(s for s in STAGES if s in stages or s == "train")
    threads = sw.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"sweep spec {source}: sweep.threads must be a positive integer, "
                         f"not {threads!r}")
    name = sw.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"sweep spec {source}: sweep.name must be a non-empty string")
    out = Path(out or sw.get("out") or f"runs/sweep/{name}")
    total = len(draws) * (len(list(itertools.product(*axes.values()))) if axes else 1)
    if total > MAX_POINTS:
        raise ValueError(f"sweep spec {source}: {total} points; at most {MAX_POINTS}")
    points = []
    for combo in itertools.product(*axes.values()):
        for draw in draws:
            values = {**base, **dict(zip(axes, combo)), **draw}
            points.append(_point(source, values, stages, threads, sw))
    keys = [json.dumps(p.describe(), sort_keys=True) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sweep spec {source}: two points are the same (random samples "
                         f"that repeat a value, or a grid value equal to the base)")
    swept = [k for k in sorted(set(axes) | set(draws[0]))
             if len({json.dumps(_field(p, k)) for p in points}) > 1]
    return Spec(name, out, stages, points, swept, source)


def _field(p: Point, name: str):
    v = getattr(p, name) if name in OPTIONS else getattr(p.cfg, name)
    return list(v) if isinstance(v, tuple) else v


def _point(source: str, values: dict, stages, threads: int, sw: dict) -> Point:
    cfg_vals = {k: _convert(k, v) for k, v in values.items() if k not in OPTIONS}
    opts = {k: values.get(k, sw.get(k, d)) for k, d in OPTIONS.items()}
    where = f"sweep spec {source}, point {json.dumps(values, sort_keys=True)}"
    try:
        cfg = config_with_recipe(cfg_vals)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    images, sim, stall = opts["images"], opts["simulator"], opts["stall"]
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"{where}: images must be a positive integer, not {images!r}")
    if sim not in (None, "icarus", "verilator"):
        raise ValueError(f"{where}: simulator must be 'icarus' or 'verilator', not {sim!r}")
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 0 <= stall < 1:
        raise ValueError(f"{where}: stall must be a probability in [0, 1), not {stall!r}")
    if "coverify" in stages and cfg.activation != "comparator":
        # the RTL's comparators; which topologies it runs, workflow_hw.hw_params says per point
        raise ValueError(f"{where}: the coverify stage runs comparator networks only (the "
                         f"RTL), not activation {cfg.activation!r}")
    if "coverify" not in stages:    # options of a stage that does not run decide nothing
        images, sim, stall = OPTIONS["images"], OPTIONS["simulator"], OPTIONS["stall"]
    return Point(cfg, tuple(stages), images, sim, float(stall), threads)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_key(p: Point, env: dict) -> str:
    """Hash of what decides a training: the Config fields training reads, the torch
    threads, the package versions and the data set's checksum."""
    c = {k: v for k, v in p.cfg.to_dict().items() if k not in EVAL_ONLY}
    return _digest({"train": c, "threads": p.threads, "versions": env["versions"],
                    "data": env["data"][_data_id(p.cfg)]})


def point_key(p: Point, env: dict) -> str:
    """Hash of everything that decides a point's numbers (see the module docstring)."""
    d = p.describe()
    for k in ("key", "train_key"):
        d.pop(k)
    return _digest({**d, "versions": env["versions"], "data": env["data"][_data_id(p.cfg)]})


def _data_id(cfg: Config) -> str:
    return json.dumps([getattr(cfg, f) for f in DATA_FIELDS])


def environment(points: list[Point]) -> dict:
    """Package versions and the checksum of every data set the points use (loaded here,
    once per data set, through the workflow layer's checksum)."""
    import platform

    import numpy
    import torch

    from . import __version__
    from .golden.datasets import load_dataset
    from .workflow import data_checksum

    data = {}
    for p in points:
        ident = _data_id(p.cfg)
        if ident not in data:
            data[ident] = data_checksum(load_dataset(p.cfg))
    return {"versions": {"spinbayes": __version__, "torch": torch.__version__,
                         "numpy": numpy.__version__, "python": platform.python_version()},
            "data": data}


def keyed(points: list[Point], env: dict) -> list[Point]:
    """The points with their keys and training keys."""
    return [replace(p, key=point_key(p, env), train_key=train_key(p, env)) for p in points]
