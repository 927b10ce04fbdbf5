"""Fig. 6's panels as PNG: image, ground truth, prediction, correctness map, confidence map.

One figure per method and data set, one row per test image (the first ``k`` of the test
set, not a selection). The correctness map is white where the prediction is right and black
where it is wrong (grey: ignored pixels). The confidence map shows 1 - U / u_ref in grey
(white: certain, black: U >= u_ref), with U the confidence mask of
:func:`~spinbayes.golden.seg_metrics.confidence_mask` and u_ref one scale shared by every
method's figure of a data set (so BBB and SpinBayes panels compare), printed in the title.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .seg_metrics import confidence_mask

__all__ = ["fig6_png", "shared_scale"]


def _atomic_write(path, data: bytes) -> None:
    try:
        from .contract import atomic_write
    except ImportError:  # the helper's older home
        from .checkpoint import atomic_write
    atomic_write(path, data)


def shared_scale(probs_by_method: list[torch.Tensor], quantile: float = 0.99) -> float:
    """u_ref: the ``quantile`` of U over every method's panels (at least 1e-6)."""
    u = torch.cat([confidence_mask(p).reshape(-1) for p in probs_by_method]).double()
    return max(float(torch.quantile(u, quantile)), 1e-6) if u.numel() else 1.0


def fig6_png(path, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor,
             method: str, dataset: str, class_names: tuple[str, ...], u_ref: float) -> Path:
    """Write one Fig. 6 figure for ``k`` images: images (k, 3, H, W), labels (k, H, W),
    probs (k, T, C, H, W). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    k, C = images.shape[0], probs.shape[2]
    if probs.shape[0] != k or labels.shape[0] != k:
        raise ValueError(f"images, labels and probs must hold the same number of images, got "
                         f"{k}, {labels.shape[0]} and {probs.shape[0]}")
    pred = probs.mean(1).argmax(1)
    U = confidence_mask(probs)
    cmap = ListedColormap(matplotlib.colormaps["tab10"].colors[:max(C, 2)])
    cols = ("image", "ground truth", "prediction", "correctness", "confidence 1 - U/u_ref")
    fig, axes = plt.subplots(k, 5, figsize=(10, 2.1 * k + 0.6), squeeze=False)
    for r in range(k):
        valid = labels[r] >= 0
        correct = np.where(valid, (pred[r] == labels[r]).float(), 0.5)
        conf = (1.0 - U[r].double() / u_ref).clamp(0.0, 1.0)
        panels = [(images[r].permute(1, 2, 0).numpy(), {}),
                  (np.ma.masked_less(labels[r].numpy(), 0), dict(cmap=cmap, vmin=-0.5,
                                                                  vmax=C - 0.5)),
                  (pred[r].numpy(), dict(cmap=cmap, vmin=-0.5, vmax=C - 0.5)),
                  (correct, dict(cmap="gray", vmin=0, vmax=1)),
                  (conf.numpy(), dict(cmap="gray", vmin=0, vmax=1))]
        for c, (img, kw) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    legend = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    fig.suptitle(f"{method} on {dataset}: classes {legend}; u_ref = {u_ref:.3g}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path
