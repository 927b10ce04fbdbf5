"""Bayesian in-memory approximation (paper section 3.2).

From a trained Bayes-by-Backprop network, draw N weight samples per layer from q and
quantize each with eq. 3,

    theta_hat = round(clip(theta / s_l, -1, 1) * (2^(Q-1) - 1)),

so that sample k of layer l can be stored in crossbar k of that layer. The result,
:class:`CrossbarImages`, holds per layer the N integer weight tensors and the scale s_l; it
is what firmware programs into the crossbars.

Keeping weights inside [-1, 1]: eq. 3 clips at +-1, and a clip that cuts into the posterior
would destroy it. We divide each layer by a per-layer scale s_l = max |mu_l| before eq. 3,
so the posterior mean is never clipped and only far tails of samples are. Because every
weight layer is followed by BatchNorm (re-calibrated afterwards, :mod:`.spinbayes`), s_l
does not change the function: in the integer hardware it disappears into the comparator
thresholds and never needs to be stored in the array. The small prior sigma (config
``prior_sigma``) keeps the posterior's sigma, hence the clipped tail, small (the paper's
remark below eq. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import BayesConv2d, bayes_layers
from .networks import BayesNet

__all__ = ["CrossbarImages", "CrossbarLayer", "approximate", "quantize_eq3"]


def quantize_eq3(theta: torch.Tensor, Q: int) -> torch.Tensor:
    """Eq. 3: round(clip(theta, -1, 1) * (2^(Q-1) - 1)) as int8.

    Ties round away from zero (eq. 3 says "the closest integer" and leaves ties open;
    torch.round would round them to even). NaN is refused.
    """
    if not isinstance(Q, int) or not 2 <= Q <= 8:
        raise ValueError(f"Q must be an integer in 2..8, not {Q!r}")
    if torch.isnan(theta).any():
        raise ValueError("weights to quantize contain NaN")
    v = theta.clamp(-1.0, 1.0).double() * (2 ** (Q - 1) - 1)
    return (torch.sign(v) * torch.floor(v.abs() + 0.5)).to(torch.int8)


@dataclass
class CrossbarLayer:
    """The N crossbars of one layer.

    weights: int8 (N, out, in) for dense layers or (N, out, in, k, k) for convolutions,
    values in -(2^(Q-1)-1) .. 2^(Q-1)-1. scale: s_l (see the module docstring).
    """

    kind: str
    weights: torch.Tensor
    scale: float
    Q: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        if self.kind not in ("linear", "conv2d"):
            raise ValueError(f"kind must be 'linear' or 'conv2d', not {self.kind!r}")
        want = 3 if self.kind == "linear" else 5
        if self.weights.dim() != want:
            raise ValueError(f"{self.kind} crossbar weights must be {want}-D (N, out, in"
                             f"{', k, k' if want == 5 else ''}), got {tuple(self.weights.shape)}")
        if self.weights.dtype != torch.int8:
            raise ValueError(f"crossbar weights must be int8, not {self.weights.dtype}")
        q_max = 2 ** (self.Q - 1) - 1
        if self.weights.numel() and int(self.weights.abs().max()) > q_max:
            raise ValueError(f"crossbar weight codes must lie in -{q_max}..{q_max} for "
                             f"Q={self.Q}, found {int(self.weights.abs().max())}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, not {self.scale!r}")

    @property
    def N(self) -> int:
        return self.weights.shape[0]

    @property
    def q_max(self) -> int:
        return 2 ** (self.Q - 1) - 1

    def dequantized(self) -> torch.Tensor:
        """Float weights (N, ...) = code * s_l / (2^(Q-1) - 1)."""
        return self.weights.float() * (self.scale / self.q_max)


@dataclass
class CrossbarImages:
    """Per layer, the N quantized posterior samples (the crossbar images)."""

    layers: list[CrossbarLayer]
    N: int
    Q: int
    seed: int

    def __post_init__(self):
        for i, layer in enumerate(self.layers):
            if layer.N != self.N or layer.Q != self.Q:
                raise ValueError(f"layer {i} holds N={layer.N}, Q={layer.Q}; "
                                 f"the images declare N={self.N}, Q={self.Q}")

    def __len__(self) -> int:
        return len(self.layers)


@dataclass
class PosteriorLayer:
    """A Gaussian mean-field posterior of one weight layer, whatever library trained it.

    mu, sigma: float tensors of the weight's shape ((out, in) or (out, in, k, k)); sigma may
    be all zero (a deterministic network: the N crossbars are then identical).
    """

    kind: str
    mu: torch.Tensor
    sigma: torch.Tensor
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        if self.mu.shape != self.sigma.shape:
            raise ValueError(f"mu and sigma differ in shape: {tuple(self.mu.shape)} != "
                             f"{tuple(self.sigma.shape)}")
        if torch.isnan(self.mu).any() or torch.isnan(self.sigma).any():
            raise ValueError("posterior contains NaN")
        if (self.sigma < 0).any():
            raise ValueError("sigma must be >= 0")


def posterior_of(model: BayesNet) -> list[PosteriorLayer]:
    """The posterior layers of this project's Bayesian network, in forward order."""
    out = []
    for layer in bayes_layers(model):
        conv = isinstance(layer, BayesConv2d)
        out.append(PosteriorLayer("conv2d" if conv else "linear", layer.weight_mu.detach(),
                                  layer.weight_sigma.detach(),
                                  layer.stride if conv else 1, layer.padding if conv else 0))
    return out


@torch.no_grad()
def approximate_posterior(posterior: list[PosteriorLayer], N: int, Q: int,
                          seed: int = 0) -> CrossbarImages:
    """Draw N samples per layer from the posterior and quantize them with eq. 3.

    Sample k of a layer is mu + sigma * eps_k, eps_k ~ N(0, 1) from a generator seeded with
    ``seed`` and consumed layer by layer, sample by sample (so it can be reproduced).
    """
    if not isinstance(N, int) or N < 1:
        raise ValueError(f"N must be a positive integer, not {N!r}")
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, post in enumerate(posterior):
        scale = float(post.mu.abs().max())
        if not scale > 0:
            raise ValueError(f"layer {i}: the posterior mean is all zero; nothing to quantize")
        samples = torch.stack([post.mu + post.sigma * torch.randn(post.mu.shape, generator=gen,
                                                                   dtype=post.mu.dtype)
                               for _ in range(N)])
        codes = quantize_eq3(samples / scale, Q)
        layers.append(CrossbarLayer(post.kind, codes, scale, Q, post.stride, post.padding))
    return CrossbarImages(layers, N, Q, seed)


def approximate(model: BayesNet, N: int, Q: int, seed: int = 0) -> CrossbarImages:
    """Draw N samples per layer from q and quantize them with eq. 3 (section 3.2)."""
    return approximate_posterior(posterior_of(model), N, Q, seed)
