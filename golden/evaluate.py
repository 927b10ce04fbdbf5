"""The evaluation of section 4: prediction error, R_cc / R_iu / UA and OoD detection.

:func:`evaluate` runs every method on the same test set and OoD sets, with the same T:

* ``BBB (float)``: full-precision Bayes by Backprop with per-weight Gaussian sampling (eq. 2);
* ``SpinBayes n=k``: N quantized crossbars per layer, k-way choice, BatchNorm re-calibrated;
* ``SpinBayes n=k, no re-cal.``: the same without re-calibration, to show what it buys.

:func:`tables_markdown` prints the results in the layout of the paper's Table 1 (error and
uncertainty metrics) and Table 3 (OoD detection per set), with the in-distribution
rejection rate, AUROC and FPR at 95 % TPR beside every detection rate, and Table 3 again at
an operating point chosen on in-distribution images outside the test set
(:func:`~spinbayes.golden.metrics.choose_ood_threshold`,
:func:`~spinbayes.golden.datasets.calibration_images`).

Every path runs in batches whose size bounds the memory (:data:`SPINBAYES_ROWS`,
:data:`HARDWARE_ROWS` image-passes, :data:`BBB_BATCH` images) and gives the same numbers
as one batch: random draws that are shared by a set's images (crossbar choices, weight
samples) are made once per set, in the order one batch would make them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..config import Config
from . import metrics
from .datasets import OOD_NAMES, Dataset, calibration_images
from .hardware import Agreement, compare_with_float
from .inference import SpinBayesNet, sample_choices
from .mapping import MappedModel, build_spinbayes
from .networks import BayesNet
from .progress import progress as progress_bar
from .train import bbb_predict

__all__ = ["BBB_BATCH", "CALIBRATION", "HARDWARE_ROWS", "PAPER_MNIST_TABLE1",
           "PAPER_MNIST_TABLE3", "SPINBAYES_ROWS", "MethodResult",
           "batch_images", "build_spinbayes", "evaluate", "evaluate_bbb", "evaluate_hardware",
           "evaluate_probs", "evaluation_sets", "hardware_markdown", "result_from_sets",
           "spinbayes_entropies", "spinbayes_probs", "tables_markdown"]

#: Image-passes per batch of the SpinBayes float model and of the hardware-mode check (its
#: integer reference keeps every layer's sums and unfolded inputs in int64 / float64: about
#: 0.6 MB per image-pass on LeNet-5), and images per batch of float BBB.
SPINBAYES_ROWS = 5120
HARDWARE_ROWS = 1280
BBB_BATCH = 1024
#: Key of the in-distribution images the OoD operating point is chosen on, in the sets
#: handed to the prediction functions (after the test set and the OoD sets).
CALIBRATION = "in-distribution (calibration)"


def batch_images(T: int, rows: int) -> int:
    """Images per batch so that a batch holds at most ``rows`` image-passes (at least 1)."""
    return max(1, rows // T)


@dataclass
class MethodResult:
    """All figures of one method (percentages)."""

    name: str
    accuracy: float
    error: float
    ratios: metrics.UncertaintyRatios
    ood: dict[str, metrics.OodResult] = field(default_factory=dict)
    operating_point: metrics.OperatingPoint | None = None
    score_points: dict[str, metrics.OperatingPoint] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "accuracy": self.accuracy, "error": self.error,
                "ratios": asdict(self.ratios),
                "ood": {k: asdict(v) for k, v in self.ood.items()},
                "operating_point": (asdict(self.operating_point)
                                    if self.operating_point is not None else None),
                "score_points": {k: asdict(v) for k, v in self.score_points.items()}}


def _uncertainty(probs: torch.Tensor, measure: str):
    if measure == "mutual_information":
        return metrics.mutual_information(probs)
    if measure == "entropy":
        return metrics.normalized_entropy(probs)
    return metrics.pass_variance(probs)


def evaluate_probs(name: str, probs_test: torch.Tensor, y_test: torch.Tensor,
                   probs_ood: dict[str, torch.Tensor], cfg: Config,
                   probs_calib: torch.Tensor | None = None) -> MethodResult:
    """Figures of one method from its per-pass probabilities (B, T, C) on each set; with
    ``probs_calib`` (in-distribution images outside the test set), also the OoD rule at the
    threshold chosen on them for ``cfg.ood_target_rejection``, and the predictive entropy and
    the mutual information at their thresholds chosen the same way (``score_points``)."""
    acc = metrics.accuracy(probs_test, y_test)
    correct = (probs_test.mean(1).argmax(-1) == y_test).numpy()
    u = _uncertainty(probs_test, cfg.uncertainty_measure)
    thr = metrics.uncertainty_threshold(u, cfg.uncertainty_threshold, cfg.threshold_mode)
    ratios = metrics.uncertainty_ratios(correct, u, thr)
    op, points = None, {}
    if probs_calib is not None:
        op = metrics.choose_ood_threshold(probs_calib, cfg.ood_quantile,
                                          cfg.ood_target_rejection)
        points = {s: metrics.choose_score_threshold(probs_calib, s, cfg.ood_quantile,
                                                    cfg.ood_target_rejection)
                  for s in metrics.OOD_SCORES if s != "rule"}
    ood = {k: metrics.ood_detection(probs_test, p, cfg.ood_quantile, cfg.ood_threshold,
                                    None if op is None else op.threshold,
                                    tuple(points.values()))
           for k, p in probs_ood.items()}
    return MethodResult(name, acc, 100.0 - acc, ratios, ood, op, points)


def result_from_sets(name: str, probs: dict[str, torch.Tensor], y_test: torch.Tensor,
                     cfg: Config) -> MethodResult:
    """:func:`evaluate_probs` of the probabilities of {"test", OoD sets..., CALIBRATION}."""
    probs = dict(probs)
    test, calib = probs.pop("test"), probs.pop(CALIBRATION, None)
    return evaluate_probs(name, test, y_test, probs, cfg, calib)


def evaluation_sets(data: Dataset,
                    ood_sets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sets every method predicts, in this order: test, OoD sets, calibration."""
    return {"test": data.x_test, **ood_sets, CALIBRATION: calibration_images(data)[0]}


