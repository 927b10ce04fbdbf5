"""The T passes of a SpinBayes network in inference mode (eval, no autograd).

:meth:`~spinbayes.golden.inference.SpinBayesNet.forward` runs this path when the network is
in eval mode and no gradient is wanted. BatchNorm then uses its running statistics, so every
row of a layer is computed independently of the others and a row needs computing only once,
whichever (image, pass) rows share it. (Training mode, which re-calibrates BatchNorm from the
statistics of the rows a layer sees, keeps the path of :mod:`.inference`.)

With n = 1, row (b, t)'s output at layer l depends only on image b and the crossbars chosen
in layers 0..l. A layer's output is held as its distinct rows ``h`` (R, ...) and ``src``
(B*T,), the row of h that each (image, pass) row reads (None: one row each, in order):

* layer 0 runs all N crossbars once per image (B*N rows, whatever T is);
* a later layer computes each distinct (input row, crossbar) pair once, sorted by crossbar,
  so that a crossbar costs one matrix product or convolution over a contiguous block of rows;
  a small dense layer instead computes every crossbar for each distinct input in one matrix
  product and gathers.

BatchNorm, the activation and max-pooling (:func:`post`) run on the distinct rows only. With
a monotone activation (comparators, ReLU, none) max-pooling comes first, on k^2 times fewer
elements: max(f(a), f(b)) = f(max(a, b)) exactly for any nondecreasing f (float rounding is
monotone too), and a channel whose BatchNorm scale is negative, for which f is
nonincreasing, is pooled with the minimum instead.

Convolutions over a few rows use ATen's im2col convolution (``thnn_conv2d``), which costs a
fraction of oneDNN's per-call overhead there; larger ones use ``F.conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Comparator
from .networks import max_pool

__all__ = ["comparator_thresholds", "conv", "forward_eval", "one_way", "post"]

#: Convolution inputs of at most this many values use im2col + one matrix product
#: (measured on LeNet-5's layers, bench/golden_throughput.py); larger ones use oneDNN.
_IM2COL_VALUES = 4096

#: Above this many multiply-accumulates a dense layer groups rows by crossbar instead of
#: computing all N crossbars for every distinct input (chosen on the digits MLP, bench/).
ALL_CROSSBARS_MACS = 2 ** 24

_MONOTONE = (Comparator, nn.ReLU, nn.Identity)
_F32 = torch.float32
_BatchNorm = nn.modules.batchnorm._BatchNorm


def conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """F.conv2d(x, w, stride=stride, padding=padding), by the faster kernel for x's size."""
    if x.numel() <= _IM2COL_VALUES:
        return torch.ops.aten.thnn_conv2d(x, w, list(w.shape[-2:]), None, [stride] * 2,
                                          [padding] * 2)
    return F.conv2d(x, w, stride=stride, padding=padding)


def _pool_kernel(stage: nn.Module, z: torch.Tensor) -> int:
    """k of the stage's k x k, stride-k max-pool when z's H and W are multiples of k, else 0."""
    pool = stage._modules["pool"]
    if not isinstance(pool, nn.MaxPool2d):
        return 0
    k = pool.kernel_size
    if (not isinstance(k, int) or pool.stride not in (k, (k, k)) or pool.padding not in (0, (0, 0))
            or pool.dilation not in (1, (1, 1)) or z.shape[-1] % k or z.shape[-2] % k):
        return -1
    return k


def _pool_signs(bn: nn.Module) -> torch.Tensor | None:
    """-1 for channels whose BatchNorm scale is negative, +1 else, shaped (1, C, 1, 1); None
    when no scale is negative."""
    if not bn.affine:
        return None
    neg = bn.weight.detach() < 0
    return (1 - 2 * neg.to(bn.weight.dtype)).reshape(1, -1, 1, 1) if bool(neg.any()) else None


