"""The workflow layer: plain functions from a Config to trained, mapped, evaluated and
co-verified networks.

Every entry point of the project (the ``spinbayes`` subcommands, the main job in
:mod:`spinbayes.pipeline`, :mod:`spinbayes.firmware.build`) calls these functions and nothing
below them, so each step is written once::

    Config ──train / load──► Trained (model, data, cfg, provenance)
                 │
                 ▼ map_trained: approximate once (eq. 3) ─► MappedModel
                 │   (SpinBayes network per n, BatchNorm re-calibrated once per n;
                 │    integer network per n, folded once)
                 ├─► evaluate: Tables 1 and 3, the hardware-mode check ─► eval.md / eval.json
                 ├─► coverify: K images through the RTL under cocotb ─► CoverifyResult
                 └─► compare: the baselines with the same budget (Tables 1, 3, Fig. 7)

The hardware stages (the design parameters, co-verification, synthesis, energy) are in
:mod:`spinbayes.workflow_hw`.

A run records everything that decides its numbers (seed, torch threads, package versions,
the data set's checksum) in :func:`provenance`; the checkpoint's manifest carries it, and
:func:`reproduce` retrains from it and compares the weights byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:
    from .golden.datasets import Dataset
    from .golden.mapping import MappedModel
    from .golden.networks import BayesNet

__all__ = ["CHECKPOINT_DIR", "COMPARE_JSON", "COMPARE_MARKDOWN", "COMPARE_MEMORY_PNG",
           "CROSSBAR_DIR", "EVAL_JSON", "EVAL_MARKDOWN", "Evaluation", "Trained",
           "budget_markdown", "compare", "data_checksum", "evaluate", "load", "map_trained",
           "ood", "peak_memory_gib", "provenance", "reproduce", "set_threads", "train"]

#: Written by :func:`evaluate` into its output directory; read by the main job's report.
EVAL_MARKDOWN = "eval.md"
EVAL_JSON = "eval.json"
#: Sub-directories of a run's output directory: the checkpoint (:func:`train`) and the
#: crossbar images (:func:`evaluate`), which ``spinbayes firmware`` and users read.
CHECKPOINT_DIR = "checkpoint"
CROSSBAR_DIR = "crossbars"
#: Written by :func:`compare` into its output directory.
COMPARE_MARKDOWN = "compare.md"
COMPARE_JSON = "compare.json"
COMPARE_MEMORY_PNG = "memory.png"


def set_threads(threads: int | None) -> int:
    """Set torch's CPU threads (None: leave torch's choice); returns the count in force.
    Float results depend on it, so every run records it (:func:`provenance`)."""
    import torch

    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads (--threads) must be a positive integer, not {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def data_checksum(data: Dataset) -> str:
    """SHA-256 over the data set's name and its train and test tensors, as trained on."""
    h = hashlib.sha256(data.name.encode())
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def provenance(data: Dataset) -> dict:
    """What decides a run's numbers besides its Config: threads, versions, data checksum."""
    import numpy
    import torch

    from . import __version__

    return {"threads": torch.get_num_threads(), "data_sha256": data_checksum(data),
            "versions": {"spinbayes": __version__, "python": platform.python_version(),
                         "torch": torch.__version__, "numpy": numpy.__version__},
            "machine": platform.machine()}


@dataclass
class Trained:
    """A trained (or loaded) model with the data and configuration it belongs to."""

    model: BayesNet
    data: Dataset
    cfg: Config
    provenance: dict
    checkpoint: Path | None = None
    history: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)     # of a loaded checkpoint


def train(cfg: Config, out: Path | None = None, *, progress: bool = True) -> Trained:
    """Train a Bayes-by-Backprop network on ``cfg``'s data; with ``out``, write
    ``out/checkpoint`` (weights + manifest with the run's :func:`provenance`)."""
    from .golden.checkpoint import save_checkpoint
    from .golden.datasets import fashion_ood_file, load_dataset
    from .golden.networks import build_model
    from .golden.train import train_bbb

    data = load_dataset(cfg)
    fashion_ood_file(data, cfg.data_dir, cfg.ood_fashion)  # asked for but missing: fail now
    print(f"data: {data.name}, {len(data.x_train)} train / {len(data.x_test)} test images "
          f"of shape {data.image_shape}")
    prov = provenance(data)
    model = build_model(cfg, data.image_shape, data.num_classes)
    t0 = time.perf_counter()
    history = train_bbb(model, data.x_train, data.y_train, cfg, progress=progress)
    print(f"trained {cfg.epochs} epochs in {time.perf_counter() - t0:.1f} s "
          f"({prov['threads']} torch threads), final train accuracy "
          f"{history[-1]['train_acc']:.2f} %")
    ckpt = None
    if out is not None:
        ckpt = save_checkpoint(Path(out) / CHECKPOINT_DIR, model, cfg,
                               image_shape=data.image_shape, num_classes=data.num_classes,
                               history=history, provenance=prov)
        print(f"checkpoint: {ckpt}")
    return Trained(model, data, cfg, prov, ckpt, history)


