"""Bayesian FPN-style segmentation network and its SpinBayes (crossbar) form.

The paper segments with an FPN (Lin et al. 2017) on a ResNet-18 encoder (section 4.1).
:class:`BayesSegNet` builds that graph from the classification model's parts: every weight
layer is a :class:`~spinbayes.golden.networks.Stage` (bias-free
:class:`~spinbayes.golden.layers.BayesConv2d` -> BatchNorm -> comparator or ReLU, or no
activation where a sum follows), held in one ``ModuleList`` ``stages`` in forward order.

Why a ModuleList and a ``run(x, weight_fn)``: :class:`~spinbayes.golden.inference.SpinBayesNet`
runs a chain of stages, while an FPN has skips, lateral sums and upsampling. The graph is
written once, in :meth:`BayesSegNet.run`, and asks ``weight_fn(i, h)`` for the weight-layer
output of layer i. Training passes each layer's own sampled weight; Gaussian MC passes one
drawn weight list per pass; :class:`SpinBayesSegNet` passes the n-way mean of the chosen
crossbars. Because the Bayes layers are the model's only ``BayesConv2d`` modules, in forward
order, :func:`~spinbayes.golden.approximation.approximate` (N samples, eq. 3) and
:func:`~spinbayes.golden.inference.recalibrate_bn` apply unchanged, and the crossbar images
have one layer per stage, like the classification networks'.

Encoders. ``"small"`` (default; trains on 2 cores in a minute on 64x64 images): a stride-1
stem and three stride-2 3x3 convolutions of widths w, 2w, 4w, 8w; the pyramid uses the
stride-2, -4 and -8 features. ``"resnet18"``: ResNet-18's stem (7x7/2 and 3x3/2 max-pool) and
its four stages of two basic blocks (widths w, 2w, 4w, 8w; the paper's network is w = 64),
1x1 stride-2 projections on the shortcuts; the pyramid uses the stride-4 .. -32 features.
Decoder: 1x1 laterals (BatchNorm, no activation), top-down nearest upsampling and sums,
a 3x3 convolution with activation per level, bilinear upsampling to the finest level, the
sum, and a 1x1 head to C classes whose BatchNorm output, bilinearly upsampled to the input
size, is the per-pixel logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .baselines import DropConnect, InputDropout, _plain, _Stochastic
from .inference import SpinBayesNet, _CrossbarOp, sample_choices
from .layers import BayesConv2d, bayes_layers, quantize_input
from .networks import Stage, _act, _kw

__all__ = ["ENCODERS", "BayesSegNet", "SegOutput", "SpinBayesSegNet", "bbb_seg_predict",
           "build_seg_model", "mc_seg_predict", "seg_twin"]

ENCODERS = ("small", "resnet18")


class BayesSegNet(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, C, H, W) logits; see the module docstring."""

    def __init__(self, cfg: Config, in_channels: int, num_classes: int, *,
                 encoder: str = "small", width: int = 16, pyramid: int = 32):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, not {encoder!r}")
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("width", width), ("pyramid", pyramid)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, not {num_classes!r}")
        self.encoder, self.input_bits, self.num_classes = encoder, cfg.input_bits, num_classes
        self.stages = nn.ModuleList()
        self.act = _act(cfg)  # applied after a residual sum
        self._kw = _kw(cfg)
        self._cfg = cfg
        widths = [width * 2 ** k for k in range(4)]
        if encoder == "small":
            self._conv(in_channels, widths[0], 3, 1)
            for a, b in zip(widths[:-1], widths[1:]):
                self._conv(a, b, 3, 2)
            levels = widths[1:]
        else:
            self._conv(in_channels, widths[0], 7, 2)
            self.blocks = []  # (first stage index, has a projection shortcut)
            c = widths[0]
            for k, w in enumerate(widths):
                for j in range(2):
                    stride = 2 if (k > 0 and j == 0) else 1
                    self.blocks.append((len(self.stages), stride != 1 or c != w))
                    self._conv(c, w, 3, stride)
                    self._conv(w, w, 3, 1, act=False)
                    if stride != 1 or c != w:
                        self._conv(c, w, 1, stride, act=False)
                    c = w
            levels = widths
        self.laterals = [self._conv(c, pyramid, 1, 1, act=False) for c in levels]
        self.smooth = [self._conv(pyramid, pyramid, 3, 1) for _ in levels]
        self.head = self._conv(pyramid, num_classes, 1, 1, act=False)
        del self._kw, self._cfg

    def _conv(self, c_in: int, c_out: int, k: int, stride: int, act: bool = True) -> int:
        conv = BayesConv2d(c_in, c_out, k, stride=stride, padding=k // 2, **self._kw)
        self.stages.append(Stage(conv, nn.BatchNorm2d(c_out), _act(self._cfg) if act else None))
        return len(self.stages) - 1

    def run(self, h: torch.Tensor, weight_fn) -> torch.Tensor:
        """The graph on prepared input h; ``weight_fn(i, x)`` is layer i's weight output."""
        size = h.shape[-2:]

        def layer(i, x):
            return self.stages[i].post(weight_fn(i, x))

        h = layer(0, h)
        feats = []
        if self.encoder == "small":
            for i in range(1, 4):
                h = layer(i, h)
                feats.append(h)
        else:
            h = F.max_pool2d(h, 3, stride=2, padding=1)
            for n, (i, proj) in enumerate(self.blocks):
                out = layer(i + 1, layer(i, h))
                h = self.act(out + (layer(i + 2, h) if proj else h))
                if n % 2 == 1:
                    feats.append(h)
        p = None
        merged = 0
        for k in reversed(range(len(feats))):
            lat = layer(self.laterals[k], feats[k])
            p = lat if p is None else lat + F.interpolate(p, size=lat.shape[-2:],
                                                          mode="nearest")
            s = layer(self.smooth[k], p)
            merged = merged + (s if k == 0 else F.interpolate(
                s, size=feats[0].shape[-2:], mode="bilinear", align_corners=False))
        logits = layer(self.head, merged)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"images must have shape (B, C, H, W), not {tuple(x.shape)}")
        return quantize_input(x, self.input_bits)

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor] | None = None):
        """Logits (B, C, H, W); ``weights``: one weight tensor per stage (else each layer's
        own: a fresh sample in sampling mode, the mean otherwise, or a twin's masked one)."""
        if weights is not None and len(weights) != len(self.stages):
            raise ValueError(f"weights must hold {len(self.stages)} tensors, not {len(weights)}")
        if weights is None:
            return self.run(self.prepare_input(x), lambda i, h: self.stages[i].weight(h))
        return self.run(self.prepare_input(x), lambda i, h: self.stages[i].weight(h, weights[i]))

    def kl(self) -> torch.Tensor:
        return sum((layer.kl() for layer in bayes_layers(self)), torch.zeros(()))

    def set_sampling(self, sampling: bool) -> None:
        for layer in bayes_layers(self):
            layer.sampling = sampling

    def stochastic_layers(self) -> list[_Stochastic]:
        """The dropout / DropConnect layers of a twin (:func:`seg_twin`); empty for BBB."""
        return [m for m in self.modules() if isinstance(m, _Stochastic)]


