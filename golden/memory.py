"""Memory overhead of SpinBayes against the BNN baselines (section 4.3.2, Fig. 7).

Parameters are counted from real modules (:func:`count_parameters`) in three groups:

* ``weights``: the crossbar weights, i.e. the ``weight`` of every Conv/Linear layer, or
  ``weight_mu`` of this project's Bayesian layers (their ``weight_rho`` is the posterior's
  sigma, which only the BBB row stores);
* ``other``: every other learnable parameter (Conv/Linear biases, BatchNorm gamma/beta);
* ``bn``: the BatchNorm running mean and variance (``num_batches_tracked`` is a training
  counter and not stored).

``weights + other`` is the usual parameter total. Storage, in bits, with W = weights,
R = other + bn (the non-crossbar values), f = ``float_bits``, M = ``ensemble``:

* SpinBayes: N*Q*W + f*R (R once, not per crossbar: one re-calibrated BatchNorm);
* MC-Dropout, MC-DropConnect: f*(W + R);
* BBB: 2f*W + f*R (mu and sigma per weight; BatchNorm deterministic, as in BayesNet);
* Deep Ensemble: M*f*(W + R) (M whole networks).

f = 32 is the paper's "full precision, one cell per bit"; 1 MB = 10^6 bytes = 8e6 bits.
Ratios of bits per weight are exact (N=5, Q=4: 1.6x against MC, 8x against the 5-ensemble,
3.2x against BBB); whole-model ratios are a little lower, as R costs the same everywhere.

The paper's 6.39x against BBB needs about 128 bits per BBB weight, not 64: see
:func:`bbb_candidates` and docs/MEMORY.md (a conjecture).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from .checkpoint import atomic_write
from .layers import bayes_layers

__all__ = ["METHODS", "MemoryRow", "bbb_candidates", "count_parameters", "memory_markdown",
           "memory_table", "paper_models", "plot_memory", "rows_as_dicts"]

METHODS = ("SpinBayes", "MC-Dropout", "MC-DropConnect", "BBB", "Deep Ensemble")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Crossbar weights, other parameters and BatchNorm statistics of ``module``.

    Works on meta tensors (only ``numel`` is read). Shared parameters count once.

    Returns
    -------
    dict
        ``weights`` (Conv/Linear weights, or ``weight_mu`` of Bayesian layers), ``other``
        (biases, BatchNorm affine and any other parameter) and ``bn`` (running mean and
        variance), as ints.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {type(module).__name__}")
    counts = dict(weights=0, other=0, bn=0)
    bayes = {id(m) for m in bayes_layers(module)}
    seen: set[int] = set()
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if id(m) in bayes:
                if name == "weight_mu":
                    counts["weights"] += p.numel()
                elif name != "weight_rho":
                    counts["other"] += p.numel()
            elif name == "weight" and isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                counts["weights"] += p.numel()
            else:
                counts["other"] += p.numel()
        if isinstance(m, _BN) and m.track_running_stats:
            counts["bn"] += m.running_mean.numel() + m.running_var.numel()
    return counts


def _check_int(name: str, value, minimum: int, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{why}, not {value!r}")


@dataclass(frozen=True)
class MemoryRow:
    """One method on one topology; ``asdict(row)`` is JSON-serialisable."""

    topology: str
    method: str
    weights: int  #: crossbar weights W
    non_weights: int  #: other + bn, stored at float_bits per network copy
    bits_per_weight: int
    copies: int  #: network copies holding the non-crossbar values
    size_mb: float  #: 1 MB = 1e6 bytes
    ratio: float  #: size_mb / SpinBayes size_mb on the same topology
    bits_ratio: float  #: bits_per_weight / SpinBayes bits_per_weight


def _method_bits(N: int, Q: int, ensemble: int, f: int) -> dict[str, tuple[int, int]]:
    return {"SpinBayes": (N * Q, 1), "MC-Dropout": (f, 1), "MC-DropConnect": (f, 1),
            "BBB": (2 * f, 1), "Deep Ensemble": (ensemble * f, ensemble)}


def memory_table(models: dict[str, nn.Module], N: int = 5, Q: int = 4, ensemble: int = 5,
                 float_bits: int = 32) -> list[MemoryRow]:
    """Bits per weight and model size of every method in :data:`METHODS` per topology.

    Parameters
    ----------
    models : dict of str to nn.Module
        Topologies by name (meta-device modules are fine).
    N : int
        Crossbars (posterior samples) per layer of SpinBayes.
    Q : int
        Bits per quantized weight (eq. 3 needs a sign bit: Q >= 2).
    ensemble : int
        Members of the Deep Ensemble.
    float_bits : int
        Bits of a full-precision value (the paper: 32, one cell per bit).

    Returns
    -------
    list of MemoryRow
        ``len(models) * len(METHODS)`` rows, topologies in the order given.
    """
    _check_int("N", N, 1)
    _check_int("Q", Q, 2, " (eq. 3 needs a sign bit)")
    _check_int("ensemble", ensemble, 1)
    _check_int("float_bits", float_bits, 1)
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict of name -> nn.Module")
    bits = _method_bits(N, Q, ensemble, float_bits)
    rows = []
    for topology, module in models.items():
        c = count_parameters(module)
        w, r = c["weights"], c["other"] + c["bn"]
        if w == 0:
            raise ValueError(f"topology {topology!r} has no Conv/Linear weights")
        sizes = {m: (b * w + k * float_bits * r) / 8e6 for m, (b, k) in bits.items()}
        sb_bits, sb_size = bits["SpinBayes"][0], sizes["SpinBayes"]
        rows += [MemoryRow(topology, m, w, r, b, k, sizes[m], sizes[m] / sb_size, b / sb_bits)
                 for m, (b, k) in bits.items()]
    return rows


def bbb_candidates(models: dict[str, nn.Module], N: int = 5, Q: int = 4,
                   float_bits: int = 32) -> list[dict]:
    """Storage assumptions tried for the paper's 6.39x against BBB, with the ratio each gives.

    Each candidate charges BBB ``k`` full-precision values per crossbar weight and one per
    non-crossbar value; the ratio is BBB size / SpinBayes size per topology (whole model)
    and per weight. Returns JSON-serialisable dicts: ``assumption``, ``bits_per_weight``,
    ``per_weight`` and ``per_topology`` (name -> ratio).
    """
    rows = {(r.topology, r.method): r for r in memory_table(models, N, Q, 5, float_bits)}
    tried = [(2, "mu and sigma per weight, float32 (Blundell et al.)"),
             (4, "four float32 per weight: mu, rho and the per-weight prior mu and sigma "
                 "(bayesian-torch buffers, eps left out), or mu and sigma as float64"),
             (5, "all five per-weight tensors of a bayesian-torch layer: mu, rho, eps, "
                 "prior mu, prior sigma")]
    out = []
    for k, text in tried:
        ratios = {}
        for name in models:
            sb = rows[(name, "SpinBayes")]
            bbb = k * float_bits * sb.weights + float_bits * sb.non_weights
            ratios[name] = bbb / 8e6 / sb.size_mb
        out.append(dict(assumption=text, bits_per_weight=k * float_bits,
                        per_weight=k * float_bits / (N * Q), per_topology=ratios))
    return out


def paper_models(device: str = "meta") -> dict[str, nn.Module]:
    """This project's MLP and LeNet-5 plus the Table 1 and Fig. 7 topologies.

    The MLP (digits, 64-64-10) and LeNet-5 are built on the CPU (they are small); the zoo
    topologies on ``device``.
    """
    from spinbayes.config import Config

    from . import zoo
    from .networks import build_model

    return {
        "MLP (digits)": build_model(Config(), (1, 8, 8), 10),
        "LeNet-5 (MNIST)": build_model(Config(topology="lenet5"), (1, 28, 28), 10),
        "VGG-Small (CIFAR-10)": zoo.build("vgg_small", device, num_classes=10),
        "MobileNetV2 (CIFAR-10)": zoo.build("mobilenet_v2", device, num_classes=10),
        "ResNet-18 (CIFAR-100)": zoo.build("resnet18", device, num_classes=100, stem="cifar"),
        "ResNet-34 (CIFAR-10)": zoo.build("resnet34", device, num_classes=10, stem="cifar"),
        "MobileNetV2 (ImageNet)": zoo.build("mobilenet_v2", device),
        "ResNet-18 (ImageNet)": zoo.build("resnet18", device),
        "ResNet-34 (ImageNet)": zoo.build("resnet34", device),
        "VGG-11 (ImageNet)": zoo.build("vgg11", device),
        "VGG-16 (ImageNet)": zoo.build("vgg16", device),
    }


def _check_rows(rows) -> dict[str, dict[str, MemoryRow]]:
    if not rows or not all(isinstance(r, MemoryRow) for r in rows):
        raise ValueError("rows must be a non-empty list of MemoryRow (from memory_table)")
    table: dict[str, dict[str, MemoryRow]] = {}
    for r in rows:
        table.setdefault(r.topology, {})[r.method] = r
    return table


def memory_markdown(rows: list[MemoryRow]) -> str:
    """A Markdown table: one line per topology, MB and (ratio to SpinBayes) per method."""
    table = _check_rows(rows)
    methods = [m for m in METHODS if any(m in t for t in table.values())]
    first = next(iter(table.values()))
    bits = " / ".join(f"{first[m].bits_per_weight}" for m in methods)
    lines = [f"Bits per crossbar weight ({', '.join(methods)}): {bits}. "
             "Size in MB (1 MB = 10^6 bytes); in brackets: size / SpinBayes size.", "",
             "| topology | crossbar weights | other + BN | " + " | ".join(methods) + " |",
             "|---|---:|---:|" + "---:|" * len(methods)]
    for name, by in table.items():
        r0 = next(iter(by.values()))
        cells = [f"{by[m].size_mb:.4g} ({by[m].ratio:.2f}x)" if m in by else "-"
                 for m in methods]
        lines.append(f"| {name} | {r0.weights:,} | {r0.non_weights:,} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_memory(rows: list[MemoryRow], path: str | os.PathLike) -> Path:
    """Grouped bars of model size (MB, log scale) per topology and method, like Fig. 7.

    MC-Dropout and MC-DropConnect have the same size and share one bar, as in Fig. 7.
    The PNG is written atomically (temporary file, then ``os.replace``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = _check_rows(rows)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, not {str(path)!r}")
    bars = [("SpinBayes", "SpinBayes (proposed)"), ("MC-Dropout", "MC-Dropout & MC-DropConnect"),
            ("BBB", "BB-BackProp"), ("Deep Ensemble", "Deep Ensemble")]
    bars = [(m, label) for m, label in bars if any(m in t for t in table.values())]
    names = list(table)
    fig = Figure(figsize=(max(6.0, 0.9 * len(names) + 2), 4.2), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(bars)
    for j, (method, label) in enumerate(bars):
        xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(names))]
        ys = [table[n][method].size_mb if method in table[n] else math.nan for n in names]
        ax.bar(xs, ys, width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Model size (MB, 1 MB = 10^6 bytes)")
    ax.set_title("Model size per topology and method (cf. paper Fig. 7)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(buf := io.BytesIO(), format="png")
    atomic_write(path, buf.getvalue())
    return path


def rows_as_dicts(rows: list[MemoryRow]) -> list[dict]:
    """``asdict`` of every row (for JSON)."""
    _check_rows(rows)
    return [asdict(r) for r in rows]
