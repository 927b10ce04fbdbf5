"""Integer hardware mode: the bit-exact contract between golden/ and rtl/ (docs/HARDWARE.md).

Everything here is integer arithmetic on int64 tensors; the RTL must produce the same numbers,
output by output, given the same crossbar choices. Per layer and pass:

1. **Input code** a_i: unsigned, A bits (A_in for the first layer, the comparators' A after).
2. **Crossbar read** (bit-serial): bit-plane b of the inputs drives R rows at a time; for each
   cell column the flash ADC returns p = sum_r x_r^(b) d_r in -4R..4R (exact in ideal mode).
3. **Adder-accumulator (AAC)**: acc_j = sum_c sum_b 2^b sum_g p_(g,b,j,c) = sum_i a_i w_ij.
4. **n-way averaging**: S_j = sum over the n chosen crossbars of acc_j. The division by n is
   folded into the thresholds and output scales below, so it is exact (no rounding).
5. Hidden layers, **comparators** (BatchNorm folded): thermometer output
   sum_m [sigma_j * S_j >= theta_jm], m = 1 .. 2^A - 1, with sigma_j = sign of BatchNorm's
   gamma. Last layer, **output scaling**: y_c = M_c * S_c + B_c, a fixed-point logit with F
   fractional bits.
6. **T averaging** (eq. 4's average, on the logits): Y_c = sum_t y_(t,c);
   averaged_c = floor((Y_c + floor(T/2)) / T); class = argmax_c Y_c, lowest index on ties.
   The host computes eq. 4 itself from the per-pass y (softmax(y / 2^F), then the mean).

Every width is derived from the parameters by :func:`layer_widths` (golden/contract.py,
torch-free, shared with rtl/ and sim/) with the bound written beside it; the tests drive each
layer at its extremes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .approximation import CrossbarImages
from .cells import encode_weights
from .contract import ROWS_PER_READ, LayerWidths, layer_widths, signed_bits
from .inference import SpinBayesNet, check_choices, sample_choices
from .layers import Comparator, input_codes
from .networks import check_input

__all__ = ["signed_bits", "LayerWidths", "layer_widths", "HwLayer", "HwNetwork", "HwOutput",
           "fold_network", "crossbar_mvm_bitserial", "Agreement", "compare_with_float"]


def crossbar_mvm_bitserial(a: torch.Tensor, codes: torch.Tensor, in_bits: int, Q: int,
                           R: int = ROWS_PER_READ) -> tuple[torch.Tensor, torch.Tensor]:
    """The crossbar read and AAC of steps 2-3, spelled out, for one crossbar.

    a: int (B, rows) input codes in 0..2^in_bits - 1; codes: int (out, rows) weight codes.
    Returns (acc (B, out), p (B, in_bits, groups, out * k)), the ADC codes of every read.
    Equal to ``a @ codes.T`` (a test checks it); the network uses that product directly.
    """
    B, rows = a.shape
    levels = torch.from_numpy(encode_weights(codes.numpy(), Q)).long()    # (out, rows, k)
    out, _, k = levels.shape
    cols = levels.permute(1, 0, 2).reshape(rows, out * k)                  # cell columns
    groups = math.ceil(rows / R)
    pad = groups * R - rows
    cols = F.pad(cols, (0, 0, 0, pad)).reshape(groups, R, out * k)
    bits = torch.stack([(a >> b) & 1 for b in range(in_bits)], dim=1)      # (B, A, rows)
    bits = F.pad(bits, (0, pad)).reshape(B, in_bits, groups, R)
    p = torch.einsum("bagr,grc->bagc", bits, cols)                          # ADC codes
    assert p.abs().max() <= 4 * R
    weights = (2 ** torch.arange(in_bits)).reshape(1, in_bits, 1, 1)
    acc_cols = (p * weights).sum(dim=(1, 2))                                # (B, out*k)
    return acc_cols.reshape(B, out, k).sum(-1), p


@dataclass
class HwLayer:
    """One layer of the integer network (see the module docstring for the arithmetic)."""

    kind: str
    codes: torch.Tensor          # int64 (N, out, in) or (N, out, C, k, k)
    in_bits: int
    stride: int = 1
    padding: int = 0
    thresholds: torch.Tensor | None = None  # int64 (out, L): hidden layers
    sign: torch.Tensor | None = None        # int64 (out,) in {-1, +1}
    out_bits: int = 0                        # A of the thermometer output
    scale: torch.Tensor | None = None       # int64 (out,) M_c: last layer
    offset: torch.Tensor | None = None      # int64 (out,) B_c
    frac_bits: int = 0                       # F
    pool: int = 0
    flatten: bool = False

    @property
    def is_output(self) -> bool:
        return self.scale is not None

    @property
    def rows(self) -> int:
        return int(math.prod(self.codes.shape[2:]))

    def crossbar_outputs(self, a: torch.Tensor) -> torch.Tensor:
        """acc of every crossbar: a (R, ...) codes -> (R, N, out[, H', W'])."""
        n, out = self.codes.shape[:2]
        w = self.codes.reshape(n * out, self.rows)
        # float64 BLAS is exact here: every product and partial sum is an integer of
        # magnitude <= acc_max < 2^53 (checked in HwNetwork.__init__), whatever the order.
        if self.kind == "linear":
            return (a.double() @ w.double().T).round().long().reshape(a.shape[0], n, out)
        k = self.codes.shape[-1]
        cols = F.unfold(a.double(), k, padding=self.padding, stride=self.stride)
        hw = [(s + 2 * self.padding - k) // self.stride + 1 for s in a.shape[2:]]
        z = torch.einsum("ok,rkp->rop", w.double(), cols)
        return z.round().long().reshape(a.shape[0], n, out, *hw)

    def activate(self, S: torch.Tensor) -> torch.Tensor:
        """Comparators (hidden) or output scaling (last) of the n-way sums S (R, out, ...)."""
        extra = [1] * (S.dim() - 2)
        if self.is_output:
            return S * self.scale.reshape(1, -1, *extra) + self.offset.reshape(1, -1, *extra)
        s = (S * self.sign.reshape(1, -1, *extra)).unsqueeze(-1)
        th = self.thresholds.reshape(1, self.thresholds.shape[0], *extra, -1)
        a = (s >= th).sum(-1)
        if self.pool:
            a = F.max_pool2d(a.double(), self.pool).long()
        return a.flatten(1) if self.flatten else a


@dataclass
class HwOutput:
    """per_pass: y (B, T, C); layers: every layer's n-way sums S (B, T, ...), for debugging."""

    per_pass: torch.Tensor
    frac_bits: int
    choices: torch.Tensor
    layers: list[torch.Tensor] = field(default_factory=list)
    activations: list[torch.Tensor] = field(default_factory=list)

    @property
    def total(self) -> torch.Tensor:
        return self.per_pass.sum(dim=1)

    @property
    def averaged(self) -> torch.Tensor:
        """floor((Y + floor(T/2)) / T): the T average, rounded half up."""
        T = self.per_pass.shape[1]
        return torch.div(self.total + T // 2, T, rounding_mode="floor")

    @property
    def prediction(self) -> torch.Tensor:
        return self.total.argmax(dim=-1)

    @property
    def probs(self) -> torch.Tensor:
        """Host side: softmax(y / 2^F) per pass, (B, T, C) float64."""
        return torch.softmax(self.per_pass.double() / 2 ** self.frac_bits, dim=-1)


class HwNetwork:
    """The integer network; :meth:`run` is the reference the RTL is checked against."""

    def __init__(self, layers: list[HwLayer], input_bits: int, flatten_input: bool, N: int,
                 Q: int, n_way: int, R: int = ROWS_PER_READ,
                 image_shape: tuple[int, ...] | None = None):
        self.layers, self.input_bits, self.flatten_input = layers, input_bits, flatten_input
        # (C, H, W): the only input shape run() accepts (None: only the fan-in is checked)
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.N, self.Q, self.n_way, self.R = N, Q, n_way, R
        for i, w in enumerate(self.widths()):
            if w.sum_max >= 2 ** 53:
                raise ValueError(f"layer {i}: sums up to {w.sum_max} exceed the 2^53 range in "
                                 f"which the reference's float64 products are exact")

    def with_codes(self, codes: list[torch.Tensor]) -> HwNetwork:
        """A copy whose layers hold ``codes`` (one int tensor per layer, of its shape) instead
        of the mapped ones: the network of the levels a chip stores (golden/faults.py)."""
        if len(codes) != len(self.layers) or any(
                tuple(c.shape) != tuple(layer.codes.shape) for c, layer in zip(codes, self.layers)):
            raise ValueError("codes must hold one tensor per layer, each of its layer's shape")
        layers = [replace(layer, codes=c.long()) for c, layer in zip(codes, self.layers)]
        return HwNetwork(layers, self.input_bits, self.flatten_input, self.N, self.Q,
                         self.n_way, self.R, self.image_shape)

    def widths(self, T: int = 1) -> list[LayerWidths]:
        out = []
        for layer in self.layers:
            kw = {}
            if layer.is_output:
                kw = dict(T=T, m_max=int(layer.scale.abs().max()),
                          b_max=int(layer.offset.abs().max()))
            out.append(layer_widths(layer.rows, layer.codes.shape[1], layer.in_bits, self.Q,
                                    self.R, self.n_way, **kw))
        return out

    def run(self, x: torch.Tensor, choices: torch.Tensor) -> HwOutput:
        """x: (B, C, H, W) images in [0, 1], or their integer input codes in 0..2^A_in - 1;
        choices int (L, B, T, n) in 0..N-1. Both are checked
        (:func:`~spinbayes.golden.networks.check_input`, :func:`check_choices`)."""
        check_input(x, image_shape=self.image_shape, flatten_input=self.flatten_input,
                    fan_in=int(self.layers[0].codes.shape[2]), code_bits=self.input_bits)
        B = x.shape[0]
        choices = check_choices(choices, L=len(self.layers), B=B, N=self.N, n=self.n_way)
        T = choices.shape[2]
        a = x.long() if not x.is_floating_point() else input_codes(x, self.input_bits)
        if self.flatten_input:
            a = a.flatten(1)
        sums, acts = [], []
        for i, layer in enumerate(self.layers):
            ch = choices[i].long()                                    # (B, T, n)
            if i == 0:   # the same input for every pass: all N crossbars once, then gather
                acc = layer.crossbar_outputs(a)                       # (B, N, out, ...)
                idx = ch.reshape(B, T * ch.shape[2], *([1] * (acc.dim() - 2)))
                picked = torch.gather(acc, 1, idx.expand(-1, -1, *acc.shape[2:]))
                S = picked.reshape(B, T, ch.shape[2], *acc.shape[2:]).sum(2)
            else:
                acc = layer.crossbar_outputs(a)                       # (B*T, N, out, ...)
                idx = ch.reshape(B * T, -1, *([1] * (acc.dim() - 2)))
                S = torch.gather(acc, 1, idx.expand(-1, -1, *acc.shape[2:])).sum(1)
                S = S.reshape(B, T, *S.shape[1:])
            sums.append(S)
            a = layer.activate(S.reshape(B * T, *S.shape[2:]))
            acts.append(a.reshape(B, T, *a.shape[1:]))
        out = self.layers[-1]
        return HwOutput(acts[-1], out.frac_bits, choices, sums, acts)


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(g, mu, beta) in float64 with BatchNorm(z) = g * (z - mu) + beta."""
    var = bn.running_var.double()
    g = (bn.weight.double() if bn.affine else torch.ones_like(var)) / torch.sqrt(var + bn.eps)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(var)
    return g, bn.running_mean.double(), beta


@torch.no_grad()
def fold_network(net: SpinBayesNet, images: CrossbarImages, *, R: int = ROWS_PER_READ,
                 scale_bits: int = 16) -> HwNetwork:
    """Fold a (re-calibrated) SpinBayes network into the integer network of the contract.

    BatchNorm after a crossbar sees z = alpha * S / n with alpha = s_l / (q_max (2^A - 1)).
    Hidden: comparator m fires iff g (z - mu) + beta >= t_m = (m - 1/2) / L, i.e.
    sigma * S >= theta_m = ceil(sigma * n (mu + (t_m - beta) / g) / alpha), sigma = sign(g),
    clamped to -sum_max .. sum_max + 1 (a constant output when g = 0 or far out of range).
    Last: logits = (g alpha / n) S + (beta - g mu), scaled by 2^F and rounded, with F the
    largest exponent for which every M_c fits ``scale_bits`` signed bits.
    """
    if not isinstance(scale_bits, int) or scale_bits < 2:
        raise ValueError(f"scale_bits must be an integer >= 2, not {scale_bits!r}")
    n, q_max = net.n_way, images.layers[0].q_max
    layers, in_bits = [], net.input_bits
    for i, (xbar, stage) in enumerate(zip(images.layers, net.stages)):
        codes = xbar.weights.long()
        alpha = xbar.scale / (q_max * (2 ** in_bits - 1))
        g, mu, beta = _bn_affine(stage.bn)
        common = dict(kind=xbar.kind, codes=codes, in_bits=in_bits, stride=xbar.stride,
                      padding=xbar.padding, flatten=stage.flatten,
                      pool=stage.pool.kernel_size if isinstance(stage.pool, nn.MaxPool2d)
                      else 0)
        rows = int(math.prod(codes.shape[2:]))
        sum_max = layer_widths(rows, codes.shape[1], in_bits, images.Q, R, n).sum_max
        last = i == len(images.layers) - 1
        if last:
            a_c = g * alpha / n
            b_c = beta - g * mu
            top = 2 ** (scale_bits - 1) - 1
            peak = float(a_c.abs().max())
            frac = math.floor(math.log2(top / peak)) if peak > 0 else 0
            while frac > -64 and (a_c * 2.0 ** frac).round().abs().max() > top:
                frac -= 1
            layers.append(HwLayer(**common, scale=(a_c * 2.0 ** frac).round().long(),
                                  offset=(b_c * 2.0 ** frac).round().long(), frac_bits=frac))
            break
        if not isinstance(stage.act, Comparator):
            raise ValueError(f"layer {i}: the integer hardware mode needs comparator "
                             f"activations, not {type(stage.act).__name__}")
        L = stage.act.levels
        t = (torch.arange(1, L + 1, dtype=torch.float64) - 0.5) / L              # (L,)
        sign = torch.where(g < 0, -1, 1).long()
        safe_g = torch.where(g == 0, torch.ones_like(g), g)
        tau = n * (mu[:, None] + (t[None, :] - beta[:, None]) / safe_g[:, None]) / alpha
        theta = torch.ceil(sign[:, None].double() * tau)
        const_on = (beta[:, None] >= t[None, :])                                  # g == 0
        theta = torch.where((g == 0)[:, None],
                            torch.where(const_on, -float(sum_max), float(sum_max + 1)), theta)
        theta = theta.clamp(-sum_max, sum_max + 1).long()
        layers.append(HwLayer(**common, thresholds=theta, sign=sign, out_bits=stage.act.bits))
        in_bits = stage.act.bits
    return HwNetwork(layers, net.input_bits, net.flatten_input, images.N, images.Q, n, R,
                     image_shape=net.image_shape)


@dataclass(frozen=True)
class Agreement:
    """Integer hardware mode against the float SpinBayes model on the same choices (%)."""

    n_way: int
    images: int
    float_accuracy: float        # eq. 4 on the float model
    host_accuracy: float         # eq. 4 on softmax(y / 2^F) of the integer per-pass outputs
    hw_accuracy: float           # the hardware's own class, argmax of Y
    host_agreement: float        # same class as the float model, host eq. 4
    hw_agreement: float          # same class as the float model, hardware class
    logit_agreement: float       # hardware class against argmax of the float mean logits
    hidden_agreement: list[float]  # per hidden layer: identical comparator outputs
    max_logit_error: float       # max |y / 2^F - float logit| over passes and classes


@torch.no_grad()
def compare_with_float(net: SpinBayesNet, hw: HwNetwork, x: torch.Tensor, y: torch.Tensor,
                       T: int, generator: torch.Generator | None = None, *,
                       batch_size: int | None = None, progress: bool = False,
                       desc: str = "hardware mode") -> Agreement:
    """Run both models on the same crossbar choices and measure where they differ.

    The choices of all images are drawn at once (as ``net(x, T, generator=generator)``
    draws them); the images then run in batches of ``batch_size`` (None: one batch) and
    the counts are summed, so the result does not depend on ``batch_size``.
    """
    from .progress import progress as progress_bar

    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, not {T!r}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    net.check_input(x)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (len(x),):
        raise ValueError(f"y must be a tensor of {len(x)} labels, not shape "
                         f"{tuple(getattr(y, 'shape', ()))}")
    choices = sample_choices(net.num_layers, len(x), T, net.N, net.n_way, generator)
    bs = batch_size or len(x)
    counts = torch.zeros(6, dtype=torch.long)
    same = torch.zeros(len(hw.layers) - 1, dtype=torch.long)
    elements = torch.zeros(len(hw.layers) - 1, dtype=torch.long)
    max_err = 0.0
    for i in progress_bar(range(0, len(x), bs), desc=desc, unit="batch", enabled=progress,
                          leave=False):
        xb, yb, ch = x[i:i + bs], y[i:i + bs], choices[:, i:i + bs]
        ref = net(xb, choices=ch, keep_layers=True)
        out = hw.run(xb, ch)
        for j, (layer, f_act, h_act) in enumerate(zip(hw.layers[:-1], ref.layers[:-1],
                                                      out.activations[:-1])):
            levels = 2 ** layer.out_bits - 1
            same[j] += int(((f_act * levels).round().long() == h_act).sum())
            elements[j] += h_act.numel()
        f_cls, host_cls, hw_cls = ref.prediction, out.probs.mean(1).argmax(-1), out.prediction
        f_logit_cls = ref.logits.mean(1).argmax(-1)
        counts += torch.stack([(f_cls == yb).sum(), (host_cls == yb).sum(),
                               (hw_cls == yb).sum(), (host_cls == f_cls).sum(),
                               (hw_cls == f_cls).sum(), (hw_cls == f_logit_cls).sum()])
        logits = out.per_pass.double() / 2 ** out.frac_bits
        max_err = max(max_err, float((logits - ref.logits.double()).abs().max()))
    pct = [100.0 * int(c) / len(x) for c in counts]
    hidden = [100.0 * int(s) / int(e) for s, e in zip(same, elements)]
    return Agreement(net.n_way, len(x), *pct, hidden, max_err)