def build_seg_model(cfg: Config, in_channels: int, num_classes: int, *, encoder: str = "small",
                    width: int = 16, pyramid: int = 32) -> BayesSegNet:
    """The segmentation network; initial weights drawn from ``cfg.seed``."""
    return BayesSegNet(cfg, in_channels, num_classes, encoder=encoder, width=width,
                       pyramid=pyramid)


def seg_twin(model: BayesSegNet, method: str, p: float) -> BayesSegNet:
    """The deterministic twin of ``model`` (same graph, weights = posterior means) with
    MC-Dropout (``"mc_dropout"``: input dropout on every layer but the first) or
    MC-DropConnect (``"mc_dropconnect"``: weight masks on every layer), as in
    :mod:`spinbayes.golden.baselines`."""
    if method not in ("mc_dropout", "mc_dropconnect"):
        raise ValueError(f"method must be 'mc_dropout' or 'mc_dropconnect', not {method!r}")
    twin = copy.deepcopy(model)
    for i, stage in enumerate(twin.stages):
        plain = _plain(stage.weight)
        if method == "mc_dropconnect":
            stage.weight = DropConnect(plain, p)
        else:
            stage.weight = InputDropout(plain, p if i > 0 else 0.0)
    return twin


@dataclass
class SegOutput:
    """logits: (B, T, C, H, W) per pass; choices: (L, B, T, n) crossbar indices."""

    logits: torch.Tensor
    choices: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        """Per-pass, per-pixel softmax probabilities (B, T, C, H, W)."""
        return F.softmax(self.logits, dim=2)


