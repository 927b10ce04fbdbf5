"""Energy model of section 4.3.1: per-operation energies (Table 4) times operation counts.

The paper gives one dynamic energy per circuit (Table 4) but not the operation each figure is
charged per. This module makes that reading explicit (docs/ENERGY.md) and switchable where
two readings are plausible:

* **memory** (decoding / sensing, 4.71 pJ): ``per="read"`` (default), one read of R rows x
  all columns of one crossbar (read decoder, bit-line drive and ADC sensing), the RTL's
  ``cnt_xbar_reads``; or ``per="mvm"``, one whole matrix-vector product of one crossbar
  (all rows and bit-planes of one input vector at once, as an analog array with multi-bit
  DACs would do it).
* **rng** (spintronic RNG, 3.80 pJ): ``per="draw"`` (default), one k-bit code drawn by the
  arbiter's k devices in parallel, rejected codes included (``cnt_rng_draws``); or
  ``per="device"``, one device switching attempt (k per draw).
* **averaging** (18.42 pJ): ``per="op"`` (default), the RTL's ``cnt_avg_ops``: one
  multiply-add y_c = M_c S_c + B_c per class and pass plus one division per class and
  image; or ``per="image"``, the whole block once per image.
* **aac** (adder-accumulator, 0.06 pJ): per accumulate of one read (all columns in
  parallel), ``cnt_aac_ops``.
* **comparator** (0.01 pJ): per comparison of one neuron with one threshold,
  ``cnt_cmp_ops``.

Operation counts come from two places that must agree: the RTL's activity counters, and
:func:`count_operations`, the analytic schedule of docs/ARCHITECTURE.md (dense layers: one
read per R-row group, bit-plane and chosen crossbar; conv layers: the same per output
position, im2col windows over a crossbar of k*k*C_in rows). For a network the RTL runs,
``tests/report`` checks that the two are equal, counter for counter.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["BLOCKS", "COUNTER_OF", "PAPER_TABLE4", "PAPER_TABLE5", "READINGS", "EnergyModel",
           "LayerShape", "LayerCounts", "arbiter_draws", "count_operations", "energy_of_counts",
           "energy_of_counters", "layer_shapes", "lenet5_shapes", "load_energy_model",
           "plot_energy_breakdown", "plot_scaling", "shapes_of_hw", "table5_rows"]

#: The blocks of Table 4, in report order.
BLOCKS = ("memory", "rng", "averaging", "aac", "comparator")
#: Table 4 of the paper: dynamic energy per operation, pJ (TSMC 40 nm; arbiter and memory at
#: circuit level).
PAPER_TABLE4 = {"memory": 4.71, "rng": 3.80, "averaging": 18.42, "aac": 0.06,
                "comparator": 0.01}
#: The operations each block may be charged per; the first is the default reading.
READINGS = {"memory": ("read", "mvm"), "rng": ("draw", "device"),
            "averaging": ("op", "image"), "aac": ("read",), "comparator": ("comparison",)}
#: The RTL activity counter that counts each block's default operation.
COUNTER_OF = {"memory": "cnt_xbar_reads", "rng": "cnt_rng_draws", "averaging": "cnt_avg_ops",
              "aac": "cnt_aac_ops", "comparator": "cnt_cmp_ops"}
#: Table 5 of the paper (MNIST, T = 10 forward passes), with the numbers of RNGs its text
#: gives. ``rngs`` is the paper's wording.
PAPER_TABLE5 = (
    {"method": "H. Awano et al. [4]", "implementation": "FPGA", "rngs": "-",
     "uj_per_image": 21.09, "network": "2 linear layers (200 neurons)"},
    {"method": "A. Malhotra et al. [18]", "implementation": "RRAM", "rngs": "64",
     "uj_per_image": 9.30, "network": "2 linear layers (200 neurons)"},
    {"method": "K. Yang et al. [27]", "implementation": "Domain-wall MTJ (all-spin)",
     "rngs": "array (2 x 2)", "uj_per_image": 0.79, "network": "2 linear layers (200 neurons)"},
    {"method": "SpinBayes (paper)", "implementation": "SOT-MRAM", "rngs": "3 (per layer)",
     "uj_per_image": 0.26, "network": "LeNet-5"},
)


@dataclass(frozen=True)
class EnergyModel:
    """Per-operation energies (pJ) and the operation each is charged per (:data:`READINGS`)."""

    pj: dict = field(default_factory=lambda: dict(PAPER_TABLE4))
    per: dict = field(default_factory=lambda: {b: r[0] for b, r in READINGS.items()})
    source: str = "paper Table 4"

    def __post_init__(self):
        for what, d in (("energy", self.pj), ("reading", self.per)):
            if not isinstance(d, dict):
                raise ValueError(f"{what} table must be a dict keyed by block, not {d!r}")
            unknown = set(d) - set(BLOCKS)
            if unknown:
                raise ValueError(f"unknown {what} block(s) {sorted(unknown)}; the blocks are "
                                 f"{list(BLOCKS)}")
            missing = set(BLOCKS) - set(d)
            if missing:
                raise ValueError(f"{what} table is missing block(s) {sorted(missing)}")
        for b, v in self.pj.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"energy of {b!r} must be a finite number >= 0 pJ, not {v!r}")
        for b, r in self.per.items():
            if r not in READINGS[b]:
                raise ValueError(f"{b!r} can be charged per {list(READINGS[b])}, not {r!r}")

    def with_reading(self, **per) -> EnergyModel:
        """The same energies charged per other operations, e.g. ``with_reading(memory="mvm")``."""
        return replace(self, per={**self.per, **per})

    def to_dict(self) -> dict:
        return {"pj": dict(self.pj), "per": dict(self.per), "source": self.source}


def load_energy_model(path: str | os.PathLike) -> EnergyModel:
    """Read an energy table from JSON (``.json``) or TOML (``.toml``).

    Each key is a block of :data:`BLOCKS`; its value is the energy in pJ, or a table
    ``{"pj": 4.71, "per": "read"}``. Blocks left out keep the paper's Table 4 value and
    default reading. Unknown blocks or fields, negative / NaN / non-numeric energies and
    unknown readings raise ValueError naming the file; a missing file raises
    FileNotFoundError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"energy table {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except (ValueError, json.JSONDecodeError) as e:   # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"energy table {path}: cannot parse ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"energy table {path}: expected an object of blocks {list(BLOCKS)}")
    pj, per = dict(PAPER_TABLE4), {b: r[0] for b, r in READINGS.items()}
    for block, v in raw.items():
        if block not in BLOCKS:
            raise ValueError(f"energy table {path}: unknown block {block!r}; the blocks are "
                             f"{list(BLOCKS)}")
        if isinstance(v, dict):
            extra = set(v) - {"pj", "per"}
            if extra or "pj" not in v:
                raise ValueError(f"energy table {path}: block {block!r} takes the fields "
                                 f"'pj' (required) and 'per', not {sorted(v)}")
            pj[block] = v["pj"]
            if "per" in v:
                per[block] = v["per"]
        else:
            pj[block] = v
    try:
        return EnergyModel(pj, per, source=str(path))
    except ValueError as e:
        raise ValueError(f"energy table {path}: {e}") from None


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


