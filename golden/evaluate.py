"""The evaluation of section 4: prediction error, R_cc / R_iu / UA and OoD detection.

:func:`evaluate` runs every method on the same test set and OoD sets, with the same T:

* ``BBB (float)``: full-precision Bayes by Backprop with per-weight Gaussian sampling (eq. 2);
* ``SpinBayes n=k``: N quantized crossbars per layer, k-way choice, BatchNorm re-calibrated;
* ``SpinBayes n=k, no re-cal.``: the same without re-calibration, to show what it buys.

:func:`tables_markdown` prints the results in the layout of the paper's Table 1 (error and
uncertainty metrics) and Table 3 (OoD detection per set), with the in-distribution
rejection rate, AUROC and FPR at 95 % TPR beside every detection rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..config import Config
from . import metrics
from .datasets import OOD_NAMES, Dataset
from .hardware import Agreement, compare_with_float
from .mapping import MappedModel, build_spinbayes
from .networks import BayesNet
from .train import bbb_predict

__all__ = ["MethodResult", "build_spinbayes", "evaluate", "evaluate_bbb", "evaluate_hardware",
           "evaluate_probs", "hardware_markdown", "spinbayes_entropies", "tables_markdown"]


@dataclass
class MethodResult:
    """All figures of one method (percentages)."""

    name: str
    accuracy: float
    error: float
    ratios: metrics.UncertaintyRatios
    ood: dict[str, metrics.OodResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "accuracy": self.accuracy, "error": self.error,
                "ratios": asdict(self.ratios),
                "ood": {k: asdict(v) for k, v in self.ood.items()}}


def _uncertainty(probs: torch.Tensor, measure: str):
    if measure == "mutual_information":
        return metrics.mutual_information(probs)
    if measure == "entropy":
        return metrics.normalized_entropy(probs)
    return metrics.pass_variance(probs)


def evaluate_probs(name: str, probs_test: torch.Tensor, y_test: torch.Tensor,
                   probs_ood: dict[str, torch.Tensor], cfg: Config) -> MethodResult:
    """Figures of one method from its per-pass probabilities (B, T, C) on each set."""
    acc = metrics.accuracy(probs_test, y_test)
    correct = (probs_test.mean(1).argmax(-1) == y_test).numpy()
    u = _uncertainty(probs_test, cfg.uncertainty_measure)
    thr = metrics.uncertainty_threshold(u, cfg.uncertainty_threshold, cfg.threshold_mode)
    ratios = metrics.uncertainty_ratios(correct, u, thr)
    ood = {k: metrics.ood_detection(probs_test, p, cfg.ood_quantile, cfg.ood_threshold)
           for k, p in probs_ood.items()}
    return MethodResult(name, acc, 100.0 - acc, ratios, ood)


def evaluate(mapped: MappedModel, data: Dataset, ood_sets: dict[str, torch.Tensor],
             cfg: Config, *, n_ways: tuple[int, ...] = (1, 2),
             progress: bool = True) -> list[MethodResult]:
    """Evaluate float BBB (``mapped.model``) and SpinBayes (each n in ``n_ways``, with and
    without BN re-calibration) on ``data``'s test set and every OoD set, T = ``cfg.T``."""
    from tqdm.auto import tqdm

    sets = {"test": data.x_test, **ood_sets}
    n_ways = tuple(n for n in dict.fromkeys(n_ways) if 1 <= n <= mapped.N)
    jobs = [("BBB (float)", None, None)]
    for n in n_ways:
        jobs.append((f"SpinBayes n={n}", n, cfg.recal_batches))
        if cfg.recal_batches:
            jobs.append((f"SpinBayes n={n}, no re-cal.", n, 0))
    results = []
    bar = tqdm(jobs, desc="evaluate", unit="method", disable=None if progress else True)
    for name, n, recal in bar:
        bar.set_postfix_str(name)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        if n is None:
            results.append(evaluate_bbb(mapped.model, data, ood_sets, cfg))
            continue
        net = mapped.net(n, recal)
        probs = {k: net.predict(x, cfg.T, generator=gen).probs for k, x in sets.items()}
        test = probs.pop("test")
        results.append(evaluate_probs(name, test, data.y_test, probs, cfg))
    return results


def spinbayes_entropies(mapped: MappedModel, data: Dataset,
                        ood_sets: dict[str, torch.Tensor], cfg: Config,
                        n_way: int) -> dict[str, torch.Tensor]:
    """Per-image normalised predictive entropy (B,) of ``SpinBayes n=n_way`` on the test set
    (key ``"test"``) and every OoD set, with the same network, T and generator seed as
    :func:`evaluate` (for histograms of in- versus out-of-distribution uncertainty)."""
    net = mapped.net(n_way)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return {k: torch.as_tensor(metrics.normalized_entropy(net.predict(x, cfg.T,
                                                                      generator=gen).probs))
            for k, x in {"test": data.x_test, **ood_sets}.items()}