@torch.no_grad()
def spinbayes_probs(net: SpinBayesNet, x: torch.Tensor, T: int,
                    generator: torch.Generator | None = None, *, batch_size: int | None = None,
                    progress: bool = False, desc: str = "SpinBayes") -> torch.Tensor:
    """Per-pass probabilities (B, T, C) of ``net`` on x: the choices of all B images are
    drawn at once (as one batch would draw them), then the images run in batches of
    ``batch_size`` (default: :data:`SPINBAYES_ROWS` image-passes)."""
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, not {T!r}")
    net.check_input(x)
    net.eval()
    choices = sample_choices(net.num_layers, len(x), T, net.N, net.n_way, generator)
    bs = batch_size or batch_images(T, SPINBAYES_ROWS)
    return torch.cat([net(x[i:i + bs], choices=choices[:, i:i + bs]).probs
                      for i in progress_bar(range(0, len(x), bs), desc=desc, unit="batch",
                                            enabled=progress, leave=False)])


def evaluate(mapped: MappedModel, data: Dataset, ood_sets: dict[str, torch.Tensor],
             cfg: Config, *, n_ways: tuple[int, ...] = (1, 2),
             progress: bool = True) -> list[MethodResult]:
    """Evaluate float BBB (``mapped.model``) and SpinBayes (each n in ``n_ways``, with and
    without BN re-calibration) on ``data``'s test set and every OoD set, T = ``cfg.T``, and
    each at the OoD operating point chosen on :func:`calibration_images`."""
    n_ways = tuple(n for n in dict.fromkeys(n_ways) if 1 <= n <= mapped.N)
    jobs = [("BBB (float)", None, None)]
    for n in n_ways:
        jobs.append((f"SpinBayes n={n}", n, cfg.recal_batches))
        if cfg.recal_batches:
            jobs.append((f"SpinBayes n={n}, no re-cal.", n, 0))
    results = []
    bar = progress_bar(jobs, desc="evaluate", unit="method", enabled=progress)
    for name, n, recal in bar:
        bar.set_postfix_str(name)
        if n is None:
            results.append(evaluate_bbb(mapped.model, data, ood_sets, cfg, progress=progress))
            continue
        net = mapped.net(n, recal)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        probs = {k: spinbayes_probs(net, x, cfg.T, gen, progress=progress, desc=f"{name}: {k}")
                 for k, x in evaluation_sets(data, ood_sets).items()}
        results.append(result_from_sets(name, probs, data.y_test, cfg))
    return results


