"""Layers of the golden model: Bayes-by-Backprop weights and the comparator activation.

* :class:`BayesLinear` and :class:`BayesConv2d` hold a Gaussian mean-field posterior
  q(w) = N(mu, sigma^2) per weight, with sigma = softplus(rho) (Blundell et al. 2015, the
  paper's ref. [5]). They sample with the reparameterisation w = mu + sigma * eps and
  return KL(q || p) in closed form against a zero-mean Gaussian prior N(0, prior_sigma^2).
  They have no bias: every weight layer is followed by BatchNorm, whose shift the hardware
  folds into the comparator thresholds (docs/ARCHITECTURE.md).
* :class:`Comparator` is the activation of the hardware: a bank of 2^A - 1 comparators
  whose outputs form an A-bit thermometer code (A = 1 is a step). Training uses a
  straight-through estimator so that the network learns with the activation it will run on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BayesConv2d", "BayesLinear", "Comparator", "bayes_layers", "quantize_input"]


class _BayesWeight(nn.Module):
    """Shared parameter handling of the Bayesian weight layers."""

    def __init__(self, shape: tuple[int, ...], fan_in: int, prior_sigma: float,
                 rho_init: float, generator: torch.Generator | None = None):
        super().__init__()
        if not prior_sigma > 0:
            raise ValueError(f"prior_sigma must be positive, not {prior_sigma!r}")
        self.prior_sigma = float(prior_sigma)
        bound = 1.0 / math.sqrt(fan_in)
        self.weight_mu = nn.Parameter(torch.empty(shape).uniform_(-bound, bound,
                                                                    generator=generator))
        self.weight_rho = nn.Parameter(torch.full(shape, float(rho_init)))
        #: When False the layer uses the posterior mean (a deterministic network).
        self.sampling = True

    @property
    def weight_sigma(self) -> torch.Tensor:
        return F.softplus(self.weight_rho)

    def sample_weight(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw w = mu + sigma * eps from q(w), shape of ``weight_mu``."""
        eps = torch.randn(self.weight_mu.shape, generator=generator,
                          dtype=self.weight_mu.dtype, device=self.weight_mu.device)
        return self.weight_mu + self.weight_sigma * eps

    def weight(self) -> torch.Tensor:
        return self.sample_weight() if self.sampling else self.weight_mu

    def kl(self) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, prior_sigma^2)), summed over all weights."""
        sigma = self.weight_sigma
        p = self.prior_sigma
        return (torch.log(p / sigma) + (sigma ** 2 + self.weight_mu ** 2) / (2 * p * p)
                - 0.5).sum()


class BayesLinear(_BayesWeight):
    """Bias-free Bayesian dense layer: (B, in_features) -> (B, out_features)."""

    def __init__(self, in_features: int, out_features: int, *, prior_sigma: float = 0.1,
                 rho_init: float = -4.0, generator: torch.Generator | None = None):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        super().__init__((out_features, in_features), in_features, prior_sigma, rho_init,
                         generator)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.weight() if weight is None else weight)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, prior_sigma={self.prior_sigma}"


class BayesConv2d(_BayesWeight):
    """Bias-free Bayesian 2-D convolution: (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0, prior_sigma: float = 0.1,
                 rho_init: float = -4.0, generator: torch.Generator | None = None):
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        super().__init__(shape, in_channels * kernel_size ** 2, prior_sigma, rho_init,
                         generator)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight() if weight is None else weight
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class _ThermometerSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, levels):
        ctx.save_for_backward(z)
        return _thermometer(z, levels)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        # Clipped straight-through estimator: the identity inside the comparators' range.
        return grad * ((z >= 0) & (z <= 1)).to(grad.dtype), None


def _thermometer(z: torch.Tensor, levels: int) -> torch.Tensor:
    """sum_k [z >= (k - 1/2) / L] / L, written as the comparisons the hardware makes."""
    if levels == 1:
        return (z >= 0.5).to(z.dtype)
    count = sum((z >= (k - 0.5) / levels).to(z.dtype) for k in range(1, levels + 1))
    return count / levels


class Comparator(nn.Module):
    """A-bit thermometer activation made of 2^A - 1 comparators.

    Comparator k (k = 1 .. L, L = 2^A - 1) fires when its input is at least
    (k - 1/2) / L; the output is the count of firing comparators divided by L, so it lies in
    {0, 1/L, ..., 1}. A = 1 gives a step at 1/2 with outputs {0, 1}. The preceding
    BatchNorm's scale and shift move these thresholds, which is why the hardware only needs
    integer thresholds per neuron (BatchNorm folded, docs/HARDWARE.md).

    In training mode the gradient is passed straight through inside [0, 1].
    """

    def __init__(self, bits: int = 1):
        super().__init__()
        if not isinstance(bits, int) or bits < 1:
            raise ValueError(f"bits must be a positive integer, not {bits!r}")
        self.bits = bits
        self.levels = 2 ** bits - 1

    @property
    def thresholds(self) -> torch.Tensor:
        """The L comparator thresholds (k - 1/2) / L, k = 1 .. L."""
        return (torch.arange(1, self.levels + 1, dtype=torch.float64) - 0.5) / self.levels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and z.requires_grad:
            return _ThermometerSTE.apply(z, self.levels)
        return _thermometer(z, self.levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def input_codes(x: torch.Tensor, bits: int) -> torch.Tensor:
    """The unsigned A_in-bit codes (int64) of inputs in [0, 1]: round(x * (2^bits - 1)).

    Ties round to even (torch.round); the float and the integer models both call this, so
    they always see the same code. Raises on NaN or values outside [0, 1] (a sign of a wrong
    normalisation).
    """
    _check_range(x)
    return torch.round(x * (2 ** bits - 1)).to(torch.int64)


def quantize_input(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Inputs rounded to the A_in-bit code and de-quantised: code / (2^bits - 1).

    The same value as ``input_codes(x, bits) / (2^bits - 1)``: the rounded product is an
    exactly representable integer in float.
    """
    _check_range(x)
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def _check_range(x: torch.Tensor) -> None:
    if not x.numel():
        return
    lo, hi = torch.aminmax(x)
    if not (lo >= 0 and hi <= 1):  # also false for NaN
        if torch.isnan(x).any():
            raise ValueError("input contains NaN")
        raise ValueError(f"inputs must lie in [0, 1], got range [{lo.item():.4g}, "
                         f"{hi.item():.4g}]")


def bayes_layers(module: nn.Module) -> list[_BayesWeight]:
    """The Bayesian weight layers of ``module``, in forward order."""
    return [m for m in module.modules() if isinstance(m, _BayesWeight)]
