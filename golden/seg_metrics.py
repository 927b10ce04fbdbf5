"""Per-pixel metrics of segmentation (paper section 4.1, Table 2, Fig. 6).

``probs`` are per-pass softmax probabilities of shape (B, T, C, H, W); ``labels`` are class
indices (B, H, W), where -1 marks an ignored pixel (left out of every figure).

* Prediction: the per-pixel class is argmax_c of the mean over the T passes (eq. 4). Pixel
  accuracy, per-class accuracy (recall) and its mean ("Mean acc." of Table 2), per-class
  IoU = TP / (TP + FP + FN) and its mean over the classes that occur (in the labels or the
  prediction), all from one confusion matrix (``sklearn.metrics.confusion_matrix``).
* R_cc, R_iu, UA: :func:`~spinbayes.golden.metrics.uncertainty_ratios` with every valid
  pixel as one prediction, the score of ``cfg.uncertainty_measure`` per pixel and the
  threshold of ``cfg.threshold_mode`` placed over all test pixels (Mobiny et al.'s
  segmentation code does the same with the mutual information, docs/METRICS.md).
* The confidence mask (section 4.1: "the class-wise sum of the normalized variance of T
  forward passes"), :func:`confidence_mask`:

      U(x) = sum_c Var_t(p_t[c](x)) / (1 - 1/C),

  the population variance (ddof = 0) over the T passes, summed over the C classes and
  divided by its largest possible value, so U lies in [0, 1] whatever C and T: with
  p_t[c] in [0, 1], Var_t p[c] = mean_t p[c]^2 - pbar[c]^2 <= pbar[c] - pbar[c]^2, so
  sum_c Var <= 1 - sum_c pbar[c]^2 <= 1 - 1/C (Cauchy-Schwarz); both are equalities when
  every pass is one-hot and the passes' classes are equally frequent. U = 0 when all
  passes agree. Fig. 6 shows 1 - U ("white regions are ... certain").
* Boundary band: pixels whose 3x3 neighbourhood holds another ground-truth class; the mean
  U there against elsewhere tells whether the map lights up at object boundaries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix

from ..config import Config
from . import metrics

__all__ = ["SegResult", "boundary_band", "class_accuracy", "confidence_mask", "confusion",
           "evaluate_seg", "iou", "pixel_uncertainty", "table2_markdown"]


def _check(probs: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    if probs.dim() != 5:
        raise ValueError(f"probs must have shape (B, T, C, H, W), not {tuple(probs.shape)}")
    if torch.isnan(probs).any():
        raise ValueError("probs contains NaN")
    if labels is not None:
        want = (probs.shape[0], *probs.shape[3:])
        if tuple(labels.shape) != want:
            raise ValueError(f"labels must have shape (B, H, W) = {want}, "
                             f"not {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= probs.shape[2]):
            raise ValueError(f"labels must lie in -1..{probs.shape[2] - 1}")


def confusion(pred, labels, num_classes: int) -> np.ndarray:
    """Confusion matrix (C, C): rows true class, columns predicted; label -1 ignored."""
    p = torch.as_tensor(pred).reshape(-1).numpy()
    y = torch.as_tensor(labels).reshape(-1).numpy()
    if p.shape != y.shape:
        raise ValueError(f"pred and labels differ in size: {p.size} and {y.size}")
    keep = y >= 0
    return confusion_matrix(y[keep], p[keep], labels=np.arange(num_classes))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return 100.0 * out


def iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU (%) TP / (TP + FP + FN); NaN for a class absent from truth and
    prediction."""
    tp = np.diag(conf).astype(np.float64)
    return _ratio(tp, conf.sum(0) + conf.sum(1) - tp)


def class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Per-class accuracy (recall, %) TP / (TP + FN); NaN for a class absent from the truth."""
    return _ratio(np.diag(conf).astype(np.float64), conf.sum(1).astype(np.float64))


def confidence_mask(probs: torch.Tensor) -> torch.Tensor:
    """The normalised class-wise variance U (B, H, W) in [0, 1] (module docstring)."""
    _check(probs)
    C = probs.shape[2]
    var = probs.double().var(dim=1, unbiased=False).sum(dim=1)
    return (var / (1.0 - 1.0 / C)).clamp(0.0, 1.0).to(probs.dtype)


def pixel_uncertainty(probs: torch.Tensor, measure: str) -> torch.Tensor:
    """Per-pixel score (B, H, W) of ``measure``: mutual_information, entropy (normalised
    predictive entropy) or variance (the confidence mask U)."""
    if measure == "variance":
        return confidence_mask(probs)
    _check(probs)
    B, T, C, H, W = probs.shape
    flat = probs.permute(0, 3, 4, 1, 2).reshape(-1, T, C)
    if measure == "mutual_information":
        u = metrics.mutual_information(flat)
    elif measure == "entropy":
        u = metrics.normalized_entropy(flat)
    else:
        raise ValueError(f"measure must be mutual_information, entropy or variance, "
                         f"not {measure!r}")
    return torch.from_numpy(u).reshape(B, H, W)


def boundary_band(labels: torch.Tensor) -> torch.Tensor:
    """Bool (B, H, W): pixels with another class in their 3x3 neighbourhood."""
    y = labels.float()[:, None]
    hi = F.max_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    lo = -F.max_pool2d(F.pad(-y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (hi != lo)[:, 0]


@dataclass
class SegResult:
    """Table 2's figures for one method (percent), and the confidence-mask statistics."""

    name: str
    pixel_acc: float
    mean_acc: float
    mean_iou: float
    iou: list[float]
    ratios: metrics.UncertaintyRatios
    u_correct: float       # mean U on correctly classified pixels
    u_incorrect: float     # mean U on misclassified pixels
    u_boundary: float      # mean U on the ground-truth boundary band
    u_interior: float      # mean U elsewhere
    errors_on_boundary: float  # % of the misclassified pixels that lie on the band

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = asdict(self.ratios)
        return d


