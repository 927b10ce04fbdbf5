"""The fault campaign's RTL sample: a few of its points checked on the RTL, bit for bit.

:func:`sample_points` picks the points (one per fault kind at its highest value, then every
kind together at its middle non-zero value, then the kinds' other non-zero values from the
highest down; all at the campaign's first seed). :func:`run_rtl_points` runs each on one
simulator build through ``run_images(..., fault_map=)`` (sim/faults.py): the RTL's outputs
against ``faulted_network``, its arbiter choices against ``fault_choices``, and read-back
verify's count against the map's faulty cells. The health tests' cutoffs are raised for
these runs (:data:`RELAXED`) since biased devices would otherwise stop the image; a map with
stuck RNG devices runs at the default cutoffs instead (a device stuck for 255 draws fails
even the raised RCT): it passes when the images run through bit for bit (fewer than 21 draws
of a stuck device), or when the core's alarm stops an image and names a stuck device. A map
the design refuses (worst-case sums beyond its bound, writes beyond one write-list chunk) is
reported as refused with the reason. :func:`markdown_section` is the report's table.
"""

from __future__ import annotations

import os
import time

import numpy as np

__all__ = ["RELAXED", "default_rtl_points", "markdown_section", "run_rtl_points",
           "sample_points"]


def _relaxed():
    from .golden.health import Cutoffs

    # the RCT at its largest cutoff, the APT and the bias monitor off
    return Cutoffs(rct=255, apt=1025, bias_low=0, bias_high=4096)


RELAXED = _relaxed()


def default_rtl_points(sweep: dict) -> int:
    """One point per swept kind, plus one with every kind together when there are several."""
    return len(sweep) + (len(sweep) > 1)