def shapes_of_hw(hw) -> list[LayerShape]:
    """The layer shapes of a :class:`~spinbayes.golden.hardware.HwNetwork` (dense layers; the
    positions of a conv layer need the image size, see :func:`layer_shapes`)."""
    out = []
    for i, layer in enumerate(hw.layers):
        if layer.kind != "linear":
            raise ValueError(f"layer {i} is {layer.kind!r}: use layer_shapes(model, "
                             f"image_shape) for convolutions")
        out.append(LayerShape(f"layer{i}", "linear", layer.rows, int(layer.codes.shape[1]), 1,
                              layer.in_bits, layer.is_output, max(1, layer.out_bits)))
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


# --- energy ---------------------------------------------------------------------------------
_UNIT = {("memory", "read"): "cnt_xbar_reads", ("memory", "mvm"): "mvms",
         ("rng", "draw"): "cnt_rng_draws", ("rng", "device"): "rng_devices",
         ("averaging", "op"): "cnt_avg_ops", ("averaging", "image"): "images",
         ("aac", "read"): "cnt_aac_ops", ("comparator", "comparison"): "cnt_cmp_ops"}


def energy_of_counts(counts: list[LayerCounts], model: EnergyModel | None = None) -> dict:
    """Energy per image from analytic counts: ``{"per_layer": {layer: {block: pJ}},
    "per_block_pj": {block: pJ}, "total_pj", "total_uj", "model"}``."""
    model = model or EnergyModel()
    per_layer = {}
    for c in counts:
        per_layer[c.name] = {b: getattr(c, _UNIT[b, model.per[b]]) * model.pj[b]
                             for b in BLOCKS}
    per_block = {b: sum(v[b] for v in per_layer.values()) for b in BLOCKS}
    total = sum(per_block.values())
    return {"per_layer_pj": per_layer, "per_block_pj": per_block, "total_pj": total,
            "total_uj": total * 1e-6, "model": model.to_dict()}


