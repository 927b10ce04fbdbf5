"""Energy per image (section 4.3.1): operation counts times per-operation energies.

:func:`energy_of_counts` charges the analytic counts (:mod:`.energy_counts`) and
:func:`energy_of_counters` the RTL's activity counters to an :class:`EnergyModel`
(:mod:`.energy_model`, where docs/ENERGY.md's readings of Table 4 are explained). This module
also builds Table 5 against the paper, the scaling series in T, N and the input bits, and
their figures; it re-exports the names of the other two modules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .energy_counts import (
    LayerCounts,
    LayerShape,
    arbiter_draws,
    count_operations,
    distinct_crossbars,
    layer_shapes,
    lenet5_shapes,
    run_counts,
    shapes_of_hw,
    totals,
)
from .energy_model import (
    BLOCKS,
    COUNTER_OF,
    PAPER_TABLE4,
    READINGS,
    EnergyModel,
    load_energy_model,
)

__all__ = ["BLOCKS", "CHARGING", "COUNTER_OF", "PAPER_TABLE4", "PAPER_TABLE5", "READINGS",
           "EnergyModel", "LayerCounts", "LayerShape", "arbiter_draws", "count_operations",
           "distinct_crossbars", "energy_of_counts", "energy_of_counters", "image_energies",
           "layer_shapes", "lenet5_shapes", "load_energy_model", "plot_energy_breakdown",
           "plot_scaling", "run_counts", "scaling_series", "shapes_of_hw", "table5_rows",
           "totals"]

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


#: The four charging modes of :func:`image_energies`.
CHARGING = ("plain", "reuse", "adaptive", "both")


def image_energies(shapes: list[LayerShape], first_choices, *, N: int, n_way: int, R: int,
                   passes=None, model: EnergyModel | None = None) -> dict[str, np.ndarray]:
    """Analytic energy (pJ, expected RNG draws) of each image under the four charging modes,
    on the same arbiter choices: ``plain`` (all T passes, today's count), ``reuse`` (all T
    passes, first-layer reuse: :func:`run_counts` with the distinct crossbars of
    ``first_choices``), ``adaptive`` (the passes the stop rule ran, ``passes`` (B,); None: all
    T, so adaptive = plain) and ``both``. ``first_choices``: the first layer's choices
    (B, T, n) of T = T_max passes. Returns {mode: (B,) float64}."""
    ch = np.asarray(first_choices)
    B, T = ch.shape[:2] if ch.ndim == 3 else (0, 0)
    t_run = np.full(B, T) if passes is None else np.asarray(passes, dtype=np.int64)
    d_all = distinct_crossbars(ch, N)
    d_run = distinct_crossbars(ch, N, t_run)
    cache: dict = {}

    def pj(t, d):
        key = (int(t), None if d is None else int(d))
        if key not in cache:
            counts = run_counts(shapes, N=N, n_way=n_way, R=R, passes=key[0], distinct=key[1])
            cache[key] = energy_of_counts(counts, model)["total_pj"]
        return cache[key]

    full = np.full(B, T)
    modes = {"plain": (full, None), "reuse": (full, d_all), "adaptive": (t_run, None),
             "both": (t_run, d_run)}
    return {m: np.array([pj(t, None if d is None else d[i]) for i, t in enumerate(ts)],
                        dtype=np.float64) for m, (ts, d) in modes.items()}


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
