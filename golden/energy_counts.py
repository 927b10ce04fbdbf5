"""Operation counts per image of the energy model (section 4.3.1): the crossbar layers of a
network (:class:`LayerShape`) and the operations each performs per image (:class:`LayerCounts`).

Operation counts come from two places that must agree: the RTL's activity counters, and
:func:`count_operations`, the analytic schedule of docs/ARCHITECTURE.md (dense layers: one
read per R-row group, bit-plane and chosen crossbar; conv layers: the same per output
position, im2col windows over a crossbar of k*k*C_in rows). For a network the RTL runs,
``tests/report`` checks that the two are equal, counter for counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .geometry import geometry_of

__all__ = ["LayerCounts", "LayerShape", "arbiter_draws", "count_operations", "distinct_crossbars",
           "layer_shapes", "lenet5_shapes", "run_counts", "shapes_of_hw", "totals"]


# --- layer shapes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerShape:
    """What the schedule needs of one crossbar layer.

    rows: crossbar rows (inputs, or k*k*C_in for a convolution); outputs: neurons (columns
    of weights); positions: output positions per image (H' x W' for a convolution, 1 for a
    dense layer); in_bits: bits of the input code, read bit-serially; last: the output layer
    (output scaling and averaging instead of comparators); act_bits: A of its comparators.
    """

    name: str
    kind: str
    rows: int
    outputs: int
    positions: int = 1
    in_bits: int = 1
    last: bool = False
    act_bits: int = 1


def shapes_of_hw(hw, image_shape=None) -> list[LayerShape]:
    """The layer shapes of a :class:`~spinbayes.golden.hardware.HwNetwork`, dense and conv,
    from its geometry (:func:`~spinbayes.golden.geometry.geometry_of`; ``image_shape``
    (C, H, W), None: the network's own). Named and shaped as :func:`layer_shapes` names and
    shapes the golden model's layers."""
    out = []
    for i, g in enumerate(geometry_of(hw, image_shape)):
        name = f"conv{i}" if g.kind == "conv2d" else f"fc{i}"
        out.append(LayerShape(name, g.kind, g.rows, g.outputs, g.positions, g.in_bits,
                              g.is_output, max(1, g.out_bits)))
    return out


def layer_shapes(model, image_shape, input_bits: int | None = None,
                 act_bits: int | None = None) -> list[LayerShape]:
    """The crossbar layers of a golden :class:`~spinbayes.golden.networks.BayesNet` (dense and
    conv), found by running one zero image through it and recording each weight layer's
    input and output shapes. Works on any device, including ``meta``-free CPU models."""
    import torch

    from .layers import BayesConv2d, BayesLinear

    stages = list(model.stages)
    seen = []
    hooks = [s.weight.register_forward_hook(
        lambda mod, inp, out, i=i: seen.append((i, tuple(inp[0].shape), tuple(out.shape))))
        for i, s in enumerate(stages)]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, *image_shape))
    finally:
        for h in hooks:
            h.remove()
    A_in = model.input_bits if input_bits is None else input_bits
    out = []
    for (i, _, oshape), stage in zip(seen, stages):
        w = stage.weight
        last = i == len(stages) - 1
        a = act_bits if act_bits is not None else getattr(stage.act, "bits", 1)
        if isinstance(w, BayesConv2d):
            rows = w.in_channels * w.kernel_size ** 2
            out.append(LayerShape(f"conv{i}", "conv2d", rows, w.out_channels,
                                  int(oshape[2] * oshape[3]), A_in if i == 0 else a, last, a))
        elif isinstance(w, BayesLinear):
            out.append(LayerShape(f"fc{i}", "linear", w.in_features, w.out_features, 1,
                                  A_in if i == 0 else a, last, a))
        else:
            raise ValueError(f"stage {i}: unsupported weight layer {type(w).__name__}")
    return out