def spinbayes_entropies(mapped: MappedModel, data: Dataset,
                        ood_sets: dict[str, torch.Tensor], cfg: Config,
                        n_way: int) -> dict[str, torch.Tensor]:
    """Per-image normalised predictive entropy (B,) of ``SpinBayes n=n_way`` on the test set
    (key ``"test"``) and every OoD set, with the same network, T and generator seed as
    :func:`evaluate` (for histograms of in- versus out-of-distribution uncertainty)."""
    net = mapped.net(n_way)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return {k: torch.as_tensor(metrics.normalized_entropy(spinbayes_probs(net, x, cfg.T, gen)))
            for k, x in {"test": data.x_test, **ood_sets}.items()}


def evaluate_bbb(model: BayesNet, data: Dataset, ood_sets: dict[str, torch.Tensor],
                 cfg: Config, *, progress: bool = False) -> MethodResult:
    """Full-precision BBB with per-weight Gaussian sampling (eq. 2), T = ``cfg.T``."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    probs = {k: bbb_predict(model, x, cfg.T, generator=gen, batch_size=BBB_BATCH,
                            progress=progress, desc=f"BBB (float): {k}")
             for k, x in evaluation_sets(data, ood_sets).items()}
    return result_from_sets("BBB (float)", probs, data.y_test, cfg)


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _ood_lines(cfg: Config, ood_sizes: dict[str, int] | None, notes) -> list[str]:
    lines = []
    if ood_sizes is not None:
        lines.append(f"OoD sets (each holds at most --ood-samples = {cfg.ood_samples} images): "
                     + ", ".join(f"{k} {v}" for k, v in ood_sizes.items()) + ".")
    lines += [f"{note}." for note in notes]
    return [*lines, ""] if lines else []


#: The paper's Table 1 rows for MNIST, LeNet-5: error, R_iu, R_cc, UA (%).
PAPER_MNIST_TABLE1 = {"BB-BackProp": (0.75, 94.94, 99.95, 91.99),
                      "Proposed (SpinBayes)": (0.77, 96.81, 99.96, 85.10)}
#: The paper's Table 3 row for MNIST, LeNet-5 (OoD detection, %), under our OoD sets' names;
#: the paper has no natural-image set of ours: its SVHN and STL10 columns are both 100.0.
PAPER_MNIST_TABLE3 = {"gaussian": 100.0, "noisy": 99.21, "fakedata": 100.0,
                      "natural": 100.0, "fashion-mnist": 100.0}


def _paper_rows(cfg: Config, dataset: str) -> bool:
    """Whether the paper's MNIST LeNet-5 rows belong beside this run's tables."""
    return cfg.topology == "lenet5" and dataset.split()[0] == "mnist"


def tables_markdown(results: list[MethodResult], cfg: Config, dataset: str, *,
                    ood_sizes: dict[str, int] | None = None, notes=(),
                    calibration: str | None = None) -> str:
    """Markdown tables in the layout of the paper's Tables 1 and 3, plus OoD details: the
    size of every OoD set (``ood_sizes``), ``notes`` on them, and Table 3 at the operating
    point of each method chosen on ``calibration`` (what those images are)."""
    topo = cfg.topology if cfg.topology != "mlp" else "MLP " + "-".join(map(str, cfg.hidden))
    lines = [f"### Table 1: prediction error and uncertainty ({dataset}, {topo}, "
             f"N={cfg.N}, Q={cfg.Q}, T={cfg.T})", "",
             "| Method | Error (%) | R_iu (%) | R_cc (%) | UA (%) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {_fmt(r.error)} | {_fmt(r.ratios.R_iu)} | "
                     f"{_fmt(r.ratios.R_cc)} | {_fmt(r.ratios.UA)} |")
    if _paper_rows(cfg, dataset):
        for name, vals in PAPER_MNIST_TABLE1.items():
            lines.append(f"| paper, {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    mode = ("u_min + t(u_max - u_min)" if cfg.threshold_mode == "relative" else "t")
    lines += ["", f"Uncertain: {cfg.uncertainty_measure} > {mode}, "
              f"t = {cfg.uncertainty_threshold}.", ""]
    names = [k for k in OOD_NAMES if any(k in r.ood for r in results)]
    head = ["| Method | ID rejection | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names)]
    lines += [f"### Table 3: OoD detection (%), rule: reject if the {cfg.ood_quantile} "
              f"quantile of the T pass probabilities of the predicted class < "
              f"{cfg.ood_threshold}", "", *head]
    for r in results:
        idr = next(iter(r.ood.values())).id_rejection if r.ood else float("nan")
        lines.append(f"| {r.name} | {_fmt(idr)} | "
                     + " | ".join(_fmt(r.ood[k].detection) if k in r.ood else "-"
                                  for k in names) + " |")
    if _paper_rows(cfg, dataset):
        lines.append("| paper, Proposed (SpinBayes) | not reported | " + " | ".join(
            _fmt(PAPER_MNIST_TABLE3[k]) for k in names) + " |")
        lines += ["", "Paper rows: the paper's Tables 1 and 3 (MNIST, LeNet-5); its natural-image "
                  "OoD sets are SVHN and STL10 (both 100.0), ours is the bundled natural-image "
                  "set."]
    lines += ["", *_ood_lines(cfg, ood_sizes, notes)]
    ops = [r for r in results if r.operating_point is not None and r.ood]
    if ops:
        target = ops[0].operating_point.target
        lines += [f"### OoD detection (%) at a stated operating point: Table 3's rule, its "
                  f"threshold chosen per method so that at most {target:g} % of "
                  f"{calibration or 'in-distribution images outside the test set'} are "
                  f"rejected", "",
                  "| Method | threshold | rejected there | ID rejection (test) | "
                  + " | ".join(names) + " |", "|---|---:|---:|---:|" + "---:|" * len(names)]
        for r in ops:
            op = r.operating_point
            idr = next(iter(r.ood.values())).op_id_rejection
            lines.append(f"| {r.name} | {op.threshold:.6g} | {_fmt(op.rejection)} | "
                         f"{_fmt(idr)} | " + " | ".join(
                             _fmt(r.ood[k].op_detection) if k in r.ood else "-"
                             for k in names) + " |")
        lines.append("")
        lines += _score_point_lines(ops, names, target)
    lines += ["### Threshold-free OoD: AUROC (%) / FPR at 95 % TPR (%), "
              "score = predictive entropy", "",
              "| Method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(
            f"{_fmt(r.ood[k].auroc)} / {_fmt(r.ood[k].fpr_at_95_tpr)}" if k in r.ood else "-"
            for k in names) + " |")
    return "\n".join(lines) + "\n"


_SCORE_NAMES = {"entropy": "predictive entropy", "mutual_information": "mutual information"}


def _score_point_lines(results: list[MethodResult], names: list[str],
                       target: float) -> list[str]:
    """The table of the uncertainty scores' operating points (reject u > threshold)."""
    rows = [(r, p) for r in results for p in r.score_points.values()]
    if not rows:
        return []
    lines = [f"### OoD detection (%) at the same stated operating point, score = an "
             f"uncertainty (reject when it exceeds a threshold chosen so that at most "
             f"{target:g} % of the same images are rejected)", "",
             "| Method | score | threshold | rejected there | ID rejection (test) | "
             + " | ".join(names) + " |", "|---|---|---:|---:|---:|" + "---:|" * len(names)]
    for r, p in rows:
        idr = next(iter(r.ood.values())).score_id_rejection.get(p.score, float("nan"))
        lines.append(f"| {r.name} | {_SCORE_NAMES.get(p.score, p.score)} | {p.threshold:.6g} | "
                     f"{_fmt(p.rejection)} | {_fmt(idr)} | " + " | ".join(
                         _fmt(r.ood[k].score_detection.get(p.score, float("nan")))
                         if k in r.ood else "-" for k in names) + " |")
    return [*lines, ""]


def evaluate_hardware(mapped: MappedModel, data: Dataset, cfg: Config, *,
                      n_ways: tuple[int, ...] = (1, 2), progress: bool = False,
                      batch_size: int | None = None) -> list[Agreement]:
    """The integer hardware mode against the float SpinBayes model, per n, same choices, on
    the whole test set in batches of ``batch_size`` images (default:
    :data:`HARDWARE_ROWS` image-passes)."""
    bs = batch_size or batch_images(cfg.T, HARDWARE_ROWS)
    out = []
    for n in (n for n in dict.fromkeys(n_ways) if 1 <= n <= mapped.N):
        out.append(compare_with_float(mapped.net(n), mapped.hw(n), data.x_test,
                                      data.y_test, cfg.T,
                                      torch.Generator().manual_seed(cfg.seed + 1),
                                      batch_size=bs, progress=progress,
                                      desc=f"hardware mode n={n}"))
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
