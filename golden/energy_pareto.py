"""Energy against accuracy and uncertainty: adaptive T and first-layer reuse on the golden
integer model (docs/ENERGY.md, "Energy against accuracy and uncertainty").

:func:`pareto_study` runs the integer network (:class:`~spinbayes.golden.hardware.HwNetwork`)
for T_max passes on the test set and the OoD sets, once, on crossbar choices drawn from a
seeded generator; every setting (all T_max passes, the exact rule, the confidence rule at
several vote shares) is then the stop rule of :mod:`.adaptive` applied to those passes, so
all settings see the same choices. Per setting: the accuracy of eq. 4 and of the hardware
class, UA (docs/METRICS.md, the Config's uncertainty measure and threshold), AUROC of the
test set against each OoD set (predictive entropy), all from the passes actually run, and
the analytic energy per test image with and without first-layer reuse
(:func:`~spinbayes.golden.energy.image_energies`; with REUSE on the RTL's counters give
these counts, docs/HARDWARE.md "First-layer reuse").

``python -m spinbayes.golden.energy_pareto --checkpoint DIR --out DIR`` runs the study on a
trained checkpoint and writes pareto.json, pareto.md and pareto.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..rtl.regs import CONFIDENCE_BITS
from . import metrics
from .adaptive import AdaptiveT, adaptive_passes, output_span
from .energy import image_energies, shapes_of_hw
from .evaluate import HARDWARE_ROWS, _uncertainty, batch_images
from .inference import sample_choices

__all__ = ["DEFAULT_THRESHOLDS", "DEFAULT_T_MINS", "METRICS", "cache_cost", "pareto_flags",
           "pareto_markdown", "pareto_study", "plot_pareto", "run_sets", "subsample"]

#: Vote shares of the confidence rule the study sweeps.
DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: T_min of the confidence rule the study sweeps.
DEFAULT_T_MINS = (2, 4, 6)
#: The metrics the Pareto front is drawn for (row key, label).
METRICS = (("accuracy", "accuracy (%)"), ("ua", "UA (%)"), ("auroc_mean", "mean AUROC (%)"))
_SHORT = {"accuracy": "acc.", "ua": "UA", "auroc_mean": "AUROC"}
#: The issue's tolerance against full T without reuse: points of accuracy and of AUROC (on
#: every OoD set) a setting may lose.
TOLERANCE = {"accuracy": 0.5, "auroc": 1.0}
#: Words of one DP16KD block RAM of the ECP5 at widths up to 18 bits.
EBR_WORDS = 1024


@torch.no_grad()
def run_sets(hw, sets: dict, T: int, *, seed: int) -> dict:
    """{name: (per_pass (B, T, C) int64, first-layer choices (B, T, n))} of ``hw`` on each
    set, choices of all sets drawn in order from one generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    bs = batch_images(T, HARDWARE_ROWS)
    out = {}
    for name, x in sets.items():
        ch = sample_choices(len(hw.layers), len(x), T, hw.N, hw.n_way, g)
        per_pass = torch.cat([hw.run(x[i:i + bs], ch[:, i:i + bs]).per_pass
                              for i in range(0, len(x), bs)])
        out[name] = (per_pass.long(), ch[0])
    return out


def _per_image(fn, probs: torch.Tensor, passes: torch.Tensor) -> np.ndarray:
    """fn (a per-image metric of (B, T, C) probabilities) of each image's first passes[b]
    passes, (B,) float64."""
    out = np.zeros(len(probs))
    for t in passes.unique().tolist():
        idx = (passes == t).nonzero()[:, 0]
        out[idx.numpy()] = np.asarray(fn(probs[idx, :t]), dtype=np.float64)
    return out


def _mean_probs(probs: torch.Tensor, passes: torch.Tensor) -> torch.Tensor:
    ran = torch.arange(probs.shape[1])[None, :] < passes[:, None]
    return (probs * ran[..., None]).sum(1) / passes[:, None].double()