def sample_points(sweep: dict, seed: int, k: int) -> list[dict]:
    """The first ``k`` of the candidate points (module docstring); each {"name", "faults":
    {kind: value}, "seed"}."""
    nonzero = {kind: sorted({v for v in values if v > 0}, reverse=True)
               for kind, values in sweep.items()}
    nonzero = {kind: v for kind, v in nonzero.items() if v}
    cands = [{"name": kind, "faults": {kind: v[0]}} for kind, v in nonzero.items()]
    if len(nonzero) > 1:
        cands.append({"name": "all kinds", "faults": {kind: v[len(v) // 2]
                                                       for kind, v in nonzero.items()}})
    cands += [{"name": kind, "faults": {kind: x}} for kind, v in nonzero.items() for x in v[1:]]
    return [{**c, "seed": seed} for c in cands[:k]]


def _build_mtime(build_dir: str) -> float:
    """Newest modification time of the build's products (logs, locks, command files and run
    directories are rewritten by every run)."""
    times = [os.path.getmtime(os.path.join(build_dir, f)) for f in os.listdir(build_dir)
             if os.path.isfile(os.path.join(build_dir, f))
             and not f.endswith((".log", ".lock", ".xml", ".f"))]
    return max(times, default=0.0)


def _alarm_row(err, stuck: np.ndarray) -> dict:
    """An image stopped by the core's alarm: a pass only if the map has stuck RNG devices and
    an alarm names one of them."""
    named = []
    for a in err.alarms:
        devs = a.device if isinstance(a.device, tuple) else (a.device,)
        named += [(a.layer, d) for d in devs if d is not None]
    hit = any(stuck[layer, d] for layer, d in named
              if layer < stuck.shape[0] and d < stuck.shape[1])
    return {"status": "alarm" if hit else "fail", "mismatches": 0 if hit else 1,
            "alarm": str(err), "alarm_image": err.image, "alarm_cycles": err.cycles,
            "why": "" if hit else f"the core's alarm names no stuck RNG device: {err}"}


def _run_point(pt, hw, x, params, T, n_way, spec, simulator, codes, Q) -> dict:
    from .firmware.alarms import CoreAlarmError
    from .golden.faults import ArbiterStuck, build_fault_map, fault_choices
    from .sim.coverify import run_images

    fmap = build_fault_map(codes, Q, spec.fault_spec_of(pt["faults"], pt["seed"]))
    w = 2 ** fmap.threshold_bits
    stuck = np.isin(fmap.rng_threshold, (0, w))
    faulty = int(sum((lv != t).sum() for lv, t in zip(fmap.levels, fmap.targets)))
    row = {**pt, "images": len(x), "simulator": simulator, "faulty_cells": faulty,
           "rng_stuck_devices": int(stuck.sum()),
           "health": "default cutoffs" if stuck.any() else "raised (RCT 255, APT and bias off)"}
    t0 = time.perf_counter()
    try:
        res = run_images(hw, x, params=params, T=T, seed=pt["seed"], simulator=simulator,
                         progress=False, fault_map=fmap, health=None if stuck.any() else RELAXED)
    except CoreAlarmError as e:
        row.update(_alarm_row(e, stuck))
    except ValueError as e:                       # sim/faults.py and run_images refuse maps
        row.update(status="refused", reason=str(e), mismatches=None)
    else:
        try:
            want = fault_choices(fmap, len(x), T, n_way, seed=pt["seed"]).numpy()
            choice_bad = int((res.choices != want).sum())
        except ArbiterStuck as e:
            choice_bad, row["reference_hung"] = int(res.choices.size), str(e)
        row.update(mismatches=res.mismatches + choice_bad, output_mismatches=res.mismatches,
                   choice_mismatches=choice_bad, verify_reported=res.vfy_errors,
                   details=[str(d) for d in res.details[:5]],
                   build_dir=res.timings["build_dir"],
                   build_mtime=_build_mtime(res.timings["build_dir"]))
        why = [f"{row['mismatches']} mismatches"] if row["mismatches"] else []
        if res.vfy_errors != faulty:
            why.append(f"read-back verify reported {res.vfy_errors} cells, the map has "
                       f"{faulty} faulty cells")
        row["status"] = "fail" if why else "pass"
        row["why"] = "; ".join(why + row["details"])
    row["seconds"] = time.perf_counter() - t0
    return row


def run_rtl_points(spec, trained, mapped, n_way: int, simulator: str, why: str, *,
                   progress: bool = True) -> dict:
    """The RTL sample of ``spec`` on ``mapped`` (module docstring); the report's "rtl"."""
    from .golden.progress import progress as progress_bar
    from .sim.coverify import params_for

    cfg = trained.cfg
    hw = mapped.hw(n_way)
    params = params_for(hw, cfg.T)
    x = trained.data.x_test[:spec.rtl_images]
    codes = [layer.codes for layer in hw.layers]
    k = default_rtl_points(spec.sweep) if spec.rtl_points is None else spec.rtl_points
    points = sample_points(spec.sweep, spec.seeds[0], k)
    t0 = time.time()
    rows = [_run_point(pt, hw, x, params, cfg.T, n_way, spec, simulator, codes, cfg.Q)
            for pt in progress_bar(points, desc=f"RTL ({simulator})", unit="point",
                                   enabled=progress)]
    ran = [r for r in rows if "build_dir" in r]
    dirs = sorted({r["build_dir"] for r in ran})
    build = {"dirs": dirs, "runs": len(ran),
             "reused": len(dirs) == 1 and len({r["build_mtime"] for r in ran}) == 1,
             "built_in_this_run": bool(ran) and ran[0]["build_mtime"] >= t0}
    return {"simulator": simulator, "why": why, "images": len(x), "points": rows,
            "seconds": time.time() - t0,
            "build": build, "failed": sum(r["status"] == "fail" for r in rows),
            "refused": sum(r["status"] == "refused" for r in rows)}


def _faults_text(faults: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in faults.items())


def markdown_section(rtl: dict) -> list[str]:
    """The report's lines on the RTL sample."""
    lines = ["## RTL sample points", ""]
    if rtl.get("skipped"):
        return [*lines, f"Not run: {rtl['skipped']}.", ""]
    b = rtl["build"]
    built = "built in this run" if b["built_in_this_run"] else "cached from an earlier run"
    build = (f"{len(b['dirs'])} build directory for the {b['runs']} points that ran to the "
             f"end ({built}; {'reused, not rewritten' if b['reused'] else 'NOT reused'})"
             if b["runs"] else "no point ran to the end")
    lines += [f"{len(rtl['points'])} points on {rtl['simulator']} ({rtl['why']}), "
              f"{rtl['images']} test images each, checked bit for bit against the faulted "
              "integer reference (per-pass outputs, averages, classes) and the emulated "
              "arbiters' choices under the map; verify: cells read-back verify reported / the "
              "map's faulty cells. Health cutoffs raised (RCT 255, APT and bias monitor off) "
              "except for maps with stuck RNG devices, which run at the default cutoffs (status "
              "alarm: the core's health alarm stopped an image and named a stuck device). "
              f"Build: {build}. "
              f"Failed: {rtl['failed']}; refused: {rtl['refused']}. RTL sample time: "
              f"{rtl['seconds']:.0f} s.", "",
              "| point | faults | seed | status | mismatches | verify | RNG stuck | s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rtl["points"]:
        verify = (f"{r['verify_reported']} / {r['faulty_cells']}" if "verify_reported" in r
                  else f"— / {r['faulty_cells']}")
        mism = "—" if r["mismatches"] is None else str(r["mismatches"])
        lines.append(f"| {r['name']} | {_faults_text(r['faults'])} | {r['seed']} | "
                     f"{r['status']} | {mism} | {verify} | {r['rng_stuck_devices']} | "
                     f"{r['seconds']:.1f} |")
    notes = [f"* {r['name']} ({r['status']}): {r.get('reason') or r.get('alarm')}"
             for r in rtl["points"] if r["status"] in ("refused", "alarm")]
    notes += [f"* {r['name']} (fail): {r['why']}" for r in rtl["points"]
              if r["status"] == "fail"]
    return lines + (["", *notes] if notes else []) + [""]
