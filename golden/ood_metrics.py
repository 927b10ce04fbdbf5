"""Out-of-distribution metrics of the SpinBayes evaluation (sec. 4.1): the paper's OoD rule,
its operating point at a stated in-distribution rejection, the uncertainty scores' operating
points and threshold-free detection (AUROC, FPR at 95 % TPR). ``probs`` holds per-pass
softmax probabilities (B, T, C). Re-exported by :mod:`spinbayes.golden.metrics`; definitions
in docs/METRICS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from .entropies import _probs, mutual_information, predictive_entropy

__all__ = [
    "OOD_SCORES",
    "OodResult",
    "OperatingPoint",
    "choose_ood_threshold",
    "choose_score_threshold",
    "ood_detection",
    "ood_rejected",
    "ood_rule_score",
    "ood_score",
    "score_rejected",
]


def _check_quantile(quantile: float) -> None:
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile!r}")


def ood_rule_score(probs, quantile: float = 0.99) -> np.ndarray:
    """The score s of :func:`ood_rejected` (float64, shape (B,)): the ``quantile`` quantile
    over the T passes of the probability of the predicted class. Each s is one of the
    pass probabilities, so it is exact in the precision of ``probs``."""
    p, _ = _probs(probs)
    _check_quantile(quantile)
    y_hat = p.mean(axis=1).argmax(axis=1)
    p_hat = np.take_along_axis(p, y_hat[:, None, None], axis=2)[:, :, 0]  # (B, T)
    if p_hat.shape[0] == 0:
        return np.zeros(0)
    s = torch.quantile(torch.from_numpy(p_hat), quantile, dim=1, interpolation="higher")
    return s.numpy()


def ood_rejected(probs, quantile: float = 0.99, threshold: float = 0.9) -> np.ndarray:
    """The paper's OoD rule: reject an input whose pass probabilities stay below ``threshold``.

    With y_hat = argmax_c mean_t p_t[c], s is the ``quantile`` quantile over the T passes of
    p_t[y_hat] (``torch.quantile`` with ``interpolation="higher"``); the input is rejected iff
    s < threshold. For T = 10 and quantile 0.99, s = max_t p_t[y_hat]: an input is rejected
    when all ten passes give the predicted class less than 90 %. A value exactly equal to the
    threshold (compared in the precision of ``probs``) is not rejected.

    Parameters
    ----------
    probs : array-like, shape (B, T, C)
    quantile : float in [0, 1]
    threshold : float in (0, 1]

    Returns
    -------
    np.ndarray of bool, shape (B,)
    """
    _, dtype = _probs(probs)
    _check_quantile(quantile)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    return ood_rule_score(probs, quantile) < float(dtype.type(threshold))


@dataclass(frozen=True)
class OperatingPoint:
    """The paper's OoD rule at a threshold chosen on in-distribution data
    (:func:`choose_ood_threshold`).

    Attributes
    ----------
    target : float
        Percent of the in-distribution images the rule may reject.
    threshold : float
        The chosen threshold of :func:`ood_rejected` (same quantile).
    rejection : float
        Percent of the images it was chosen on that the rule rejects at ``threshold``.
    images : int
        How many images it was chosen on.
    score : str
        One of :data:`OOD_SCORES`: ``"rule"`` (the paper's rule, reject s < threshold) or a
        score where higher means more OoD (reject u > threshold), see
        :func:`choose_score_threshold`.
    """

    target: float
    threshold: float
    rejection: float
    images: int
    score: str = "rule"


def choose_ood_threshold(probs_in, quantile: float = 0.99,
                         target: float = 0.05) -> OperatingPoint:
    """The largest threshold at which the paper's rule rejects at most ``target`` (a
    fraction in (0, 1)) of the in-distribution ``probs_in`` (B, T, C).

    With s sorted ascending and k = floor(target * B), the threshold is s[k]: the rule
    rejects s < s[k], at most k images (fewer when s[k] is tied with lower scores); no larger
    threshold keeps to k. Since s[k] is one of the pass probabilities it is compared exactly.
    """
    if isinstance(target, bool) or not isinstance(target, int | float) \
            or not 0.0 < target < 1.0:
        raise ValueError(f"target must be a fraction in (0, 1), not {target!r}")
    s = np.sort(ood_rule_score(probs_in, quantile))
    if len(s) == 0:
        raise ValueError("probs_in must hold at least one input to choose a threshold on")
    k = math.floor(target * len(s) + 1e-9)
    threshold = max(float(s[min(k, len(s) - 1)]), float(np.finfo(np.float32).tiny))
    threshold = min(threshold, 1.0)
    rejected = ood_rejected(probs_in, quantile, threshold)
    return OperatingPoint(100.0 * target, threshold, 100.0 * float(rejected.mean()), len(s))


#: Scores an OoD operating point can threshold: the paper's rule score (:func:`ood_rule_score`,
#: lower = more OoD) and two uncertainties (higher = more OoD).
OOD_SCORES = ("rule", "entropy", "mutual_information")


def _outlier_score(probs, score: str) -> np.ndarray:
    if score == "entropy":
        return predictive_entropy(probs)
    if score == "mutual_information":
        return mutual_information(probs)
    raise ValueError(f"score must be one of {OOD_SCORES}, not {score!r}")


def choose_score_threshold(probs_in, score: str = "rule", quantile: float = 0.99,
                           target: float = 0.05) -> OperatingPoint:
    """The operating point of ``score`` (one of :data:`OOD_SCORES`) that rejects at most
    ``target`` (a fraction in (0, 1)) of the in-distribution ``probs_in`` (B, T, C).

    ``"rule"`` is :func:`choose_ood_threshold`. For ``"entropy"`` (predictive entropy) and
    ``"mutual_information"``, u sorted descending and k = floor(target * B), the threshold is
    u[k]: inputs with u > u[k] are rejected, at most k of the B (fewer when u[k] ties with
    higher values); no smaller threshold keeps to k. u[k] is one of the scores, so it is
    compared exactly (float64).
    """
    if score == "rule":
        return choose_ood_threshold(probs_in, quantile, target)
    if isinstance(target, bool) or not isinstance(target, int | float) \
            or not 0.0 < target < 1.0:
        raise ValueError(f"target must be a fraction in (0, 1), not {target!r}")
    u = _outlier_score(probs_in, score)
    if len(u) == 0:
        raise ValueError("probs_in must hold at least one input to choose a threshold on")
    k = math.floor(target * len(u) + 1e-9)
    threshold = float(np.sort(u)[::-1][min(k, len(u) - 1)])
    return OperatingPoint(100.0 * target, threshold, 100.0 * float((u > threshold).mean()),
                          len(u), score)


def score_rejected(probs, op: OperatingPoint, quantile: float = 0.99) -> np.ndarray:
    """Inputs (B,) the operating point ``op`` rejects: for the rule, :func:`ood_rejected` at
    ``op.threshold``; for an uncertainty score u, u > ``op.threshold``."""
    if op.score == "rule":
        return ood_rejected(probs, quantile, op.threshold)
    return _outlier_score(probs, op.score) > op.threshold


def ood_score(probs) -> np.ndarray:
    """Threshold-free OoD score for AUROC: predictive entropy (higher = more OoD), shape (B,)."""
    return predictive_entropy(probs)


@dataclass(frozen=True)
class OodResult:
    """OoD detection of one (in-distribution, OoD) pair of sets; all values in percent.

    Attributes
    ----------
    detection : float
        Percent of OoD inputs rejected by :func:`ood_rejected`.
    id_rejection : float
        Percent of in-distribution inputs rejected at the same setting.
    auroc : float
        ``roc_auc_score`` with positives = OoD and score = :func:`ood_score`.
    fpr_at_95_tpr : float
        Smallest false-positive rate (in-distribution flagged) with TPR >= 0.95 on the ROC curve.
    op_detection, op_id_rejection : float
        ``detection`` and ``id_rejection`` at the threshold of an :class:`OperatingPoint`
        (NaN when none was given).
    score_detection, score_id_rejection : dict[str, float]
        The same at each further operating point given (``score_ops``), by score name.
    """

    detection: float
    id_rejection: float
    auroc: float
    fpr_at_95_tpr: float
    op_detection: float = float("nan")
    op_id_rejection: float = float("nan")
    score_detection: dict[str, float] = field(default_factory=dict)
    score_id_rejection: dict[str, float] = field(default_factory=dict)


def ood_detection(probs_in, probs_out, quantile: float = 0.99,
                  threshold: float = 0.9, op_threshold: float | None = None,
                  score_ops: tuple[OperatingPoint, ...] = ()) -> OodResult:
    """Evaluate OoD detection of in-distribution ``probs_in`` (B_in, T, C) vs ``probs_out``.

    Parameters
    ----------
    probs_in : array-like, shape (B_in, T, C)
    probs_out : array-like, shape (B_out, T', C)
    quantile, threshold : float
        Passed to :func:`ood_rejected`.
    op_threshold : float, optional
        A second threshold (an :class:`OperatingPoint`'s) to report detection at.
    score_ops : tuple of OperatingPoint
        Further operating points (:func:`choose_score_threshold`) to report detection at.

    Returns
    -------
    OodResult
    """
    p_in, _ = _probs(probs_in, "probs_in")
    p_out, _ = _probs(probs_out, "probs_out")
    if p_in.shape[0] == 0 or p_out.shape[0] == 0:
        raise ValueError("probs_in and probs_out must each hold at least one input")
    if p_in.shape[2] != p_out.shape[2]:
        raise ValueError(f"probs_in and probs_out must have the same number of classes, "
                         f"got {p_in.shape[2]} and {p_out.shape[2]}")
    rej_in = ood_rejected(probs_in, quantile, threshold)
    rej_out = ood_rejected(probs_out, quantile, threshold)
    y = np.concatenate([np.zeros(len(p_in), dtype=int), np.ones(len(p_out), dtype=int)])
    score = np.concatenate([ood_score(p_in), ood_score(p_out)])
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    op = {}
    if op_threshold is not None:
        op = {"op_detection": 100.0 * float(ood_rejected(probs_out, quantile,
                                                         op_threshold).mean()),
              "op_id_rejection": 100.0 * float(ood_rejected(probs_in, quantile,
                                                            op_threshold).mean())}
    if score_ops:
        op["score_detection"] = {o.score: 100.0 * float(score_rejected(probs_out, o, quantile)
                                                         .mean()) for o in score_ops}
        op["score_id_rejection"] = {o.score: 100.0 * float(score_rejected(probs_in, o, quantile)
                                                            .mean()) for o in score_ops}
    return OodResult(
        detection=100.0 * float(rej_out.mean()),
        id_rejection=100.0 * float(rej_in.mean()),
        auroc=100.0 * float(roc_auc_score(y, score)),
        fpr_at_95_tpr=100.0 * float(fpr[tpr >= 0.95].min()),
        **op,
    )
