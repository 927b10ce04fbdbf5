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
from sklearn.metrics import accuracy_score

from .entropies import (
    _entropy,
    _numpy,
    _probs,
    expected_entropy,
    mutual_information,
    predictive_entropy,
)
from .ood_metrics import (
    OOD_SCORES,
    OodResult,
    OperatingPoint,
    choose_ood_threshold,
    choose_score_threshold,
    ood_detection,
    ood_rejected,
    ood_rule_score,
    ood_score,
    score_rejected,
)

__all__ = [
    "OOD_SCORES",
    "OodResult",
    "OperatingPoint",
    "UncertaintyRatios",
    "accuracy",
    "choose_ood_threshold",
    "choose_score_threshold",
    "expected_entropy",
    "mutual_information",
    "normalized_entropy",
    "ood_detection",
    "ood_rejected",
    "ood_rule_score",
    "ood_score",
    "pass_variance",
    "predictive_entropy",
    "score_rejected",
    "uncertainty_ratios",
    "uncertainty_threshold",
]


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den if den else float("nan")


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