class SpinBayesSegNet(nn.Module):
    """The SpinBayes form of a :class:`BayesSegNet`: N crossbars per layer, n-way, T passes.

    Pass t of image b uses crossbars ``choices[l, b, t]`` in layer l (drawn uniformly by
    :func:`~spinbayes.golden.inference.sample_choices`, or given). The first layer computes
    all N crossbars once per image and gathers (its input is the same for every pass); later
    layers run on the B*T (image, pass) rows, grouped by crossbar
    (``_CrossbarOp.grouped`` of :mod:`~spinbayes.golden.inference`).
    """

    def __init__(self, images, model: BayesSegNet, n_way: int = 1):
        super().__init__()
        if len(images) != len(model.stages):
            raise ValueError(f"the images hold {len(images)} layers, the model "
                             f"{len(model.stages)}")
        if isinstance(n_way, bool) or not isinstance(n_way, int) or not 1 <= n_way <= images.N:
            raise ValueError(f"n_way must be an integer in 1..N={images.N}, not {n_way!r}")
        self.N, self.Q, self.n_way = images.N, images.Q, n_way
        self.crossbars = nn.ModuleList(_CrossbarOp(layer) for layer in images.layers)
        self.body = copy.deepcopy(model)
        for stage in self.body.stages:
            stage.weight = nn.Identity()  # the crossbars replace the Bayesian weights
        self.eval()

    @property
    def num_layers(self) -> int:
        return len(self.crossbars)

    def forward(self, x: torch.Tensor, T: int | None = None, *,
                choices: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> SegOutput:
        B = x.shape[0]
        if choices is None:
            if isinstance(T, bool) or not isinstance(T, int) or T < 1:
                raise ValueError(f"T must be a positive integer, not {T!r}")
            choices = sample_choices(self.num_layers, B, T, self.N, self.n_way, generator)
        else:  # the classification network's validation needs only num_layers and N
            choices = SpinBayesNet.check_choices(self, choices, B)
        T, n = choices.shape[2], choices.shape[3]
        rows = choices.reshape(self.num_layers, B * T, n)

        def weight_fn(i, h):
            if i == 0:
                return self.crossbars[0].shared_input(h, choices[0])
            return self.crossbars[i].grouped(h, rows[i])

        logits = self.body.run(self.body.prepare_input(x), weight_fn)
        return SegOutput(logits.reshape(B, T, *logits.shape[1:]), choices)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, T: int, *, generator: torch.Generator | None = None,
                batch_size: int = 16) -> torch.Tensor:
        """Per-pass probabilities (B, T, C, H, W), in mini-batches."""
        self.eval()
        return torch.cat([self(x[i:i + batch_size], T, generator=generator).probs
                          for i in range(0, len(x), batch_size)])


@torch.no_grad()
def bbb_seg_predict(model: BayesSegNet, x: torch.Tensor, T: int, *,
                    generator: torch.Generator | None = None, batch_size: int = 16
                    ) -> torch.Tensor:
    """Gaussian MC (eq. 2): per-pass probabilities (B, T, C, H, W), one weight sample per
    layer and pass, shared by the images of a batch."""
    model.eval()
    layers = bayes_layers(model)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        out.append(torch.stack([F.softmax(model(xb, [w.sample_weight(generator)
                                                     for w in layers]), dim=1)
                                for _ in range(T)], dim=1))
    return torch.cat(out)


@torch.no_grad()
def mc_seg_predict(twin: BayesSegNet, x: torch.Tensor, T: int, *,
                   generator: torch.Generator | None = None, batch_size: int = 16
                   ) -> torch.Tensor:
    """MC-Dropout / MC-DropConnect: masks on, BatchNorm in eval mode; (B, T, C, H, W)."""
    layers = twin.stochastic_layers()
    if not layers:
        raise ValueError("mc_seg_predict needs a twin with dropout or DropConnect layers")
    twin.eval()
    for layer in layers:
        layer.mc, layer.generator = True, generator
    try:
        return torch.cat([torch.stack([F.softmax(twin(x[i:i + batch_size]), dim=1)
                                       for _ in range(T)], dim=1)
                          for i in range(0, len(x), batch_size)])
    finally:
        for layer in layers:
            layer.mc, layer.generator = False, None
