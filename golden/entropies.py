"""Entropies of per-pass probabilities (B, T, C), shared by the uncertainty metrics
(:mod:`spinbayes.golden.metrics`) and the OoD metrics (:mod:`spinbayes.golden.ood_metrics`).
Natural log; every function takes torch tensors or numpy arrays and returns numpy arrays."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["expected_entropy", "mutual_information", "predictive_entropy"]


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