def energy_of_counters(counters: dict, images: int, model: EnergyModel | None = None,
                       counts: list[LayerCounts] | None = None) -> dict:
    """Measured energy: the RTL's activity counters (summed over ``images`` images) times the
    per-operation energies; µJ per image with a breakdown per block.

    A reading that no counter counts directly (memory per mvm, rng per device, averaging per
    image) converts the counter by the exact ratio of the analytic ``counts`` (the same
    schedule, e.g. mvms / reads); ``counts`` is then required. With ``counts``, the result
    also holds the per-layer split of the measured total (each block's measured energy
    divided over the layers in the proportion of the analytic counts).
    """
    model = model or EnergyModel()
    if not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, not {images!r}")
    missing = [COUNTER_OF[b] for b in BLOCKS if COUNTER_OF[b] not in counters]
    if missing:
        raise ValueError(f"counters lack {missing}")
    tot = totals(counts) if counts else None
    per_block = {}
    for b in BLOCKS:
        measured = float(counters[COUNTER_OF[b]]) / images
        unit = _UNIT[b, model.per[b]]
        if unit != COUNTER_OF[b]:
            if tot is None:
                raise ValueError(f"{b} per {model.per[b]!r} is not an RTL counter: pass the "
                                 f"analytic counts to convert {COUNTER_OF[b]}")
            ratio = tot[unit] / tot[COUNTER_OF[b]] if tot[COUNTER_OF[b]] else 0.0
            measured *= ratio
        per_block[b] = measured * model.pj[b]
    total = sum(per_block.values())
    result = {"images": images, "per_block_pj": per_block, "total_pj": total,
              "total_uj": total * 1e-6, "model": model.to_dict(),
              "counters_per_image": {COUNTER_OF[b]: float(counters[COUNTER_OF[b]]) / images
                                     for b in BLOCKS}}
    if counts:
        share = {}
        for c in counts:
            share[c.name] = {}
            for b in BLOCKS:
                unit = _UNIT[b, model.per[b]]
                share[c.name][b] = (per_block[b] * getattr(c, unit) / tot[unit]
                                    if tot[unit] else 0.0)
        result["per_layer_pj"] = share
    return result


def table5_rows(ours: dict[str, float], rngs_ours: str) -> list[dict]:
    """The paper's Table 5 plus our rows (``{label: µJ/image}``), each with its ratio to
    the first of ours."""
    rows = [dict(r, source="paper Table 5") for r in PAPER_TABLE5]
    for label, uj in ours.items():
        rows.append({"method": label, "implementation": "this model (Table 4 energies)",
                     "rngs": rngs_ours, "uj_per_image": uj, "network": "LeNet-5",
                     "source": "computed"})
    return rows


# --- figures --------------------------------------------------------------------------------
def plot_energy_breakdown(result: dict, path, title: str) -> Path:
    """Stacked bars: energy per image of each layer, split by block (nJ)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    layers = list(result["per_layer_pj"])
    fig, ax = plt.subplots(figsize=(8.5, 4))
    bottom = np.zeros(len(layers))
    for b in BLOCKS:
        v = np.array([result["per_layer_pj"][ly][b] for ly in layers]) * 1e-3
        ax.bar(layers, v, bottom=bottom, label=f"{b} ({result['per_block_pj'][b] * 1e-3:.2f} nJ)")
        bottom += v
    ax.set_ylabel("energy per image (nJ)")
    ax.set_title(f"{title}: {result['total_uj'] * 1e3:.2f} nJ / image")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, plt, atomic_write)


def _save(fig, path, plt, atomic_write) -> Path:
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


def scaling_series(shapes_fn, *, N: int, n_way: int, T: int, R: int, input_bits: int,
                   model: EnergyModel | None = None, Ts=range(1, 21), Ns=range(2, 9),
                   bits=range(1, 9)) -> dict:
    """Energy per image (µJ, expected draws) when T, N or the input bits vary alone.
    ``shapes_fn(input_bits)`` returns the network's :class:`LayerShape` s."""
    base = shapes_fn(input_bits)

    def uj(shapes, **kw):
        a = dict(N=N, n_way=n_way, T=T, R=R)
        a.update(kw)
        return energy_of_counts(count_operations(shapes, **a), model)["total_uj"]

    Ts, Ns, bits = (sorted({int(v) for v in r} | {d}) for r, d in
                    ((Ts, T), (Ns, N), (bits, input_bits)))
    return {"T": {t: uj(base, T=t) for t in Ts},
            "N": {n: uj(base, N=n) for n in Ns if n >= n_way},
            "input_bits": {b: uj(shapes_fn(b)) for b in bits}}


def plot_scaling(series: dict[str, dict], path, defaults: dict) -> Path:
    """Three panels, energy per image against T, N and input bits, one line per network
    (``series``: {network: :func:`scaling_series` result}); ``defaults`` marks the default
    point of each axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    labels = {"T": "T (forward passes)", "N": "N (crossbars per layer)",
              "input_bits": "A_in (input bits)"}
    for ax, key in zip(axes, ("T", "N", "input_bits")):
        for name, s in series.items():
            xs = list(s[key])
            ref = s[key][defaults[key]]
            ax.plot(xs, [s[key][x] / ref for x in xs], marker="o", ms=3,
                    label=f"{name} ({ref * 1e3:.4g} nJ at the default)")
        ax.axvline(defaults[key], color="grey", ls=":", lw=1)
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set_xlabel(labels[key])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("energy / energy at the default")
    axes[0].legend(fontsize=8)
    fig.suptitle("Energy per image relative to the default point (Table 4 energies, analytic "
                 "counts, expected RNG draws); dotted: defaults")
    fig.tight_layout()
    return _save(fig, path, plt, atomic_write)