def _setting(runs: dict, y: torch.Tensor, passes: dict, frac_bits: int, cfg) -> dict:
    from sklearn.metrics import roc_auc_score

    names = list(runs)
    test = names[0]
    probs = {k: torch.softmax(v[0].double() / 2 ** frac_bits, -1) for k, v in runs.items()}
    pm = _mean_probs(probs[test], passes[test])
    correct = (pm.argmax(-1) == y).numpy()
    ran = torch.arange(runs[test][0].shape[1])[None, :] < passes[test][:, None]
    hw_class = (runs[test][0] * ran[..., None]).sum(1).argmax(-1)
    u = _per_image(lambda p: _uncertainty(p, cfg.uncertainty_measure), probs[test],
                   passes[test])
    thr = metrics.uncertainty_threshold(u, cfg.uncertainty_threshold, cfg.threshold_mode)
    score = {k: _per_image(metrics.ood_score, probs[k], passes[k]) for k in names}
    auroc = {k: 100.0 * float(roc_auc_score(
        np.r_[np.zeros(len(score[test])), np.ones(len(score[k]))], np.r_[score[test], score[k]]))
        for k in names[1:]}
    ood_passes = torch.cat([passes[k] for k in names[1:]]) if len(names) > 1 else None
    return {"passes_id": float(passes[test].double().mean()),
            "passes_ood": None if ood_passes is None else float(ood_passes.double().mean()),
            "accuracy": 100.0 * float(correct.mean()),
            "hw_accuracy": 100.0 * float((hw_class == y).double().mean()),
            "ua": metrics.uncertainty_ratios(correct, u, thr).UA,
            "auroc": auroc,
            "auroc_mean": float(np.mean(list(auroc.values()))) if auroc else float("nan")}


def pareto_flags(energy, value) -> np.ndarray:
    """(P,) bool: the points (energy[i], value[i]) no other point dominates (energy <= and
    value >= with one strict): lower energy and higher value are better."""
    e, v = np.asarray(energy, dtype=float), np.asarray(value, dtype=float)
    if e.shape != v.shape or e.ndim != 1:
        raise ValueError(f"energy and value must be 1-D of one length, got {e.shape}, {v.shape}")
    le, ge = e[None, :] <= e[:, None], v[None, :] >= v[:, None]
    strict = (e[None, :] < e[:, None]) | (v[None, :] > v[:, None])
    return ~(le & ge & strict).any(1)


def cache_cost(hw, T: int, image_shape=None) -> dict:
    """Block RAM of the first-layer cache: min(N, T n) crossbars x positions x outputs words of
    the accumulator width (golden.contract.LayerWidths.acc_bits); DP16KD blocks at 1024 words
    of up to 18 bits."""
    s = shapes_of_hw(hw, image_shape)[0]
    bits = hw.widths()[0].acc_bits
    words = min(hw.N, T * hw.n_way) * s.positions * s.outputs
    return {"words": words, "word_bits": bits, "bits": words * bits,
            "dp16kd": math.ceil(words / EBR_WORDS) * math.ceil(bits / 18)}


def pareto_study(hw, sets: dict, y, cfg, *, T_max: int = 10,
                 thresholds=DEFAULT_THRESHOLDS, t_mins=DEFAULT_T_MINS, seed: int = 0,
                 image_shape=None, model=None, sizes: dict | None = None,
                 run_rule: AdaptiveT | None = None) -> dict:
    """The study on ``sets`` (name -> images; the first is the labelled test set, ``y`` its
    labels, the others OoD sets): full T_max passes, the exact rule (T_min 1) and the
    confidence rule at each vote share of ``thresholds`` and each T_min of ``t_mins`` (at
    T_min = 1 every share is met after one pass). ``sizes``: the sets' sizes before any
    subsampling (for the report); ``run_rule``: one more row, the run's own ``--adaptive``
    setting (unless off). Returns a JSON-able dict with one row per setting."""
    if not isinstance(T_max, int) or isinstance(T_max, bool) or T_max < 1:
        raise ValueError(f"T_max must be a positive integer, not {T_max!r}")
    y = torch.as_tensor(y).long()
    runs = run_sets(hw, sets, T_max, seed=seed)
    frac_bits = hw.layers[-1].frac_bits
    shapes = shapes_of_hw(hw, image_shape)
    t_mins = [int(t) for t in t_mins if int(t) <= T_max]
    settings = [("full T", AdaptiveT("off")), ("exact", AdaptiveT("exact", 1, 0,
                                                                  output_span(hw)))]
    settings += [(f"confidence {s:.2f}, T_min {t}",
                  AdaptiveT("confidence", t, AdaptiveT.threshold_for(s)))
                 for t in t_mins for s in thresholds]
    if run_rule is not None and run_rule.rule != "off":
        settings.append((f"--adaptive {run_rule.rule} (this run)", run_rule))
    test = next(iter(sets))
    rows = []
    for label, adapt in settings:
        passes = {k: adaptive_passes(v[0], adapt) for k, v in runs.items()}
        row = {"setting": label, "rule": adapt.rule, "t_min": adapt.t_min,
               "threshold": adapt.threshold,
               **_setting(runs, y, passes, frac_bits, cfg)}
        e = image_energies(shapes, runs[test][1].numpy(), N=hw.N, n_way=hw.n_way, R=hw.R,
                           passes=passes[test].numpy(), model=model)
        row["energy_pj"] = float(e["adaptive"].mean())
        row["energy_reuse_pj"] = float(e["both"].mean())
        rows.append(row)
    for r in rows:
        r["front"] = {"no reuse": [], "reuse": []}
    for series, ekey in (("no reuse", "energy_pj"), ("reuse", "energy_reuse_pj")):
        for key, _ in METRICS:
            flags = pareto_flags([r[ekey] for r in rows], [r[key] for r in rows])
            for r, f in zip(rows, flags):
                if f:
                    r["front"][series].append(key)
    full = rows[0]
    best = None
    for r in rows:
        ok = r["accuracy"] >= full["accuracy"] - TOLERANCE["accuracy"] and all(
            r["auroc"][k] >= full["auroc"][k] - TOLERANCE["auroc"] for k in full["auroc"])
        for reuse in (False, True):
            e = r["energy_reuse_pj" if reuse else "energy_pj"]
            if ok and (best is None or e < best["energy_pj"]):
                best = {"setting": r["setting"], "reuse": reuse, "energy_pj": e,
                        "energy_uj": e * 1e-6}
    return {"T_max": T_max, "t_mins": t_mins, "N": hw.N, "n_way": hw.n_way, "seed": seed,
            "thresholds": list(thresholds),
            "images": {k: len(v) for k, v in sets.items()},
            "sizes": dict(sizes) if sizes else {k: len(v) for k, v in sets.items()},
            "uncertainty": {"measure": cfg.uncertainty_measure,
                            "threshold": cfg.uncertainty_threshold, "mode": cfg.threshold_mode},
            "rows": rows, "tolerance": dict(TOLERANCE), "best_within_tolerance": best,
            "cache": cache_cost(hw, T_max, image_shape)}


