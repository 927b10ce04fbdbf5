"""The n-way study of section 4.4: SpinBayes accuracy against OoD detection for n = 1, 2, 3
crossbars chosen and averaged per layer and pass, on the same T, sets and seeds as the
evaluation (:mod:`spinbayes.golden.evaluate`)."""

from __future__ import annotations

import math

import torch

from ..config import Config
from .approximation import CrossbarImages
from .datasets import Dataset
from .evaluate import (
    MethodResult,
    build_spinbayes,
    evaluation_sets,
    result_from_sets,
    spinbayes_probs,
)
from .networks import BayesNet
from .progress import progress as progress_bar

__all__ = ["nway_markdown", "nway_study"]


def nway_study(model: BayesNet, images: CrossbarImages, data: Dataset,
               ood_sets: dict[str, torch.Tensor], cfg: Config, *,
               n_ways: tuple[int, ...] = (1, 2, 3), progress: bool = True
               ) -> dict[int, MethodResult]:
    """SpinBayes for each n-way of ``n_ways`` (section 4.4), same T, sets and seeds.

    Each network is re-calibrated with ``cfg.recal_batches`` as in
    :func:`~spinbayes.golden.evaluate.evaluate`, and its choices are drawn from a generator
    seeded with ``cfg.seed + 1``. Returns n -> result named ``"SpinBayes n=<n>"``.
    """
    if not n_ways or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= images.N
                         for n in n_ways):
        raise ValueError(f"n_ways must be integers in 1..N={images.N}, not {n_ways!r}")
    out = {}
    for n in progress_bar(dict.fromkeys(n_ways), desc="n-way study", unit="n",
                          enabled=progress):
        net = build_spinbayes(images, model, data.x_train, n, cfg.recal_batches, cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        probs = {k: spinbayes_probs(net, x, cfg.T, gen, progress=progress,
                                    desc=f"SpinBayes n={n}: {k}")
                 for k, x in evaluation_sets(data, ood_sets).items()}
        out[n] = result_from_sets(f"SpinBayes n={n}", probs, data.y_test, cfg)
    return out


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def nway_markdown(study: dict[int, MethodResult]) -> str:
    """Markdown table of :func:`nway_study`: accuracy against OoD detection per n.

    Detection and AUROC are means over the OoD sets; "change" is the relative change of the
    mean detection against the smallest n (the paper: n > 1 loses more than 40 %).
    """
    if not study:
        raise ValueError("the n-way study is empty")
    base = _mean(r.ood[k].detection for r in [study[min(study)]] for k in r.ood)
    lines = ["### n-way study (section 4.4): accuracy against OoD detection", "",
             "| n | Accuracy (%) | ID rejection (%) | mean OoD detection (%) | "
             f"change vs n={min(study)} (%) | mean AUROC (%) |", "|---:|---:|---:|---:|---:|---:|"]
    for n, r in sorted(study.items()):
        det = _mean(v.detection for v in r.ood.values())
        idr = next(iter(r.ood.values())).id_rejection if r.ood else float("nan")
        change = 100.0 * (det - base) / base if base > 0 else float("nan")
        cells = [r.accuracy, idr, det, change, _mean(v.auroc for v in r.ood.values())]
        lines.append(f"| {n} | " + " | ".join("n/a" if math.isnan(c) else f"{c:.2f}"
                                              for c in cells) + " |")
    return "\n".join(lines) + "\n"
