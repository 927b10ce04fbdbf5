"""Uncertainty, out-of-distribution and accuracy metrics of the SpinBayes evaluation (sec. 4.1).

Every function takes torch tensors or numpy arrays and returns numpy arrays or python floats.
``probs`` always holds per-pass softmax probabilities of shape (B, T, C): B inputs, T stochastic
forward passes, C classes. Entropies use the natural log. Definitions, sources and the reading
of the paper's OoD rule are in docs/METRICS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

__all__ = [
    "OodResult",
    "OperatingPoint",
    "UncertaintyRatios",
    "accuracy",
    "choose_ood_threshold",
    "expected_entropy",
    "mutual_information",
    "normalized_entropy",
    "ood_detection",
    "ood_rejected",
    "ood_rule_score",
    "ood_score",
    "pass_variance",
    "predictive_entropy",
    "uncertainty_ratios",
    "uncertainty_threshold",
]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _probs(probs, name: str = "probs") -> tuple[np.ndarray, np.dtype]:
    """Validate ``probs``; return it as float64 together with its own floating dtype."""
    p = _numpy(probs)
    if p.ndim != 3:
        raise ValueError(f"{name} must have shape (B, T, C), got {tuple(p.shape)}")
    if p.shape[1] < 1 or p.shape[2] < 1:
        raise ValueError(f"{name} needs at least one pass and one class, got {tuple(p.shape)}")
    dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.dtype(np.float64)
    p = p.astype(np.float64)
    if np.isnan(p).any():
        raise ValueError(f"{name} contains NaN")
    return p, dtype


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    plogp = np.zeros_like(p)
    mask = p > 0
    plogp[mask] = p[mask] * np.log(p[mask])
    return -plogp.sum(axis=-1)


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den if den else float("nan")


def predictive_entropy(probs) -> np.ndarray:
    """Entropy of the mean prediction, H[mean_t p_t] (total uncertainty), shape (B,)."""
    p, _ = _probs(probs)
    return _entropy(p.mean(axis=1))


def expected_entropy(probs) -> np.ndarray:
    """Mean over the T passes of the per-pass entropy, mean_t H[p_t] (aleatoric), shape (B,)."""
    p, _ = _probs(probs)
    return _entropy(p).mean(axis=1)


def mutual_information(probs) -> np.ndarray:
    """BALD mutual information, predictive minus expected entropy (epistemic), shape (B,).

    Mathematically >= 0; rounding can make it slightly negative, so it is clipped at 0.
    """
    return np.clip(predictive_entropy(probs) - expected_entropy(probs), 0.0, None)


def pass_variance(probs) -> np.ndarray:
    """Population variance (ddof=0) over the T passes, summed over the C classes, shape (B,)."""
    p, _ = _probs(probs)
    return p.var(axis=1, ddof=0).sum(axis=-1)


def normalized_entropy(probs) -> np.ndarray:
    """Predictive entropy divided by log(C), in [0, 1], shape (B,).

    Raises
    ------
    ValueError
        If C < 2 (the normalisation log(1) = 0 is undefined).
    """
    p, _ = _probs(probs)
    c = p.shape[2]
    if c < 2:
        raise ValueError(f"normalized_entropy needs at least 2 classes, got C={c}")
    return _entropy(p.mean(axis=1)) / math.log(c)


@dataclass(frozen=True)
class UncertaintyRatios:
    """Correct/incorrect x certain/uncertain counts and the Mobiny et al. (2021) ratios.

    Attributes
    ----------
    n_cc, n_cu, n_ic, n_iu : int
        Counts of correct-certain, correct-uncertain, incorrect-certain, incorrect-uncertain.
    R_cc : float
        Percent, n_cc / (n_cc + n_ic) = P(correct | certain); NaN if nothing is certain.
    R_iu : float
        Percent, n_iu / (n_iu + n_ic) = P(uncertain | incorrect); NaN if nothing is incorrect.
    UA : float
        Percent, (n_cc + n_iu) / (all); NaN for an empty set.
    threshold : float
        The threshold used: uncertain := uncertainty > threshold.
    """

    n_cc: int
    n_cu: int
    n_ic: int
    n_iu: int
    R_cc: float
    R_iu: float
    UA: float
    threshold: float


def uncertainty_ratios(correct, uncertainty, threshold) -> UncertaintyRatios:
    """Split predictions into certain/uncertain and compute R_cc, R_iu and UA.

    Parameters
    ----------
    correct : array-like of bool, shape (B,)
        Whether each prediction is correct (0/1 integers are accepted).
    uncertainty : array-like of float, shape (B,)
        Uncertainty score; a prediction is uncertain iff ``uncertainty > threshold``.
    threshold : float
        Finite threshold, compared in the floating precision of ``uncertainty``.

    Returns
    -------
    UncertaintyRatios
        Counts and percentages; an empty denominator gives ``float('nan')``, never an error.
    """
    c = _numpy(correct)
    u = _numpy(uncertainty)
    if c.ndim != 1 or u.ndim != 1:
        raise ValueError(f"correct and uncertainty must be 1-D, got shapes "
                         f"{tuple(c.shape)} and {tuple(u.shape)}")
    if len(c) != len(u):
        raise ValueError(f"correct and uncertainty must have the same length, "
                         f"got {len(c)} and {len(u)}")
    if c.dtype != bool:
        if not np.isin(c, (0, 1)).all():
            raise ValueError("correct must hold booleans (or 0/1)")
        c = c.astype(bool)
    dtype = u.dtype if np.issubdtype(u.dtype, np.floating) else np.dtype(np.float64)
    u = u.astype(np.float64)
    if np.isnan(u).any():
        raise ValueError("uncertainty contains NaN")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    uncertain = u > float(dtype.type(threshold))
    n_cc = int(np.sum(c & ~uncertain))
    n_cu = int(np.sum(c & uncertain))
    n_ic = int(np.sum(~c & ~uncertain))
    n_iu = int(np.sum(~c & uncertain))
    return UncertaintyRatios(
        n_cc=n_cc, n_cu=n_cu, n_ic=n_ic, n_iu=n_iu,
        R_cc=_pct(n_cc, n_cc + n_ic),
        R_iu=_pct(n_iu, n_iu + n_ic),
        UA=_pct(n_cc + n_iu, len(c)),
        threshold=float(threshold),
    )


def uncertainty_threshold(uncertainty, t: float, mode: str = "relative") -> float:
    """The absolute threshold of :func:`uncertainty_ratios` for a set of scores (B,).

    ``mode="relative"`` follows Mobiny et al.'s code (hula-ai/mc_dropconnect,
    ``compute_uncertainty_metrics``): u_min + t * (u_max - u_min) over the evaluated set.
    ``mode="absolute"`` returns ``t`` unchanged.
    """
    if mode == "absolute":
        return float(t)
    if mode != "relative":
        raise ValueError(f"mode must be 'relative' or 'absolute', not {mode!r}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"a relative threshold must lie in [0, 1], got {t!r}")
    u = _numpy(uncertainty).astype(np.float64)
    if u.size == 0:
        raise ValueError("cannot place a relative threshold on an empty set")
    if np.isnan(u).any():
        raise ValueError("uncertainty contains NaN")
    return float(u.min() + t * (u.max() - u.min()))


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
    """

    target: float
    threshold: float
    rejection: float
    images: int


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
    """

    detection: float
    id_rejection: float
    auroc: float
    fpr_at_95_tpr: float
    op_detection: float = float("nan")
    op_id_rejection: float = float("nan")


def ood_detection(probs_in, probs_out, quantile: float = 0.99,
                  threshold: float = 0.9, op_threshold: float | None = None) -> OodResult:
    """Evaluate OoD detection of in-distribution ``probs_in`` (B_in, T, C) vs ``probs_out``.

    Parameters
    ----------
    probs_in : array-like, shape (B_in, T, C)
    probs_out : array-like, shape (B_out, T', C)
    quantile, threshold : float
        Passed to :func:`ood_rejected`.
    op_threshold : float, optional
        A second threshold (an :class:`OperatingPoint`'s) to report detection at.

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
    return OodResult(
        detection=100.0 * float(rej_out.mean()),
        id_rejection=100.0 * float(rej_in.mean()),
        auroc=100.0 * float(roc_auc_score(y, score)),
        fpr_at_95_tpr=100.0 * float(fpr[tpr >= 0.95].min()),
        **op,
    )


def accuracy(probs, labels) -> float:
    """Percent of inputs whose argmax of the mean over T equals ``labels`` (B,); NaN if B = 0."""
    p, _ = _probs(probs)
    y = _numpy(labels)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape (B,) = ({p.shape[0]},), got {tuple(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if p.shape[0] == 0:
        return float("nan")
    return 100.0 * float(accuracy_score(y, p.mean(axis=1).argmax(axis=1)))