def _f(v, d=2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def pareto_markdown(study: dict, figure: str | None = None) -> str:
    """The study as Markdown (from its JSON dict alone): one row per setting, the AUROC per
    OoD set, the lowest energy within tolerance of full T, the cache's block RAM."""
    rows, full = study["rows"], study["rows"][0]
    ood = list(full["auroc"])
    sub = [f"{k} {study['images'][k]} of {study['sizes'][k]}" for k in study["images"]
           if study["images"][k] != study["sizes"][k]]
    u = study["uncertainty"]
    L = [f"Golden integer model, T_max = {study['T_max']}, "
         f"N = {study['N']}, n = {study['n_way']}, the same crossbar choices for every setting "
         f"(seed {study['seed']}); images: "
         + ", ".join(f"{k} {v}" for k, v in study["images"].items())
         + (f" (subsampled: the first {'; '.join(sub)})" if sub else "") + ". Accuracy, UA ("
         f"{u['measure']}, {u['mode']} threshold {u['threshold']}) and AUROC (predictive "
         "entropy, test set against each OoD set) from the passes each image ran; energy: "
         "analytic, mean per test image (Table 4 energies, expected RNG draws). First-layer "
         "reuse: the counts the RTL's counters give with REUSE on (docs/HARDWARE.md).", "",
         "| setting | passes ID | passes OoD | acc. eq. 4 (%) | acc. hw class (%) | UA (%) | "
         "mean AUROC (%) | nJ / image | nJ / image, reuse | Pareto front (no reuse; reuse) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        front = "; ".join(", ".join(_SHORT[m] for m in r["front"][k]) or "-"
                          for k in ("no reuse", "reuse"))
        L.append(f"| {r['setting']} | {_f(r['passes_id'])} | {_f(r['passes_ood'])} | "
                 f"{_f(r['accuracy'])} | {_f(r['hw_accuracy'])} | {_f(r['ua'])} | "
                 f"{_f(r['auroc_mean'])} | {_f(r['energy_pj'] * 1e-3, 3)} | "
                 f"{_f(r['energy_reuse_pj'] * 1e-3, 3)} | {front} |")
    L += ["", "| setting | " + " | ".join(f"AUROC {k} (%)" for k in ood) + " |",
          "|---|" + "---:|" * len(ood)]
    for r in rows:
        L.append(f"| {r['setting']} | " + " | ".join(_f(r["auroc"][k]) for k in ood) + " |")
    b, tol = study["best_within_tolerance"], study["tolerance"]
    within = (f"within {tol['accuracy']} points of its accuracy and {tol['auroc']} points of "
              f"its AUROC on every OoD set")
    L += ["", f"Full T without reuse: {_f(full['energy_pj'] * 1e-3, 3)} nJ per image. "
          + (f"Lowest energy {within}: {_f(b['energy_pj'] * 1e-3, 3)} nJ = "
             f"{_f(b['energy_uj'], 4)} µJ per image ({b['setting']}, "
             f"{'with' if b['reuse'] else 'without'} reuse)." if b else
             f"No setting stays {within}.")]
    c = study["cache"]
    L += ["", f"First-layer cache (reuse): {c['words']} words of {c['word_bits']} bits "
          f"({c['bits']} bits); ECP5 block RAMs (DP16KD): {c['dp16kd']}.", ""]
    if figure:
        L += [f"![Energy against accuracy, UA and AUROC]({figure})", ""]
    return "\n".join(L)


def _tag(row: dict) -> str:
    if row["rule"] == "confidence":
        return f"c{row['threshold'] / 2 ** CONFIDENCE_BITS:.1f}/{row['t_min']}"
    return row["setting"]


def plot_pareto(study: dict, path) -> Path:
    """Energy per image against accuracy, UA and mean AUROC, one marker per setting, without
    and with first-layer reuse; the Pareto front of each series joined by a dashed line."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    from .checkpoint import atomic_write

    rows = study["rows"]
    fig = Figure(figsize=(13, 4.2))
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate(METRICS):
        ax = fig.add_subplot(1, 3, i + 1)
        for reuse, marker, name in ((False, "o", "no reuse"), (True, "s", "first-layer reuse")):
            e = [r["energy_reuse_pj" if reuse else "energy_pj"] * 1e-3 for r in rows]
            v = [r[key] for r in rows]
            ax.scatter(e, v, marker=marker, label=name, zorder=3)
            flags = pareto_flags(e, v)
            for r, x, yv, f in zip(rows, e, v, flags):
                if f:                       # name the front's settings only: readable
                    ax.annotate(_tag(r), (x, yv), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
            front = sorted(p for p, f in zip(zip(e, v), flags) if f)
            ax.plot(*zip(*front), lw=1, ls="--", label=f"Pareto front, {name}", zorder=2)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("energy per test image (nJ, analytic)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"Adaptive T (T_max = {study['T_max']}: full T, exact, confidence "
                 "c<vote share>/<T_min>; the Pareto fronts' settings named) "
                 "and first-layer reuse (analytic; the RTL's counts with REUSE on)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path


def subsample(data, ood: dict, max_test: int | None = None, max_ood: int | None = None
              ) -> tuple[dict, torch.Tensor, dict]:
    """(sets, test labels, sizes): the test set then the OoD sets, each cut to its first
    ``max_test`` / ``max_ood`` images (None: all), and every set's size before the cut."""
    for name, v in (("max_test", max_test), ("max_ood", max_ood)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, not {v!r}")
    full = {"test": data.x_test, **ood}
    sets = {k: x[:max_test if k == "test" else max_ood] for k, x in full.items()}
    return sets, data.y_test[:len(sets["test"])], {k: len(x) for k, x in full.items()}


def main(argv=None) -> int:
    """python -m spinbayes.golden.energy_pareto --checkpoint DIR --out DIR [...]"""
    import argparse
    import json
    import time

    from ..jsonable import to_jsonable
    from .checkpoint import atomic_write

    p = argparse.ArgumentParser(prog="python -m spinbayes.golden.energy_pareto",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None, help="the data set's directory (Config.data_dir)")
    p.add_argument("--max-test", type=int, default=None, help="first K test images (all)")
    p.add_argument("--max-ood", type=int, default=None, help="first K images per OoD set (all)")
    p.add_argument("--t-mins", type=int, nargs="+", default=list(DEFAULT_T_MINS),
                   help="T_min values of the confidence rule")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    from .. import workflow as wf

    wf.set_threads(a.threads)
    t0 = time.perf_counter()
    trained = wf.load(a.checkpoint, {"data_dir": a.data_dir} if a.data_dir else None)
    cfg = trained.cfg
    mapped = wf.map_trained(trained)
    sets, y, sizes = subsample(trained.data, wf.ood(trained), a.max_test, a.max_ood)
    t1 = time.perf_counter()
    study = pareto_study(mapped.hw(cfg.n_way), sets, y, cfg, T_max=cfg.T,
                         thresholds=tuple(a.thresholds), t_mins=tuple(a.t_mins),
                         seed=cfg.seed + 1, image_shape=trained.data.image_shape, sizes=sizes)
    study["seconds"] = time.perf_counter() - t1
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "pareto.json", json.dumps(study, indent=2, default=to_jsonable))
    plot_pareto(study, out / "pareto.png")
    text = pareto_markdown(study, "pareto.png")
    atomic_write(out / "pareto.md", text)
    print(text)
    print(f"load and map {t1 - t0:.0f} s, study {study['seconds']:.0f} s; wrote "
          f"{out / 'pareto.json'}, pareto.md, pareto.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
