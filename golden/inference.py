"""SpinBayes inference (paper sections 3.3 and 4.4, eq. 4) and BatchNorm re-calibration.

On each forward pass the arbiter of every layer chooses n of the layer's N crossbars
(n-way; uniform over the n-subsets), the chosen crossbars see the same input and their
outputs are averaged. T passes are averaged by eq. 4:

    p(y | x) ~= 1/T sum_t p(y | x, theta^(t)),   theta^(t) ~ Choose(S).

The crossbar choices are an explicit tensor of shape (L, B, T, n): drawn here from a seeded
generator, or given by the caller (later: the RTL's arbiter trace). The same choices always
give the same output, bit for bit.

The T passes are vectorised: the B*T (image, pass) rows of a layer are grouped by crossbar,
so a layer costs N matrix products whatever B and T are. With n = 1, passes that share
their crossbars up to a layer share its output, so the first layer runs once per crossbar
and image (B*N rows, whatever T is) and later layers only on distinct prefixes. In eval
mode without autograd the passes run by :mod:`.passes` (the same values, fewer operations);
training mode (BatchNorm re-calibration) runs the reference path here, whose rows define the
batch statistics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import passes
from .approximation import CrossbarImages, CrossbarLayer
from .layers import quantize_input
from .networks import BayesNet, check_input
from .passes import ALL_CROSSBARS_MACS

__all__ = ["SpinBayesNet", "SpinBayesOutput", "check_choices", "recalibrate_bn",
           "sample_choices"]


def sample_choices(L: int, B: int, T: int, N: int, n: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform n-of-N crossbar choices, int64 (L, B, T, n), each row sorted ascending."""
    if not 1 <= n <= N:
        raise ValueError(f"n_way must lie in 1..N={N}, not {n!r}")
    if n == 1:
        return torch.randint(N, (L, B, T, 1), generator=generator)
    keys = torch.rand((L, B, T, N), generator=generator)
    return keys.argsort(dim=-1)[..., :n].sort(dim=-1).values


def check_choices(choices: torch.Tensor, *, L: int, B: int, N: int,
                  n: int | None = None) -> torch.Tensor:
    """Validate crossbar choices: int (L, B, T, n), T >= 1, values in 0..N-1, distinct per
    row (and n as given); returns them as int64."""
    want = f"(L={L}, B={B}, T, n{'' if n is None else f'={n}'})"
    shape = tuple(getattr(choices, "shape", ()))
    if (not isinstance(choices, torch.Tensor) or choices.dim() != 4 or shape[:2] != (L, B)
            or shape[2] < 1 or shape[3] < 1 or (n is not None and shape[3] != n)):
        raise ValueError(f"choices must have shape {want} with T >= 1, got {shape}")
    if choices.dtype.is_floating_point or choices.dtype == torch.bool or choices.is_complex():
        raise ValueError(f"choices must be integer crossbar indices, not {choices.dtype}")
    choices = choices.long()
    if choices.numel() and (choices.min() < 0 or choices.max() >= N):
        raise ValueError(f"choices must lie in 0..{N - 1}, got "
                         f"{int(choices.min())}..{int(choices.max())}")
    if shape[3] > 1:
        s = choices.sort(dim=-1).values
        if (s[..., 1:] == s[..., :-1]).any():
            raise ValueError("an n-way choice names the same crossbar twice")
    return choices


@dataclass
class SpinBayesOutput:
    """logits: (B, T, C) per-pass outputs; choices: (L, B, T, n) crossbar indices.

    layers (only with ``keep_layers=True``): every stage's output, (B, T, ...), where
    comparator outputs are the thermometer count divided by 2^A - 1.
    """

    logits: torch.Tensor
    choices: torch.Tensor
    layers: list[torch.Tensor] | None = None

    @property
    def probs(self) -> torch.Tensor:
        """Per-pass softmax probabilities (B, T, C)."""
        return self.logits.softmax(-1)   # F.softmax's kernel, without its Python

    @property
    def mean_probs(self) -> torch.Tensor:
        """Eq. 4: the average of the T passes, (B, C)."""
        return self.probs.mean(dim=1)

    @property
    def prediction(self) -> torch.Tensor:
        return self.mean_probs.argmax(dim=-1)