def load(checkpoint, changes: dict | None = None, *, data: Dataset | None = None) -> Trained:
    """Load a checkpoint and its data set (``data``, else the one its Config names);
    ``changes`` override Config fields (evaluation fields only make sense: the weights were
    trained with the manifest's)."""
    from .golden.checkpoint import load_checkpoint
    from .golden.datasets import load_dataset

    model, base, manifest = load_checkpoint(checkpoint)
    cfg = base.replace(**(changes or {}))
    data = data if data is not None else load_dataset(cfg)
    prov = provenance(data)
    recorded = manifest.get("provenance", {}).get("data_sha256")
    if recorded and recorded != prov["data_sha256"] and cfg.dataset == base.dataset:
        print(f"note: the data set differs from the one {checkpoint} was trained on "
              f"(checksum {prov['data_sha256'][:12]} against {recorded[:12]})")
    return Trained(model, data, cfg, prov, Path(checkpoint), manifest.get("history", []),
                   manifest)


def reproduce(checkpoint, out: Path, *, progress: bool = True) -> dict:
    """Retrain from ``checkpoint``'s manifest (its Config and torch threads) into ``out`` and
    compare the weights byte for byte; returns what matched and what differed."""
    from .golden.checkpoint import CHECKPOINT_WEIGHTS, read_manifest

    manifest = read_manifest(checkpoint)
    cfg = Config.from_dict(manifest["config"])
    recorded = manifest.get("provenance")
    if not recorded:
        raise ValueError(f"{checkpoint}: the manifest records no provenance (threads, "
                         f"versions, data checksum); it cannot be reproduced exactly")
    set_threads(int(recorded["threads"]))
    again = train(cfg, out, progress=progress)
    old = (Path(checkpoint) / CHECKPOINT_WEIGHTS).read_bytes()
    new = (again.checkpoint / CHECKPOINT_WEIGHTS).read_bytes()
    differs = {k: {"recorded": recorded.get(k), "now": again.provenance.get(k)}
               for k in ("threads", "data_sha256", "versions", "machine")
               if recorded.get(k) != again.provenance.get(k)}
    return {"identical": old == new, "sha256_recorded": hashlib.sha256(old).hexdigest(),
            "sha256_now": hashlib.sha256(new).hexdigest(), "settings_differ": differs}


def map_trained(trained: Trained, *, progress: bool = False) -> MappedModel:
    """The in-memory approximation of ``trained`` (N samples per layer, eq. 3) as a
    :class:`~spinbayes.golden.mapping.MappedModel`."""
    from .golden.mapping import map_model

    c = trained.cfg
    return map_model(trained.model, trained.data.x_train, N=c.N, Q=c.Q, seed=c.seed,
                     recal_batches=c.recal_batches, progress=progress)


def ood(trained: Trained) -> dict:
    """The OoD sets of ``trained``'s Config (gaussian, noisy, fakedata, natural, ...)."""
    from .golden.datasets import ood_sets

    c = trained.cfg
    return ood_sets(trained.data, n=c.ood_samples, noisy_sigma=c.noisy_sigma, seed=c.seed,
                    data_dir=c.data_dir, fashion=c.ood_fashion)


@dataclass
class Evaluation:
    """What :func:`evaluate` computed: per-method results, the hardware-mode agreement,
    the Markdown text and the JSON report (also written as eval.md / eval.json)."""

    results: list
    hardware: list
    text: str
    report: dict