def _mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float(x[mask].double().mean()) if mask.any() else float("nan")


def evaluate_seg(name: str, probs: torch.Tensor, labels: torch.Tensor,
                 cfg: Config) -> SegResult:
    """Every figure of one method from its per-pass probabilities (B, T, C, H, W)."""
    _check(probs, labels)
    C = probs.shape[2]
    pred = probs.mean(dim=1).argmax(dim=1)
    valid = labels >= 0
    if not valid.any():
        raise ValueError("every pixel is ignored (label -1); nothing to evaluate")
    conf = confusion(pred, labels, C)
    correct = (pred == labels) & valid
    wrong = (pred != labels) & valid
    u = pixel_uncertainty(probs, cfg.uncertainty_measure)
    thr = metrics.uncertainty_threshold(u[valid].numpy(), cfg.uncertainty_threshold,
                                        cfg.threshold_mode)
    ratios = metrics.uncertainty_ratios(correct[valid].numpy(), u[valid].numpy(), thr)
    U = confidence_mask(probs)
    band = boundary_band(labels.clamp(min=-1)) & valid
    ious = iou(conf)
    return SegResult(
        name=name,
        pixel_acc=100.0 * float(np.trace(conf)) / float(conf.sum()),
        mean_acc=float(np.nanmean(class_accuracy(conf))),
        mean_iou=float(np.nanmean(ious)),
        iou=[float(v) for v in ious],
        ratios=ratios,
        u_correct=_mean(U, correct), u_incorrect=_mean(U, wrong),
        u_boundary=_mean(U, band), u_interior=_mean(U, valid & ~band),
        errors_on_boundary=(100.0 * float((wrong & band).sum()) / float(wrong.sum())
                            if wrong.any() else float("nan")))


def _f(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def table2_markdown(results: list[SegResult], title: str, class_names: tuple[str, ...],
                    cfg: Config) -> str:
    """Table 2's layout for one data set, then per-class IoU and the confidence mask."""
    lines = [f"### Table 2: {title}", "",
             "| Method | Pixel acc. (%) | Mean acc. (%) | mean IoU (%) | R_iu (%) | R_cc (%) "
             "| UA (%) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {_f(r.pixel_acc)} | {_f(r.mean_acc)} | {_f(r.mean_iou)} | "
                     f"{_f(r.ratios.R_iu)} | {_f(r.ratios.R_cc)} | {_f(r.ratios.UA)} |")
    mode = "u_min + t(u_max - u_min) over all test pixels" if cfg.threshold_mode == "relative" \
        else "t"
    lines += ["", f"Per pixel; uncertain: {cfg.uncertainty_measure} > {mode}, "
              f"t = {cfg.uncertainty_threshold}.", "",
              "| Method | " + " | ".join(f"IoU {c} (%)" for c in class_names) + " |",
              "|---|" + "---:|" * len(class_names)]
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(_f(v) for v in r.iou) + " |")
    lines += ["", "Confidence mask U = sum_c Var_t p_t[c] / (1 - 1/C) in [0, 1] "
              "(docs/SEGMENTATION.md): mean on correct against incorrect pixels, and on the "
              "ground-truth boundary band (3x3) against elsewhere.", "",
              "| Method | U correct | U incorrect | incorrect / correct | U boundary | "
              "U elsewhere | errors on the band (%) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = r.u_incorrect / r.u_correct if r.u_correct > 0 else float("nan")
        lines.append(f"| {r.name} | {_f(r.u_correct, 4)} | {_f(r.u_incorrect, 4)} | "
                     f"{_f(ratio, 1)} | {_f(r.u_boundary, 4)} | {_f(r.u_interior, 4)} | "
                     f"{_f(r.errors_on_boundary, 1)} |")
    return "\n".join(lines) + "\n"