def evaluate_bbb(model: BayesNet, data: Dataset, ood_sets: dict[str, torch.Tensor],
                 cfg: Config) -> MethodResult:
    """Full-precision BBB with per-weight Gaussian sampling (eq. 2), T = ``cfg.T``."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    probs = {k: bbb_predict(model, x, cfg.T, generator=gen)
             for k, x in {"test": data.x_test, **ood_sets}.items()}
    test = probs.pop("test")
    return evaluate_probs("BBB (float)", test, data.y_test, probs, cfg)


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def tables_markdown(results: list[MethodResult], cfg: Config, dataset: str) -> str:
    """Markdown tables in the layout of the paper's Tables 1 and 3, plus OoD details."""
    topo = cfg.topology if cfg.topology != "mlp" else "MLP " + "-".join(map(str, cfg.hidden))
    lines = [f"### Table 1: prediction error and uncertainty ({dataset}, {topo}, "
             f"N={cfg.N}, Q={cfg.Q}, T={cfg.T})", "",
             "| Method | Error (%) | R_iu (%) | R_cc (%) | UA (%) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {_fmt(r.error)} | {_fmt(r.ratios.R_iu)} | "
                     f"{_fmt(r.ratios.R_cc)} | {_fmt(r.ratios.UA)} |")
    mode = ("u_min + t(u_max - u_min)" if cfg.threshold_mode == "relative" else "t")
    lines += ["", f"Uncertain: {cfg.uncertainty_measure} > {mode}, "
              f"t = {cfg.uncertainty_threshold}.", ""]
    names = [k for k in OOD_NAMES if any(k in r.ood for r in results)]
    lines += [f"### Table 3: OoD detection (%), rule: reject if the {cfg.ood_quantile} "
              f"quantile of the T pass probabilities of the predicted class < "
              f"{cfg.ood_threshold}", "",
              "| Method | ID rejection | " + " | ".join(names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for r in results:
        idr = next(iter(r.ood.values())).id_rejection if r.ood else float("nan")
        lines.append(f"| {r.name} | {_fmt(idr)} | "
                     + " | ".join(_fmt(r.ood[k].detection) if k in r.ood else "-"
                                  for k in names) + " |")
    lines += ["", "### Threshold-free OoD: AUROC (%) / FPR at 95 % TPR (%), "
              "score = predictive entropy", "",
              "| Method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(
            f"{_fmt(r.ood[k].auroc)} / {_fmt(r.ood[k].fpr_at_95_tpr)}" if k in r.ood else "-"
            for k in names) + " |")
    return "\n".join(lines) + "\n"


def evaluate_hardware(mapped: MappedModel, data: Dataset, cfg: Config, *,
                      n_ways: tuple[int, ...] = (1, 2)) -> list[Agreement]:
    """The integer hardware mode against the float SpinBayes model, per n, same choices."""
    out = []
    for n in (n for n in dict.fromkeys(n_ways) if 1 <= n <= mapped.N):
        out.append(compare_with_float(mapped.net(n), mapped.hw(n), data.x_test,
                                      data.y_test, cfg.T,
                                      torch.Generator().manual_seed(cfg.seed + 1)))
    return out


def hardware_markdown(agreements: list[Agreement]) -> str:
    """Markdown table of :func:`evaluate_hardware`."""
    lines = ["### Integer hardware mode (docs/HARDWARE.md) against the float model, "
             "same crossbar choices", "",
             "| n | float acc. | hw acc. (host eq. 4) | hw acc. (hw class) | class agreement "
             "(host / hw / hw vs float logit mean) | hidden comparator outputs equal | "
             "max logit error |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for a in agreements:
        hidden = ", ".join(f"{h:.3f}" for h in a.hidden_agreement)
        lines.append(f"| {a.n_way} | {a.float_accuracy:.2f} | {a.host_accuracy:.2f} | "
                     f"{a.hw_accuracy:.2f} | {a.host_agreement:.2f} / {a.hw_agreement:.2f} / "
                     f"{a.logit_agreement:.2f} | "
                     f"{hidden} | {a.max_logit_error:.2e} |")
    lines += ["", "hw class = argmax of the T-summed integer logits (the hardware's averaging "
              "block); host eq. 4 = mean of softmax(y / 2^F) over the T passes.", ""]
    return "\n".join(lines)