def peak_memory_gib() -> float:
    """The process's peak resident memory so far, GiB (``getrusage``; KiB on Linux)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** (30 if sys.platform == "darwin" else 20)


class _Stages:
    """Wall time and peak resident memory of each stage, printed as it ends."""

    def __init__(self):
        self.rows: list[dict] = []
        self.t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        row = {"stage": name, "seconds": round(now - self.t, 2),
               "peak_rss_gib": round(peak_memory_gib(), 3)}
        self.rows.append(row)
        self.t = now
        print(f"{name}: {row['seconds']:.1f} s, peak resident memory so far "
              f"{row['peak_rss_gib']:.2f} GiB")


def _ood_notes(trained: Trained, ood_sets: dict) -> tuple[dict, list[str], str]:
    """(size of every OoD set, notes on them, what the operating point is chosen on)."""
    from .golden.datasets import calibration_images, fashion_ood_status

    c = trained.cfg
    status = fashion_ood_status(trained.data, c.data_dir, c.ood_fashion)
    return ({k: len(v) for k, v in ood_sets.items()}, [status] if status else [],
            calibration_images(trained.data)[1])


def evaluate(trained: Trained, mapped: MappedModel, ood_sets: dict, out: Path | None, *,
             progress: bool = True, hardware_mode: bool = True) -> Evaluation:
    """Tables 1 and 3 (float BBB, SpinBayes n = 1, 2 and cfg.n_way, with and without
    re-calibration) and, for comparator networks with ``hardware_mode``, the integer
    hardware mode against the float model (``hardware_mode_status`` "skipped" without).
    With ``out``: writes the crossbar images, then eval.md and eval.json as soon
    as the tables exist (``hardware_mode_status`` "pending"), and again with the hardware
    part ("done", or "failed: ..." before the error is raised), so a failure of the
    hardware check loses nothing computed. Prints each stage's time and peak memory."""
    from .golden.checkpoint import atomic_write, save_crossbar_images
    from .golden.evaluate import (
        evaluate as evaluate_methods,
    )
    from .golden.evaluate import (
        evaluate_hardware,
        hardware_markdown,
        tables_markdown,
    )

    cfg, data = trained.cfg, trained.data
    stages = _Stages()
    t0 = stages.t
    print(f"before evaluation (load, mapping): peak resident memory "
          f"{peak_memory_gib():.2f} GiB")
    if out is not None:
        xdir = save_crossbar_images(Path(out) / CROSSBAR_DIR, mapped.images)
        print(f"crossbar images: {len(mapped.images)} layers x N={cfg.N} crossbars, "
              f"Q={cfg.Q} -> {xdir}")
    n_ways = (1, 2, cfg.n_way)
    sizes, notes, calibration = _ood_notes(trained, ood_sets)
    results = evaluate_methods(mapped, data, ood_sets, cfg, n_ways=n_ways, progress=progress)
    stages.done(f"Tables 1 and 3 ({len(data.x_test)} test images)")
    text = tables_markdown(results, cfg, data.name, ood_sizes=sizes, notes=notes,
                           calibration=calibration)
    comparator = cfg.activation == "comparator"
    check = comparator and hardware_mode
    report = {
        "config": cfg.to_dict(), "dataset": data.name, "n_test": len(data.x_test),
        "ood_sets": sizes, "ood_samples_cap": cfg.ood_samples, "ood_notes": notes,
        "operating_point_images": calibration,
        "results": [r.to_dict() for r in results],
        "hardware_mode": [],
        "hardware_mode_status": ("pending" if check else "skipped" if comparator else "n/a"),
        "stages": stages.rows, "seconds": time.perf_counter() - t0,
        "provenance": trained.provenance,
    }

    def write(text: str) -> None:
        if out is not None:
            report["seconds"] = time.perf_counter() - t0
            atomic_write(Path(out) / EVAL_MARKDOWN, text)
            atomic_write(Path(out) / EVAL_JSON, json.dumps(report, indent=2, allow_nan=True))

    write(text + ("\nInteger hardware mode: pending.\n" if check else
                  "\nInteger hardware mode: skipped (--no-hardware-mode).\n" if comparator
                  else ""))
    hardware = []
    if check:
        try:
            hardware = evaluate_hardware(mapped, data, cfg, n_ways=n_ways, progress=progress)
        except Exception as e:
            report["hardware_mode_status"] = f"failed: {type(e).__name__}: {e}"
            write(text + f"\nInteger hardware mode: {report['hardware_mode_status']}\n")
            raise
        stages.done(f"integer hardware mode ({len(data.x_test)} test images)")
        text += "\n" + hardware_markdown(hardware)
        report["hardware_mode"] = [asdict(a) for a in hardware]
        report["hardware_mode_status"] = "done"
        write(text)
    return Evaluation(results, hardware, text, report)


