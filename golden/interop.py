"""Posteriors trained elsewhere: Intel's bayesian-torch, or a plain deterministic nn.Module.

Two entry points:

* :func:`posterior_from_module` reads the weight layers of any module, in registration
  order, as :class:`~spinbayes.golden.approximation.PosteriorLayer` (mu, sigma), ready for
  :func:`~spinbayes.golden.approximation.approximate_posterior`. bayesian-torch's
  ``LinearReparameterization`` / ``Conv2dReparameterization`` give mu = ``mu_weight`` /
  ``mu_kernel`` and sigma = log(1 + exp(``rho_weight`` / ``rho_kernel``)), bayesian-torch's
  own softplus. A plain
  ``nn.Linear`` / ``nn.Conv2d`` gives mu = its weight and sigma = ``sigma`` (default 0).
* :func:`bayesnet_from_sequential` turns an ``nn.Sequential`` of the shape SpinBayes runs
  (weight layer -> BatchNorm -> activation -> [MaxPool] ..., the last weight layer followed
  by BatchNorm only) into this project's :class:`~spinbayes.golden.networks.BayesNet`, so the
  whole flow (crossbar images, re-calibration, SpinBayes inference, hardware mode) applies.

Deterministic networks: with sigma = 0 the N crossbars of a layer are identical, so the
arbiter's choice changes nothing and the T passes agree: the network carries no model
uncertainty. Give ``sigma`` (a float, or a callable of the weight) to place a posterior around
the trained weights; that is a modelling choice of the user, not something the weights imply.

Biases: crossbars store no bias. A bias followed by BatchNorm is folded exactly into the
BatchNorm's running mean (BN(z + b) with mean mu equals BN(z) with mean mu - b).
bayesian-torch's bias posterior is reduced to its mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .approximation import PosteriorLayer
from .layers import BayesConv2d, BayesLinear, Comparator
from .networks import BayesNet, Stage

__all__ = ["posterior_from_module", "bayesnet_from_sequential"]

_BT_LINEAR = "LinearReparameterization"
_BT_CONV = "Conv2dReparameterization"

Sigma = float | Callable[[torch.Tensor], torch.Tensor]


def _kind(m: nn.Module) -> str | None:
    name = type(m).__name__
    if isinstance(m, nn.Linear) or name == _BT_LINEAR:
        return "linear"
    if isinstance(m, nn.Conv2d) or name == _BT_CONV:
        return "conv2d"
    if isinstance(m, nn.Conv1d | nn.Conv3d | nn.ConvTranspose2d) or "Reparameterization" in name:
        raise ValueError(f"{name} cannot be mapped onto crossbars (dense and 2-D conv only)")
    return None


def _geometry(m: nn.Module) -> tuple[int, int]:
    if _kind(m) != "conv2d":
        return 1, 0
    stride, padding = m.stride, m.padding
    stride = stride[0] if isinstance(stride, tuple) else stride
    padding = padding[0] if isinstance(padding, tuple) else padding
    if isinstance(padding, str) or (isinstance(m.stride, tuple) and len(set(m.stride)) > 1):
        raise ValueError(f"{type(m).__name__}: only square strides and integer paddings map")
    groups = getattr(m, "groups", 1)
    if groups != 1:
        raise ValueError(f"{type(m).__name__}: grouped convolutions (groups={groups}) "
                         f"are not supported")
    return int(stride), int(padding)


def _mu_sigma(m: nn.Module, sigma: Sigma) -> tuple[torch.Tensor, torch.Tensor]:
    if type(m).__name__ == _BT_LINEAR:
        return m.mu_weight.detach().float(), F.softplus(m.rho_weight.detach().float())
    if type(m).__name__ == _BT_CONV:  # bayesian-torch names a kernel's posterior *_kernel
        return m.mu_kernel.detach().float(), F.softplus(m.rho_kernel.detach().float())
    w = m.weight.detach().float()
    s = sigma(w) if callable(sigma) else torch.full_like(w, float(sigma))
    return w, s.detach().float()


def _bias(m: nn.Module) -> torch.Tensor | None:
    b = getattr(m, "mu_bias", None)
    if b is None:
        b = getattr(m, "bias", None)
    return None if b is None else b.detach().float()


def posterior_from_module(module: nn.Module, sigma: Sigma = 0.0) -> list[PosteriorLayer]:
    """Weight posteriors of every Linear / Conv2d (plain or bayesian-torch) in ``module``."""
    out = []
    for m in module.modules():
        kind = _kind(m)
        if kind is None:
            continue
        mu, s = _mu_sigma(m, sigma)
        if kind == "conv2d" and mu.dim() != 4:
            raise ValueError(f"{type(m).__name__}: expected a 4-D kernel, got {tuple(mu.shape)}")
        stride, padding = _geometry(m)
        out.append(PosteriorLayer(kind, mu, s, stride, padding))
    if not out:
        raise ValueError(f"{type(module).__name__} holds no Linear or Conv2d layer to map")
    return out


def _activation(m: nn.Module) -> nn.Module | None:
    if isinstance(m, Comparator | nn.ReLU):
        return m
    return None


@torch.no_grad()
def bayesnet_from_sequential(seq: nn.Sequential, *, input_bits: int = 4,
                             sigma: Sigma = 0.0, prior_sigma: float = 0.1) -> BayesNet:
    """This project's :class:`BayesNet` with the weights (and posterior) of ``seq``.

    Accepted pattern: [Flatten] then, per layer, a weight layer (Linear / Conv2d, plain or
    bayesian-torch), BatchNorm1d/2d, an activation (ReLU or Comparator), optionally MaxPool2d
    and Flatten; the last weight layer is followed by BatchNorm only. Anything else raises a
    ValueError naming the offending module.
    """
    if not isinstance(seq, nn.Sequential):
        raise ValueError(f"expected an nn.Sequential, got {type(seq).__name__}")
    mods = list(seq)
    flatten_input = bool(mods) and isinstance(mods[0], nn.Flatten)
    mods = mods[1:] if flatten_input else mods
    stages, i = [], 0
    while i < len(mods):
        m = mods[i]
        kind = _kind(m)
        if kind is None:
            raise ValueError(f"module {i} ({type(m).__name__}): expected a Linear or Conv2d "
                             f"weight layer")
        if i + 1 >= len(mods) or not isinstance(mods[i + 1], nn.BatchNorm1d | nn.BatchNorm2d):
            raise ValueError(f"module {i} ({type(m).__name__}) must be followed by BatchNorm: "
                             f"the hardware folds BatchNorm into the comparator thresholds")
        mu, s = _mu_sigma(m, sigma)
        bn = _copy_bn(mods[i + 1], _bias(m))
        stride, padding = _geometry(m)
        if kind == "linear":
            layer = BayesLinear(mu.shape[1], mu.shape[0], prior_sigma=prior_sigma)
        else:
            layer = BayesConv2d(mu.shape[1], mu.shape[0], mu.shape[2], stride=stride,
                                padding=padding, prior_sigma=prior_sigma)
        layer.weight_mu.copy_(mu)
        # rho = softplus^-1(sigma); sigma = 0 maps to a sigma far below any quantization step.
        layer.weight_rho.copy_(torch.where(s > 0, s.clamp_min(1e-12).expm1().log(),
                                           torch.full_like(s, -30.0)))
        i += 2
        act = _activation(mods[i]) if i < len(mods) else None
        pool, flatten = 0, False
        if act is not None:
            i += 1
            if i < len(mods) and isinstance(mods[i], nn.MaxPool2d):
                k = mods[i].kernel_size
                pool, i = (k if isinstance(k, int) else k[0]), i + 1
            if i < len(mods) and isinstance(mods[i], nn.Flatten):
                flatten, i = True, i + 1
        elif i < len(mods):
            raise ValueError(f"module {i} ({type(mods[i]).__name__}): expected ReLU or "
                             f"Comparator after BatchNorm")
        stages.append(Stage(layer, bn, act, pool=pool, flatten=flatten))
    if not isinstance(stages[-1].act, nn.Identity):
        raise ValueError("the last weight layer must end with BatchNorm (its output is the "
                         "logits), not an activation")
    return BayesNet(stages, input_bits, flatten_input).eval()


def _copy_bn(bn: nn.Module, bias: torch.Tensor | None) -> nn.Module:
    new = type(bn)(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine)
    new.load_state_dict(bn.state_dict())
    if bias is not None:
        new.running_mean -= bias  # BN(z + b; mean) == BN(z; mean - b)
    return new
