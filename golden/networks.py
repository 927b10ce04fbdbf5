"""Topologies of the golden model: a configurable MLP and LeNet-5, with Bayesian weights.

A network is a list of :class:`Stage`: one bias-free weight layer (the part that lives in
a crossbar), then BatchNorm, the activation (comparators, or ReLU as a float reference),
and optionally max-pooling and flattening. The last stage has no activation: its
BatchNorm output is the logits. The same stage list is reused by the SpinBayes network of
:mod:`spinbayes.golden.spinbayes`, which swaps the weight layer for N crossbars.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config
from .layers import BayesConv2d, BayesLinear, Comparator, bayes_layers, quantize_input

__all__ = ["BayesNet", "Stage", "build_model", "check_input", "max_pool"]


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_input(x, *, image_shape: tuple[int, ...] | None, flatten_input: bool,
                fan_in: int | None, code_bits: int | None = None, name: str = "x") -> None:
    """Refuse an input batch the network cannot run, saying what it expected.

    ``x`` must be a non-empty tensor of shape (B, *image_shape). Without ``image_shape`` only
    ``fan_in`` is checked: the values per image of a network that flattens its input, else the
    channels of (B, C, H, W).
    Float inputs must lie in [0, 1] (NaN refused). Integer inputs are refused unless
    ``code_bits`` is given; they are then input codes in 0..2^code_bits - 1. The checks are
    whole-tensor reductions (no loop over the elements).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, not {type(x).__name__}")
    shape = tuple(x.shape)
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        ok = shape[1:] == image_shape
        want = _shape_text(("B", *image_shape))
    elif flatten_input:
        ok = x.dim() >= 2 and (fan_in is None or math.prod(shape[1:]) == fan_in)
        want = f"(B, ...) with {fan_in if fan_in is not None else 'the same'} values per image"
    else:
        ok = x.dim() == 4 and (fan_in is None or shape[1] == fan_in)
        want = f"(B, {fan_in if fan_in is not None else 'C'}, H, W)"
    if not ok:
        raise ValueError(f"{name} must have shape {want} for this network, not {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} holds no images (shape {shape}); expected at least one")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must hold real numbers, not {x.dtype}")
    if not x.is_floating_point():
        if code_bits is None:
            raise ValueError(f"{name} must be float images in [0, 1], not {x.dtype}")
        lo, hi = (int(v) for v in torch.aminmax(x))
        top = 2 ** code_bits - 1
        if lo < 0 or hi > top:
            raise ValueError(f"{name}: integer input codes must lie in 0..{top} "
                             f"(A_in = {code_bits} bits), got {lo}..{hi}")
        return
    lo, hi = (float(v) for v in torch.aminmax(x))  # Python floats: cheaper to compare
    if not (lo >= 0 and hi <= 1):  # also false for NaN
        if torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
        raise ValueError(f"{name}: inputs must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def _fan_in(module: nn.Module) -> int | None:
    """Inputs (dense) or input channels (convolution) of the first weight layer in module."""
    for m in module.modules():
        w = getattr(m, "weight_mu", None)
        if w is None and isinstance(m, nn.Linear | nn.Conv2d):
            w = m.weight
        if isinstance(w, torch.Tensor) and w.dim() >= 2:
            return int(w.shape[1])
    return None


def max_pool(a: torch.Tensor, k: int) -> torch.Tensor:
    """k x k, stride-k max-pooling of (..., H, W) with H and W multiples of k: elementwise
    maxima of strided slices (the values of F.max_pool2d, without its argmax indices)."""
    cols = a[..., 0::k]
    for j in range(1, k):
        cols = torch.maximum(cols, a[..., j::k])
    out = cols[..., 0::k, :]
    for j in range(1, k):
        out = torch.maximum(out, cols[..., j::k, :])
    return out


class Stage(nn.Module):
    """weight -> BatchNorm -> activation -> [max-pool] -> [flatten].

    ``post`` applies everything after the weight layer, so that other weight
    implementations (crossbars) can share it.
    """

    def __init__(self, weight: nn.Module, bn: nn.Module, act: nn.Module | None,
                 pool: int = 0, flatten: bool = False):
        super().__init__()
        self.weight = weight
        self.bn = bn
        self.act = act if act is not None else nn.Identity()
        self.pool = nn.MaxPool2d(pool) if pool else nn.Identity()
        self.flatten = flatten

    def post(self, z: torch.Tensor) -> torch.Tensor:
        a = self.act(self.bn(z))
        k = self.pool.kernel_size if isinstance(self.pool, nn.MaxPool2d) else 0
        if k and not torch.is_grad_enabled() and a.shape[-1] % k == 0 and a.shape[-2] % k == 0:
            a = max_pool(a, k)  # inference: the same values, without argmax indices
        else:
            a = self.pool(a)
        return a.flatten(1) if self.flatten else a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.weight(x))


