"""Co-verification in shards: which images a shard runs, where the RTL's arbiters stand when
a shard starts, and one result from the shards' results.

A co-verification of K images in one simulation feeds the core image after image; each
layer's arbiter RNGs are seeded once, at programming, and advance by one step per draw (the
golden twin: :func:`~spinbayes.golden.arbiter.arbiter_choices`). A shard that starts at
image s in a simulation of its own therefore gets its RNGs seeded with the states they have
after images 0..s-1 of the whole run (:func:`program_from_image`), so its per-pass outputs,
averages, classes and arbiter trace are those of the whole run. :func:`merge_results` joins
the shards' :class:`~spinbayes.sim.coverify.CoverifyResult` s into one, checking that every
image is covered exactly once.

What differs from one simulation: each shard programs (and reads back) every cell, so the
read-back counts add up over shards; and the harness's stall generator restarts from its
seed in every shard, so with stalls the cycles of an image (``cycles``, ``cnt_cycles``)
depend on where its shard starts; every other figure does not.

No Ray here: :mod:`spinbayes.shard` runs shards on Ray actors through the workflow layer.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..firmware.compiler import Program
    from ..rtl.params import RtlParams
    from .coverify import CoverifyResult

__all__ = ["arbiter_states", "merge_results", "plan_shards", "program_from_image"]

_MASK = 0xFFFFFFFF


def plan_shards(images: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous (start, stop) ranges over images 0..``images``-1, sizes differing
    by at most one, in order; fewer when there are fewer images than shards."""
    for name, v in (("images", images), ("shards", shards)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    shards = min(shards, images)
    base, extra = divmod(images, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + base + (i < extra)
        out.append((start, stop))
        start = stop
    return out


def arbiter_states(params: RtlParams, *, layers: int, n_way: int, T: int, seed: int,
                   threshold: int, first_image: int) -> list[list[int]]:
    """[layer][device] xorshift32 state of every arbiter RNG when image ``first_image``
    starts, in a run from image 0 seeded with ``seed`` (the firmware's :func:`~spinbayes.
    golden.arbiter.device_seed`), ``T`` passes per image, RNG ``threshold``."""
    from ..golden.arbiter import Arbiter, DeviceBank, device_seed
    from ..golden.mtj import EmulatedRng

    if isinstance(first_image, bool) or not isinstance(first_image, int) or first_image < 0:
        raise ValueError(f"first_image must be a non-negative integer, not {first_image!r}")
    k = params.code_bits
    states = []
    for layer in range(layers):
        bank = DeviceBank([EmulatedRng(device_seed(seed, layer, d, k), threshold,
                                       threshold_bits=params.rng_bits) for d in range(k)])
        if k:
            # one call for all passes consumes exactly what image after image would: the
            # arbiter never reads past the pass it completes
            Arbiter(params.N, n_way, bank).choose(T * first_image)
        states.append([src.state for src in bank.sources])
    return states


def _as_data(pattern: int) -> int:
    """A 32-bit pattern as the signed value of the programming port's data field."""
    return pattern - (1 << 32) if pattern >= 1 << 31 else pattern


def program_from_image(program: Program, params: RtlParams, *, seed: int,
                       first_image: int) -> Program:
    """``program`` (compiled with ``seed``) with every arbiter RNG seeded with its state at
    the start of image ``first_image`` of a run from image 0 (:func:`arbiter_states`)."""
    from ..golden.arbiter import device_seed
    from ..rtl.regs import Reg

    if first_image == 0:
        return program
    value = {w.sel: w.data for w in program.descriptor
             if w.sel in (Reg.N_LAYERS, Reg.N_WAY, Reg.RNG_THRESHOLD)}
    missing = {Reg.N_LAYERS, Reg.N_WAY, Reg.RNG_THRESHOLD} - set(value)
    if missing:
        raise ValueError(f"the program has no {sorted(r.name for r in missing)} write")
    states = arbiter_states(params, layers=value[Reg.N_LAYERS], n_way=value[Reg.N_WAY],
                            T=program.T, seed=seed, threshold=value[Reg.RNG_THRESHOLD],
                            first_image=first_image)
    out, seen = [], 0
    for w in program.descriptor:
        if w.sel == Reg.RNG_SEED:
            if w.data != _as_data(device_seed(seed, w.c, w.a, params.code_bits)):
                raise ValueError(f"RNG_SEED write of layer {w.c}, device {w.a} does not hold "
                                 f"the device seed of seed {seed}: the program was compiled "
                                 f"with another seed or seed convention")
            w = dataclasses.replace(w, data=_as_data(states[w.c][w.a]))
            seen += 1
        out.append(w)
    if seen != value[Reg.N_LAYERS] * params.code_bits:
        raise ValueError(f"{seen} RNG_SEED writes, expected {value[Reg.N_LAYERS]} layers x "
                         f"{params.code_bits} devices")
    return dataclasses.replace(program, descriptor=out)


def merge_results(parts: list[tuple[int, CoverifyResult]]) -> CoverifyResult:
    """One result from (first image, result) of every shard: per-image arrays in image
    order, mismatches with whole-run image numbers, counters and read-back counts summed,
    accuracy and float agreement over all images, times summed over shards (``timings``
    also lists each shard's). Raises ValueError unless the shards cover images 0..K-1
    exactly once."""
    if not parts:
        raise ValueError("no shard results to merge")
    parts = sorted(parts, key=lambda p: p[0])
    expect = 0
    for start, res in parts:
        if start != expect:
            raise ValueError(f"shards do not tile the images: a shard starts at image {start}, "
                             f"expected {expect} (a gap or an overlap)")
        expect = start + res.images
    results = [r for _, r in parts]
    first = results[0]
    for r in results[1:]:
        if (r.simulator, r.stall) != (first.simulator, first.stall):
            raise ValueError("shards ran on different simulators or stall settings")
    details = [dataclasses.replace(m, image=m.image + s if m.image >= 0 else m.image)
               for s, r in parts for m in r.details]
    counters = {k: np.concatenate([r.counters[k] for r in results]) for k in first.counters}
    n = expect
    merged = type(first)(                 # a CoverifyResult (sim/coverify.py imports this module)
        images=n, mismatches=sum(r.mismatches for r in results), details=details,
        cycles=np.concatenate([r.cycles for r in results]), counters=counters,
        counter_totals={k: int(v.sum()) for k, v in counters.items()},
        per_pass=np.concatenate([r.per_pass for r in results]),
        averaged=np.concatenate([r.averaged for r in results]),
        prediction=np.concatenate([r.prediction for r in results]),
        choices=np.concatenate([r.choices for r in results], axis=1),
        vfy_errors=sum(r.vfy_errors for r in results),
        vfy_checked=sum(r.vfy_checked for r in results),
        accuracy=_weighted(results, "accuracy"),
        float_agreement=_weighted(results, "float_agreement"),
        simulator=first.simulator, stall=first.stall, timings=_timings(parts))
    return merged


def _weighted(results, name: str) -> float | None:
    vals = [getattr(r, name) for r in results]
    if any(v is None for v in vals):
        return None
    return sum(v * r.images for v, r in zip(vals, results)) / sum(r.images for r in results)


def _timings(parts) -> dict:
    """Seconds summed over shards; counts of one programming (the same in every shard)."""
    shards = [{"first_image": s, "images": r.images, **r.timings} for s, r in parts]
    out: dict = {}
    for key, value in parts[0][1].timings.items():
        if isinstance(value, (int, float)) and key.endswith("_s"):
            out[key] = float(sum(r.timings.get(key, 0.0) for _, r in parts))
        else:
            out[key] = value
    busy = out.get("images_s", 0.0) + out.get("check_s", 0.0)
    n = sum(r.images for _, r in parts)
    out["images_per_min"] = 60.0 * n / busy if busy > 0 else float("nan")
    out["shards"] = shards
    return out