class _CrossbarOp(nn.Module):
    """The N crossbars of one layer, in float (de-quantised) form."""

    def __init__(self, layer: CrossbarLayer):
        super().__init__()
        self.kind, self.stride, self.padding = layer.kind, layer.stride, layer.padding
        self.register_buffer("weight", layer.dequantized())
        if self.kind == "linear":  # all N crossbars as one (in, N*out) matrix
            n, out, inp = self.weight.shape
            self.register_buffer("weight_all", self.weight.reshape(n * out, inp).T.contiguous())

    @property
    def N(self) -> int:
        return self.weight.shape[0]

    def _apply(self, x: torch.Tensor, k: int) -> torch.Tensor:
        w = self.weight[k]
        if self.kind == "linear":
            return F.linear(x, w)
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    def all_crossbars(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of every crossbar for every row: (R, ...) -> (R, N, ...)."""
        if self.kind == "linear":
            return (x @ self.weight_all).reshape(x.shape[0], *self.weight.shape[:2])
        n, c_out = self.weight.shape[:2]
        w = self.weight.reshape(n * c_out, *self.weight.shape[2:])
        z = F.conv2d(x, w, stride=self.stride, padding=self.padding)
        return z.reshape(x.shape[0], n, c_out, *z.shape[2:])

    def shared_input(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """x (B, ...) identical for all passes, choice (B, T, n) -> n-way mean (B*T, ...)."""
        z = self.all_crossbars(x)                                   # (B, N, ...)
        B, T, n = choice.shape
        rows = torch.arange(B).reshape(B, 1, 1)
        picked = z[rows, choice]                                    # (B, T, n, ...)
        picked = picked[:, :, 0] if n == 1 else picked.mean(dim=2)
        return picked.reshape(B * T, *z.shape[2:])

    def grouped(self, x: torch.Tensor, choice: torch.Tensor,
                src: torch.Tensor | None = None) -> torch.Tensor:
        """choice (R, n), one row per (image, pass) -> n-way mean (R, ...).

        Row r's input is x[r], or x[src[r]] when ``src`` is given (x then holds only the
        distinct inputs). Small dense layers compute all N crossbars for every distinct input
        and gather (a few large kernels beat N small ones); otherwise rows are grouped by
        crossbar (no wasted work).
        """
        R, n = choice.shape
        if src is None:
            src = torch.arange(R)
        if self.kind == "linear" and x.shape[0] * self.weight.numel() <= ALL_CROSSBARS_MACS:
            z = self.all_crossbars(x)                                   # (R', N, out)
            picked = z[src.reshape(R, 1), choice]                       # (R, n, out)
            return picked[:, 0] if n == 1 else picked.mean(dim=1)
        out = None
        for k in range(self.N):
            rows, slots = (choice == k).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            z = self._apply(x[src[rows]], k)
            if out is None:
                out = z.new_empty((R, n, *z.shape[1:]))
            out[rows, slots] = z
        return out[:, 0] if n == 1 else out.mean(dim=1)


class SpinBayesNet(nn.Module):
    """The SpinBayes network of a set of crossbar images.

    Parameters
    ----------
    images : CrossbarImages
        N quantized samples per layer (:func:`~spinbayes.golden.approximation.approximate`).
    model : BayesNet
        The trained network the images came from; its BatchNorm, activations and pooling
        are copied (so re-calibrating this network leaves ``model`` untouched).
    n_way : int
        Crossbars chosen and averaged per layer and pass (1 in the paper's hardware).
    """

    def __init__(self, images: CrossbarImages, model: BayesNet, n_way: int = 1):
        super().__init__()
        if len(images) != len(model.stages):
            raise ValueError(f"the images hold {len(images)} layers, the model "
                             f"{len(model.stages)}")
        if not isinstance(n_way, int) or not 1 <= n_way <= images.N:
            raise ValueError(f"n_way must be an integer in 1..N={images.N}, not {n_way!r}")
        self.N, self.Q, self.n_way = images.N, images.Q, n_way
        self.crossbars = nn.ModuleList(_CrossbarOp(layer) for layer in images.layers)
        self.stages = nn.ModuleList()
        for stage in model.stages:
            post = copy.deepcopy(stage)
            post.weight = nn.Identity()  # the crossbars replace the Bayesian weights
            self.stages.append(post)
        self.input_bits, self.flatten_input = model.input_bits, model.flatten_input
        self.image_shape = getattr(model, "image_shape", None)
        self._fan_in = int(self.crossbars[0].weight.shape[2])
        self.eval()

    def check_input(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ValueError unless x is a batch of images this network runs
        (:func:`~spinbayes.golden.networks.check_input`)."""
        shape = self.image_shape
        if (shape is not None and type(x) is torch.Tensor and x.dtype == torch.float32
                and x.shape[1:] == shape and x.numel()):   # the usual case, checked quickly
            lo, hi = torch.aminmax(x)
            if float(lo) >= 0 and float(hi) <= 1:
                return
        # crossbar weights: (N, out, in) dense or (N, out, C_in, k, k) convolution
        check_input(x, image_shape=self.image_shape, flatten_input=self.flatten_input,
                    fan_in=self._fan_in, name=name)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_input(x, self.input_bits)
        return x.flatten(1) if self.flatten_input else x

    @property
    def num_layers(self) -> int:
        return len(self.crossbars)

    def check_choices(self, choices: torch.Tensor, B: int) -> torch.Tensor:
        """Validate recorded choices (:func:`check_choices`); returns them as int64."""
        return check_choices(choices, L=self.num_layers, B=B, N=self.N)

    def forward(self, x: torch.Tensor, T: int | None = None, *,
                choices: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                keep_layers: bool = False) -> SpinBayesOutput:
        """Run T stochastic passes on x (B, 1, H, W); logits (B, T, C).

        Give either ``T`` (choices are drawn from ``generator``) or recorded ``choices``.
        """
        self.check_input(x)
        B = x.shape[0]
        if choices is None:
            if not isinstance(T, int) or isinstance(T, bool) or T < 1:
                raise ValueError(f"T must be a positive integer, not {T!r}")
            choices = sample_choices(len(self._modules["crossbars"]), B, T, self.N, self.n_way,
                                     generator)
        else:
            choices = self.check_choices(choices, B)
            if T is not None and T != choices.shape[2]:
                raise ValueError(f"T={T} disagrees with the recorded choices' "
                                 f"T={choices.shape[2]}")
        T = choices.shape[2]
        if not self.training and not torch.is_grad_enabled():
            logits, kept = passes.forward_eval(self, x, choices, keep_layers)
            return SpinBayesOutput(logits, choices, kept)
        h = self.prepare_input(x)
        kept = [] if keep_layers else None
        if choices.shape[3] == 1:
            h, src = self._one_way(h, choices[..., 0].reshape(len(self.crossbars), B * T),
                                   B, T, kept)
            if src is not None:
                h = h[src]
        else:
            for i, (xbar, stage) in enumerate(zip(self.crossbars, self.stages)):
                if i == 0:
                    z = xbar.shared_input(h, choices[0])
                else:
                    z = xbar.grouped(h, choices[i].reshape(B * T, -1))
                h = stage.post(z)
                if keep_layers:
                    kept.append(h.reshape(B, T, *h.shape[1:]))
        return SpinBayesOutput(h.reshape(B, T, -1), choices, kept)

    def _one_way(self, h: torch.Tensor, choice: torch.Tensor, B: int, T: int,
                 kept: list | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """1-way passes, computing shared (image, crossbars so far) prefixes once.

        Row (b, t)'s output at layer i depends only on image b and the crossbars chosen in
        layers 0..i. The first layer therefore has only N distinct outputs per image: its
        crossbars, BatchNorm, comparators and pooling run on B*N rows, not B*T. Convolutional
        layers after it run on the distinct prefixes only (``torch.unique``); dense layers
        compute every crossbar for each distinct input and gather. ``src`` maps the B*T rows
        onto the rows of h (None: one row each). Returns (h, src).
        """
        first = zip(self.crossbars, self.stages)
        xbar, stage = next(first)
        h = stage.post(xbar.all_crossbars(h).flatten(0, 1))               # (B*N, ...)
        src = (torch.arange(B).reshape(B, 1) * self.N + choice[0].reshape(B, T)).flatten()
        if kept is not None:
            kept.append(h[src].reshape(B, T, *h.shape[1:]))
        for i, (xbar, stage) in enumerate(first, start=1):
            if xbar.kind == "conv2d":
                keys, src = torch.unique(src * self.N + choice[i], return_inverse=True)
                h = stage.post(xbar.grouped(h, (keys % self.N).unsqueeze(1), keys // self.N))
            else:
                h = stage.post(xbar.grouped(h, choice[i].unsqueeze(1), src))
                src = None
            if kept is not None:
                kept.append((h if src is None else h[src]).reshape(B, T, *h.shape[1:]))
        return h, src

    @torch.no_grad()
    def predict(self, x: torch.Tensor, T: int, *, generator: torch.Generator | None = None,
                batch_size: int = 512, progress: bool = False,
                desc: str = "SpinBayes") -> SpinBayesOutput:
        """:meth:`forward` in mini-batches; returns the concatenated output."""
        self.check_input(x)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.eval()
        outs = [self(x[i:i + batch_size], T, generator=generator)
                for i in tqdm(range(0, len(x), batch_size), desc=desc,
                              disable=None if progress else True, leave=False)]
        return SpinBayesOutput(torch.cat([o.logits for o in outs]),
                               torch.cat([o.choices for o in outs], dim=1))


@torch.no_grad()
def recalibrate_bn(net: SpinBayesNet, x_train: torch.Tensor, batches: int, *,
                   batch_size: int = 128, generator: torch.Generator | None = None,
                   progress: bool = False) -> None:
    """Re-estimate every BatchNorm's statistics under the quantized crossbars (section 3.2).

    Runs ``batches`` random training mini-batches through ``net`` with random n-way
    choices (one pass each) and replaces the running mean and variance by their cumulative
    average over those batches. ``batches = 0`` leaves the statistics untouched.
    """
    if batches < 0:
        raise ValueError(f"batches must be >= 0, not {batches!r}")
    if batches == 0:
        return
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    net.train()
    try:
        for _ in tqdm(range(batches), desc=f"BN re-calibration (n={net.n_way})",
                      disable=None if progress else True, leave=False):
            idx = torch.randint(len(x_train), (batch_size,), generator=generator)
            net(x_train[idx], 1, generator=generator)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
        net.eval()