class BayesNet(nn.Module):
    """A Bayes-by-Backprop network: (B, 1, H, W) images in [0, 1] -> (B, C) logits.

    Inputs are rounded to the A_in-bit code the first crossbar receives
    (:func:`~spinbayes.golden.layers.quantize_input`). In training mode every forward pass
    draws one weight sample per layer from q; ``deterministic()`` switches to the mean.
    ``image_shape`` (C, H, W), when given, is the only input shape :meth:`forward` accepts
    (:func:`check_input`); without it only the first layer's fan-in is checked.
    """

    def __init__(self, stages: list[Stage], input_bits: int, flatten_input: bool,
                 image_shape: tuple[int, int, int] | None = None):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_bits = input_bits
        self.flatten_input = flatten_input
        self.image_shape = tuple(image_shape) if image_shape is not None else None

    @property
    def num_classes(self) -> int:
        """Outputs of the last stage (its BatchNorm's features)."""
        return int(self.stages[-1].bn.num_features)

    def check_input(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ValueError unless x is a batch of images this network runs (see
        :func:`check_input`)."""
        check_input(x, image_shape=self.image_shape, flatten_input=self.flatten_input,
                    fan_in=_fan_in(self.stages[0].weight), name=name)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_input(x, self.input_bits)
        return x.flatten(1) if self.flatten_input else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.prepare_input(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def kl(self) -> torch.Tensor:
        return sum(layer.kl() for layer in bayes_layers(self))

    def set_sampling(self, sampling: bool) -> None:
        for layer in bayes_layers(self):
            layer.sampling = sampling


def _act(cfg: Config) -> nn.Module:
    return Comparator(cfg.act_bits) if cfg.activation == "comparator" else nn.ReLU()


def _kw(cfg: Config) -> dict:
    # Initialisation draws from a private generator seeded by cfg.seed: same seed, same net.
    return dict(prior_sigma=cfg.prior_sigma, rho_init=cfg.rho_init,
                generator=torch.Generator().manual_seed(cfg.seed))


def _mlp(cfg: Config, in_features: int, num_classes: int) -> list[Stage]:
    kw = _kw(cfg)
    sizes = [in_features, *cfg.hidden]
    stages = [Stage(BayesLinear(a, b, **kw), nn.BatchNorm1d(b), _act(cfg))
              for a, b in zip(sizes[:-1], sizes[1:])]
    stages.append(Stage(BayesLinear(sizes[-1], num_classes, **kw),
                        nn.BatchNorm1d(num_classes), None))
    return stages


def _lenet5(cfg: Config, image_shape: tuple[int, int, int], num_classes: int) -> list[Stage]:
    c, h, w = image_shape
    if (h, w) != (28, 28):
        raise ValueError(f"lenet5 expects 28x28 inputs (MNIST / Fashion-MNIST), "
                         f"got {h}x{w}; use --topology mlp for the digits")
    kw = _kw(cfg)
    return [
        Stage(BayesConv2d(c, 6, 5, padding=2, **kw), nn.BatchNorm2d(6), _act(cfg), pool=2),
        Stage(BayesConv2d(6, 16, 5, **kw), nn.BatchNorm2d(16), _act(cfg), pool=2,
              flatten=True),
        Stage(BayesLinear(400, 120, **kw), nn.BatchNorm1d(120), _act(cfg)),
        Stage(BayesLinear(120, 84, **kw), nn.BatchNorm1d(84), _act(cfg)),
        Stage(BayesLinear(84, num_classes, **kw), nn.BatchNorm1d(num_classes), None),
    ]


def build_model(cfg: Config, image_shape: tuple[int, int, int], num_classes: int) -> BayesNet:
    """The network of ``cfg.topology`` for images of ``image_shape`` = (C, H, W)."""
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), not {image_shape!r}")
    if cfg.topology == "mlp":
        c, h, w = image_shape
        return BayesNet(_mlp(cfg, c * h * w, num_classes), cfg.input_bits, flatten_input=True,
                        image_shape=image_shape)
    return BayesNet(_lenet5(cfg, image_shape, num_classes), cfg.input_bits,
                    flatten_input=False, image_shape=image_shape)