def _float_keys(v: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 keys in the same order (-0.0 and 0.0 share key 0)."""
    bits = v.view(torch.int32).long()
    return torch.where(bits < 0, -(bits + 2 ** 31), bits)


def _key_floats(k: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_float_keys`."""
    return torch.where(k < 0, -k - 2 ** 31, k).int().view(torch.float32)


def _bn_tensors(bn: nn.Module) -> tuple:
    """(running_mean, running_var, weight, bias) of a BatchNorm, read from its dicts (this
    runs once per layer and pass batch; Module.__getattr__ is slow)."""
    buffers, params = bn._buffers, bn._parameters
    return (buffers.get("running_mean"), buffers.get("running_var"), params.get("weight"),
            params.get("bias"))


def comparator_thresholds(bn: nn.Module, tensors: tuple | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(t, s) with [BatchNorm(z) >= 1/2] == [s * z >= t] for every float32 z, per channel.

    BatchNorm in eval mode is a fixed, monotone float function f_c(z) per channel c
    (nondecreasing in u = s_c z, s_c = -1 where the scale is negative, else +1), so the
    1-bit comparator fires exactly on u >= t_c for one float t_c (+-inf when it always or
    never fires). t_c is found by bisection over the ordered float32 values, evaluating
    BatchNorm itself, so no re-derivation of its rounding is involved. s is None when no
    scale is negative. t and s have shape (1, C). Cached on ``bn`` until one of its tensors
    changes (identity or version). ``tensors``: bn's, when the caller has read them.
    """
    tensors = _bn_tensors(bn) if tensors is None else tensors
    mean, var, weight, bias = tensors
    key = (mean._version, var._version, None if weight is None else weight._version,
           None if bias is None else bias._version, bn.eps)
    cached = bn.__dict__.get("_spinbayes_thresholds")
    if (cached is not None and cached[1] == key and cached[0][0] is mean
            and cached[0][1] is var and cached[0][2] is weight and cached[0][3] is bias):
        return cached[2]
    C = mean.numel()
    neg = (weight.detach() < 0) if weight is not None else torch.zeros(C, dtype=torch.bool)
    signs = 1 - 2 * neg.float()

    def fires(keys):
        z = F.batch_norm((signs * _key_floats(keys)).reshape(1, C), mean, var, weight, bias,
                         False, 0.0, bn.eps)
        return z.reshape(C) >= 0.5

    big = torch.finfo(torch.float32).max
    lo = _float_keys(torch.full((C,), -big))
    hi = _float_keys(torch.full((C,), big))
    always, never = fires(lo), ~fires(hi)
    while bool((hi - lo > 1).any()):   # invariant: fires(hi), not fires(lo)
        mid = (lo + hi) // 2
        f = fires(mid)
        hi, lo = torch.where(f, mid, hi), torch.where(f, lo, mid)
    t = torch.where(always, -torch.inf, torch.where(never, torch.inf, _key_floats(hi)))
    result = (t.reshape(1, C), signs.reshape(1, C) if bool(neg.any()) else None)
    bn.__dict__["_spinbayes_thresholds"] = (tensors, key, result)
    return result


def _float32(tensors) -> bool:
    return all([t is None or t.dtype is _F32 for t in tensors])


def post(stage: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``stage.post(z)`` for an eval-mode stage: the same values, computed with max-pooling
    first and a 1-bit comparator as one comparison (see the module docstring)."""
    modules = stage._modules   # not Module.__getattr__: this runs per layer and call
    bn, act = modules["bn"], modules["act"]
    if not isinstance(bn, _BatchNorm) or bn.training:
        return stage.post(z)
    tensors = _bn_tensors(bn)
    if tensors[0] is None:
        return stage.post(z)
    k = _pool_kernel(stage, z) if isinstance(modules["pool"], nn.MaxPool2d) else 0
    if type(act) is Comparator and act.levels == 1 and z.dtype is _F32 and _float32(tensors):
        t, signs = comparator_thresholds(bn, tensors)
        if z.dim() > 2:
            shape = (*t.shape, *(1,) * (z.dim() - 2))
            t = t.reshape(shape)
            signs = None if signs is None else signs.reshape(shape)
        u = z if signs is None else z * signs
        if k > 0:
            u = max_pool(u, k)
        a = torch.ge(u, t, out=torch.empty_like(u))
        if k < 0:
            a = stage.pool(a)
        return a.flatten(1) if stage.flatten and a.dim() > 2 else a
    early = k > 0 and isinstance(act, _MONOTONE)
    if early:
        signs = _pool_signs(bn)
        z = max_pool(z, k) if signs is None else signs * max_pool(signs * z, k)
    mean, var, weight, bias = tensors
    a = torch.batch_norm(z, weight, bias, mean, var, False, 0.0, bn.eps, False)
    a = a if isinstance(act, nn.Identity) else act(a)
    if k and not early:
        a = max_pool(a, k) if k > 0 else stage.pool(a)
    return a.flatten(1) if stage.flatten and a.dim() > 2 else a


def _first(xbar, h: torch.Tensor) -> torch.Tensor:
    """Every crossbar of the first layer on every image: (B, ...) -> (B*N, ...)."""
    buffers = xbar._buffers
    w = buffers["weight"]
    N = w.shape[0]
    if xbar.kind == "linear":
        return torch.mm(h, buffers["weight_all"]).view(h.shape[0] * N, -1)
    z = conv(h, w.reshape(N * w.shape[1], *w.shape[2:]), xbar.stride, xbar.padding)
    return z.reshape(h.shape[0] * N, w.shape[1], *z.shape[2:])


def _by_crossbar(xbar, h: torch.Tensor, src: torch.Tensor | None,
                 k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each distinct (row of h, crossbar) pair once: returns (z, src) with z (R', ...) and
    src (B*T,) the row of z of each (image, pass) row."""
    w = xbar._buffers["weight"]
    R, N = h.shape[0], w.shape[0]
    keys = torch.add(torch.arange(R) if src is None else src, k, alpha=R)  # crossbar-major
    keys, src = torch.unique(keys, return_inverse=True)
    counts = torch.bincount(keys // R, minlength=N).tolist()
    x = h.index_select(0, keys % R)
    parts = []
    for c, (part, n) in enumerate(zip(x.split(counts), counts)):
        if n:
            parts.append(F.linear(part, w[c]) if xbar.kind == "linear"
                         else conv(part, w[c], xbar.stride, xbar.padding))
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), src


def one_way(crossbars, stages, h: torch.Tensor, choice: torch.Tensor, B: int, T: int,
            kept: list | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 1-way passes of prepared inputs h (B, ...) with crossbar choices (L, B*T).

    Returns (h, src): the last layer's distinct rows and the row of each (image, pass) row
    (None: one row each). ``kept`` (a list, or None) receives every stage's output
    (B, T, ...).
    """
    layers = zip(crossbars, stages, choice.unbind(0))
    xbar, stage, k = next(layers)
    N = xbar._buffers["weight"].shape[0]
    h = post(stage, _first(xbar, h))                                      # (B*N, ...)
    src = k if B == 1 else (k.reshape(B, T) + torch.arange(0, B * N, N).unsqueeze(1)).view(-1)
    if kept is not None:
        kept.append(h.index_select(0, src).reshape(B, T, *h.shape[1:]))
    for xbar, stage, k in layers:
        R = h.shape[0]
        buffers = xbar._buffers
        w = buffers["weight"]
        if xbar.kind == "linear" and R * w.numel() <= ALL_CROSSBARS_MACS:
            z = torch.mm(h, buffers["weight_all"]).view(R * N, w.shape[1])  # (R*N, out)
            rows = torch.add(k, torch.arange(R) if src is None else src, alpha=N)
            if rows.shape[0] < z.shape[0]:
                z, src = z.index_select(0, rows), None
            else:
                src = rows
        else:
            z, src = _by_crossbar(xbar, h, src, k)
        h = post(stage, z)
        if kept is not None:
            rows = h if src is None else h.index_select(0, src)
            kept.append(rows.reshape(B, T, *h.shape[1:]))
    return h, src


def forward_eval(net, x: torch.Tensor, choices: torch.Tensor,
                 keep_layers: bool) -> tuple[torch.Tensor, list | None]:
    """The passes of ``net`` (a SpinBayesNet in eval mode) on checked images x with checked
    choices (L, B, T, n): returns (logits (B, T, C), every stage's output or None)."""
    L, B, T, n = choices.shape
    levels = 2 ** net.input_bits - 1
    h = x.mul(levels).round_().div_(levels)   # quantize_input's rounding (range checked)
    if net.flatten_input:
        h = h.flatten(1)
    modules = net._modules
    crossbars, stages = modules["crossbars"], modules["stages"]
    kept = [] if keep_layers else None
    if n == 1:
        h, src = one_way(crossbars, stages, h, choices.reshape(L, B * T), B, T, kept)
        if src is not None:
            h = h.index_select(0, src)
    else:
        for i, (xbar, stage) in enumerate(zip(crossbars, stages)):
            z = (xbar.shared_input(h, choices[0]) if i == 0
                 else xbar.grouped(h, choices[i].reshape(B * T, n)))
            h = post(stage, z)
            if kept is not None:
                kept.append(h.reshape(B, T, *h.shape[1:]))
    return h.reshape(B, T, -1), kept
