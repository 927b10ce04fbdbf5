"""One trained model mapped onto crossbars, each derived network built once.

The chain of section 3.2 and Fig. 2 (approximate -> SpinBayes network with BatchNorm
re-calibrated for an n-way choice -> integer hardware network) is written here and nowhere
else. :class:`MappedModel` holds the crossbar images and builds, on first use, one
:class:`~spinbayes.golden.inference.SpinBayesNet` per (n, re-calibration batches) and one
:class:`~spinbayes.golden.hardware.HwNetwork` per (n, R). Evaluation, the hardware-mode
check, the co-verification, the firmware compiler and the energy counts all take their
networks from it, so BatchNorm is re-calibrated once per n and every stage sees the very same
network.

Each build draws from a generator seeded from ``seed`` and n alone
(:func:`build_spinbayes`), so a network is the same whichever stage asks for it first.
"""

from __future__ import annotations

import torch

from .approximation import CrossbarImages, approximate
from .contract import ROWS_PER_READ
from .hardware import HwNetwork, fold_network
from .inference import SpinBayesNet, recalibrate_bn
from .networks import BayesNet

__all__ = ["MappedModel", "build_spinbayes", "map_model"]


def build_spinbayes(images: CrossbarImages, model: BayesNet, x_train: torch.Tensor,
                    n_way: int, recal_batches: int, seed: int, *,
                    progress: bool = False) -> SpinBayesNet:
    """A SpinBayes network for ``n_way``, BatchNorm re-calibrated on ``recal_batches``
    training mini-batches (0: the trained statistics)."""
    net = SpinBayesNet(images, model, n_way)
    recalibrate_bn(net, x_train, recal_batches,
                   generator=torch.Generator().manual_seed(seed + 7919 * n_way),
                   progress=progress)
    return net


class MappedModel:
    """A trained ``model`` mapped onto the crossbar ``images``.

    Parameters
    ----------
    model : the trained Bayes-by-Backprop network.
    images : its N quantized samples per layer (:func:`approximate`).
    x_train : training images, for BatchNorm re-calibration.
    recal_batches : default re-calibration batches (``Config.recal_batches``).
    seed : seed of re-calibration (``Config.seed``).
    """

    def __init__(self, model: BayesNet, images: CrossbarImages, x_train: torch.Tensor, *,
                 recal_batches: int, seed: int, progress: bool = False):
        if not isinstance(recal_batches, int) or recal_batches < 0:
            raise ValueError(f"recal_batches must be a non-negative integer, "
                             f"not {recal_batches!r}")
        self.model, self.images, self.x_train = model, images, x_train
        self.recal_batches, self.seed, self.progress = recal_batches, seed, progress
        self._nets: dict[tuple[int, int], SpinBayesNet] = {}
        self._hw: dict[tuple[int, int], HwNetwork] = {}

    @property
    def N(self) -> int:
        return self.images.N

    def net(self, n_way: int, recal_batches: int | None = None) -> SpinBayesNet:
        """The SpinBayes network for ``n_way`` (built once per (n, recal_batches))."""
        if not isinstance(n_way, int) or not 1 <= n_way <= self.N:
            raise ValueError(f"n_way must be an integer in 1..N={self.N}, not {n_way!r}")
        recal = self.recal_batches if recal_batches is None else recal_batches
        key = (n_way, recal)
        if key not in self._nets:
            self._nets[key] = build_spinbayes(self.images, self.model, self.x_train, n_way,
                                              recal, self.seed, progress=self.progress)
        return self._nets[key]

    def hw(self, n_way: int, R: int = ROWS_PER_READ) -> HwNetwork:
        """The integer hardware network of :meth:`net` (``n_way``, default re-calibration)."""
        key = (n_way, R)
        if key not in self._hw:
            self._hw[key] = fold_network(self.net(n_way), self.images, R=R)
        return self._hw[key]


def map_model(model: BayesNet, x_train: torch.Tensor, *, N: int, Q: int, seed: int,
              recal_batches: int, progress: bool = False) -> MappedModel:
    """Approximate ``model`` onto N crossbars of Q bits per layer (eq. 3, seeded by ``seed``)
    and wrap the result in a :class:`MappedModel`."""
    images = approximate(model, N, Q, seed=seed)
    return MappedModel(model, images, x_train, recal_batches=recal_batches, seed=seed,
                       progress=progress)