def lenet5_shapes(input_bits: int = 4, act_bits: int = 1, num_classes: int = 10):
    """LeNet-5 on 28x28 MNIST (spinbayes.golden.networks), as :class:`LayerShape` s."""
    from ..config import Config
    from .networks import build_model

    cfg = Config(topology="lenet5", input_bits=input_bits, act_bits=act_bits, epochs=1)
    return layer_shapes(build_model(cfg, (1, 28, 28), num_classes), (1, 28, 28))


# --- operation counts -----------------------------------------------------------------------
@dataclass
class LayerCounts:
    """Operations of one layer per image (T passes). Floats where ``draws`` is an expectation.

    The fields named like the RTL's counters count exactly what those counters count.
    """

    name: str
    cnt_xbar_reads: float
    cnt_aac_ops: float
    cnt_cmp_ops: float
    cnt_avg_ops: float
    cnt_rng_draws: float
    mvms: float          # whole-vector crossbar activations (memory per="mvm")
    rng_devices: float   # device switching attempts, k per draw (rng per="device")
    images: float = 1.0  # averaging per="image": charged once, to the output layer

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def count_operations(shapes: list[LayerShape], *, N: int, n_way: int, T: int, R: int,
                     draws=None) -> list[LayerCounts]:
    """Operations per image of each layer under the dense/conv schedule (ARCHITECTURE.md).

    Per pass and layer: reads = positions * ceil(rows / R) * in_bits * n (one R-row group,
    one bit-plane, one chosen crossbar each); AAC accumulates = reads / n (the n chosen
    crossbars are summed in one step); comparators = positions * outputs * (2^A - 1) for
    hidden layers; averaging = outputs multiply-adds per pass and outputs divisions per image
    for the last layer. RNG draws: ``draws`` (L,) exact per-image draws of each layer's
    arbiter (e.g. from :func:`arbiter_draws`), or None for the expectation T *
    E[draws per pass] (golden.arbiter.expected_draws). Max-pooling and flattening of
    binary comparator outputs cost nothing here (Table 4 has no entry for them).
    """
    from .arbiter import code_bits, expected_draws

    for name, v, lo in (("N", N, 1), ("n_way", n_way, 1), ("T", T, 1), ("R", R, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
    if n_way > N:
        raise ValueError(f"n_way must not exceed N ({N}), not {n_way!r}")
    if not shapes:
        raise ValueError("no layers to count")
    if draws is not None and len(draws) != len(shapes):
        raise ValueError(f"draws has {len(draws)} entries for {len(shapes)} layers")
    k = code_bits(N)
    e_draws = Fraction(T) * expected_draws(N, n_way)
    out = []
    for i, s in enumerate(shapes):
        if s.rows < 1 or s.outputs < 1 or s.positions < 1 or s.in_bits < 1:
            raise ValueError(f"layer {s.name}: rows, outputs, positions and in_bits must be "
                             f">= 1, got {s}")
        aac = T * s.positions * math.ceil(s.rows / R) * s.in_bits
        d = float(e_draws) if draws is None else float(draws[i])
        out.append(LayerCounts(
            name=s.name, cnt_xbar_reads=aac * n_way, cnt_aac_ops=aac,
            cnt_cmp_ops=0 if s.last else T * s.positions * s.outputs * (2 ** s.act_bits - 1),
            cnt_avg_ops=(T + 1) * s.outputs if s.last else 0,
            cnt_rng_draws=d, mvms=T * s.positions * n_way, rng_devices=k * d,
            images=1.0 if s.last else 0.0))
    return out


def run_counts(shapes: list[LayerShape], *, N: int, n_way: int, R: int, passes: int,
               distinct: int | None = None, draws=None) -> list[LayerCounts]:
    """Operations of one image that ran ``passes`` passes (adaptive T: the passes the stop rule
    let run; :func:`count_operations` with T = passes, divisions once per image).

    With ``distinct`` (first-layer reuse; the core's counters with REUSE on, rtl/reuse.py),
    the first layer's crossbar work is charged once per distinct crossbar the arbiter chose
    for the image over its passes (all n picks of every pass): reads = mvms / positions =
    positions * ceil(rows / R) * in_bits * distinct; accumulates = the same number (each crossbar's
    pre-activation sums are accumulated and kept on their own, so that n-way sums can be
    formed from them), plus positions * (n - 1) per pass to add the n kept sums of the pass's
    choice. Comparators, RNG draws and the later layers are unchanged; reading the kept sums
    back (block RAM) has no Table 4 entry and is not charged.
    """
    counts = count_operations(shapes, N=N, n_way=n_way, T=passes, R=R, draws=draws)
    if distinct is None:
        return counts
    if isinstance(distinct, bool) or not isinstance(distinct, (int, np.integer)) \
            or not n_way <= distinct <= min(N, passes * n_way):
        raise ValueError(f"distinct must be an integer in {n_way}..{min(N, passes * n_way)} "
                         f"(distinct crossbars of {passes} passes of {n_way} of N={N}), "
                         f"not {distinct!r}")
    s, c = shapes[0], counts[0]
    per_crossbar = s.positions * math.ceil(s.rows / R) * s.in_bits
    c.cnt_xbar_reads = per_crossbar * int(distinct)
    c.cnt_aac_ops = per_crossbar * int(distinct) + passes * s.positions * (n_way - 1)
    c.mvms = s.positions * int(distinct)
    return counts


def distinct_crossbars(choices, N: int, passes=None) -> np.ndarray:
    """Distinct crossbars among the first ``passes[b]`` passes' choices of each image:
    ``choices`` (B, T, n) int in 0..N-1 (one layer's), ``passes`` (B,) in 1..T or None (all T).
    Returns (B,) int64."""
    ch = np.asarray(choices, dtype=np.int64)
    if ch.ndim != 3 or ch.size == 0 or ch.min() < 0 or ch.max() >= N:
        raise ValueError(f"choices must be a non-empty (B, T, n) array of crossbars in "
                         f"0..{N - 1}, got shape {ch.shape}")
    B, T, _ = ch.shape
    t = np.full(B, T) if passes is None else np.asarray(passes, dtype=np.int64)
    if t.shape != (B,) or t.min() < 1 or t.max() > T:
        raise ValueError(f"passes must be (B,) = ({B},) integers in 1..{T}, got {t!r}")
    seen = np.zeros((B, N), dtype=bool)
    ran = np.arange(T)[None, :] < t[:, None]                        # (B, T)
    b = np.broadcast_to(np.arange(B)[:, None, None], ch.shape)
    keep = np.broadcast_to(ran[..., None], ch.shape)
    seen[b[keep], ch[keep]] = True
    return seen.sum(1)


def totals(counts: list[LayerCounts]) -> dict:
    """Sum of every field of :func:`count_operations` over the layers."""
    keys = [k for k in counts[0].as_dict() if k != "name"]
    return {k: sum(getattr(c, k) for c in counts) for k in keys}


def arbiter_draws(L: int, B: int, T: int, N: int, n_way: int = 1, *, seed: int,
                  current: float = 230e-6, threshold_bits: int = 16) -> np.ndarray:
    """Draws (L, B) each layer's arbiter makes for each image: the RTL's ``cnt_rng_draws``
    split by layer, replayed from the seed exactly as
    :func:`~spinbayes.golden.arbiter.arbiter_choices` replays the choices."""
    from .arbiter import Arbiter, DeviceBank, code_bits, device_seed
    from .mtj import EmulatedRng

    k = code_bits(N)
    out = np.zeros((L, B), dtype=np.int64)
    for layer in range(L):
        bank = DeviceBank([EmulatedRng.from_current(device_seed(seed, layer, d, k), current,
                                                    threshold_bits=threshold_bits)
                           for d in range(k)])
        arb = Arbiter(N, n_way, bank)
        for b in range(B):
            before = arb.draws
            arb.choose(T)
            out[layer, b] = arb.draws - before
    return out