def _budget(c: Config, trainings: int = 1) -> dict:
    return {"epochs": c.epochs, "lr": c.lr, "batch_size": c.batch_size, "networks": trainings}


def budget_markdown(budgets: dict[str, dict]) -> str:
    """The training budget of every method of :func:`compare`, and whether it is the same."""
    lines = ["### Training budget of each method", "",
             "| Method | epochs | learning rate | batch size | networks trained |",
             "|---|---:|---:|---:|---:|"]
    for name, b in budgets.items():
        lines.append(f"| {name} | {b['epochs']} | {b['lr']:g} | {b['batch_size']} | "
                     f"{b['networks']} |")
    keys = ("epochs", "lr", "batch_size")
    kinds = {tuple(b[k] for k in keys) for b in budgets.values()}
    lines += ["", "Every method trains with the same epochs, learning rate and batch size."
              if len(kinds) == 1 else "The methods do not share one training budget "
              "(epochs, learning rate, batch size): this is not a same-budget comparison.", ""]
    return "\n".join(lines)


def compare(trained: Trained, out: Path, *, progress: bool = True) -> dict:
    """SpinBayes (n = 1..3) against MC-Dropout, MC-DropConnect and a Deep Ensemble of 5,
    trained on the same topology and data with ``trained.cfg``'s budget (epochs, lr, batch
    size); the n-way study and the memory overhead (Fig. 7). A loaded checkpoint's budget is
    its manifest's, so the budget table shows when the baselines' differs (flags given
    explicitly). Writes compare.md, compare.json and memory.png into ``out``."""
    from .golden.baselines import BASELINES, baseline_probs, nway_markdown, nway_study
    from .golden.checkpoint import atomic_write
    from .golden.datasets import calibration_images
    from .golden.evaluate import evaluate_bbb, result_from_sets, tables_markdown
    from .golden.memory import (
        memory_markdown,
        memory_table,
        paper_models,
        plot_memory,
        rows_as_dicts,
    )

    cfg, data, model = trained.cfg, trained.data, trained.model
    out = Path(out)
    t0 = time.perf_counter()
    mapped = map_trained(trained)
    sets = ood(trained)
    sizes, notes, calibration = _ood_notes(trained, sets)
    study = nway_study(model, mapped.images, data, sets, cfg,
                       n_ways=tuple(n for n in (1, 2, 3) if n <= cfg.N), progress=progress)
    results = [evaluate_bbb(model, data, sets, cfg, progress=progress), *study.values()]
    M = 5
    for name, probs in baseline_probs(cfg, data, sets, M=M, progress=progress,
                                      calibration=calibration_images(data)[0]).items():
        results.append(result_from_sets(name, probs, data.y_test, cfg))
    trained_cfg = (Config.from_dict(trained.manifest["config"])
                   if trained.manifest.get("config") else cfg)
    budgets = {r.name: _budget(trained_cfg) for r in results[:1 + len(study)]}
    budgets.update({BASELINES[k].format(M=M): _budget(cfg, M if k == "ensemble" else 1)
                    for k in ("mc_dropout", "mc_dropconnect", "ensemble")})
    rows = memory_table(paper_models(), N=cfg.N, Q=cfg.Q)
    figure = plot_memory(rows, out / COMPARE_MEMORY_PNG)
    text = "\n".join([tables_markdown(results, cfg, data.name, ood_sizes=sizes, notes=notes,
                                      calibration=calibration),
                      budget_markdown(budgets), nway_markdown(study),
                      "### Memory overhead (section 4.3.2, Fig. 7)", "",
                      memory_markdown(rows), f"Figure: {figure.name}", ""])
    report = {"config": cfg.to_dict(), "dataset": data.name,
              "ood_sets": sizes, "ood_samples_cap": cfg.ood_samples, "ood_notes": notes,
              "operating_point_images": calibration, "budgets": budgets,
              "results": [r.to_dict() for r in results],
              "nway": {str(n): r.to_dict() for n, r in study.items()},
              "memory": rows_as_dicts(rows), "seconds": time.perf_counter() - t0,
              "provenance": trained.provenance}
    atomic_write(out / COMPARE_MARKDOWN, text)
    atomic_write(out / COMPARE_JSON, json.dumps(report, indent=2))
    return {"text": text, "report": report, "figure": figure}
