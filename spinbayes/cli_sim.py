"""``spinbayes sim``: K test images through the exported RTL under cocotb, checked in a batch.

:func:`add_parser` adds the subcommand to the main parser, :func:`main` is its handler; the
work is :func:`spinbayes.workflow_hw.coverify`. docs/COVERIFICATION.md documents the flow.
Exit code: 0 when every per-pass output, average, class and read-back cell equals the
integer reference, 1 on any mismatch, 2 on an error (bad input, missing simulator).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

__all__ = ["SIM_JSON", "SIM_MARKDOWN", "add_parser", "main", "markdown"]

SIM_JSON = "sim.json"
SIM_MARKDOWN = "sim.md"


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand to the subparsers ``sub`` of the main parser."""
    from .cli_args import add_adaptive, add_checkpoint, add_common, add_health, add_simulator
    from .config import add_config_arguments

    p = sub.add_parser("sim", help="co-verify K test images on the RTL under cocotb",
                       description="Train a digits model with the Config flags (or load "
                       "--checkpoint), fold it into the integer network, program the exported "
                       "RTL through its programming port under cocotb (Icarus or Verilator), "
                       "stream K test images with random stalls and compare every per-pass "
                       "output, average and class with the integer reference on the RTL's "
                       "own arbiter trace. Writes OUT/sim.json and OUT/sim.md; exit code 1 "
                       "on any mismatch.")
    add_checkpoint(p, required=False)
    p.add_argument("--images", type=int, default=10, help="test images to run (default: 10)")
    add_simulator(p, "icarus")
    p.add_argument("--stall", type=float, default=0.1,
                   help="probability of a stall cycle on the input and result streams "
                        "(default: 0.1)")
    p.add_argument("--waves", action="store_true", help="dump waveforms (FST/VCD)")
    p.add_argument("--driver-images", type=int, default=0,
                   help="also run this many images with the per-cycle CoreDriver")
    p.add_argument("--workers", type=int, default=1,
                   help="W > 1: split the images into shards over W Ray actors (local Ray "
                   "on 127.0.0.1 unless --address; docs/SCALE.md)")
    p.add_argument("--shards", type=int, default=None,
                   help="shards of the sharded run (default: one per worker)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to run the shards on (default: $RAY_ADDRESS when "
                   "sharding, else a local Ray)")
    add_health(p)
    add_adaptive(p)
    p.add_argument("--reuse", action="store_true",
                   help="first-layer reuse: each crossbar's first layer computed once per "
                   "image and kept (a design with the cache; docs/HARDWARE.md)")
    add_common(p, "runs/sim")
    add_config_arguments(p)
    return p


def markdown(summary: dict) -> str:
    """The report of one run (sim.md)."""
    c, t = summary["cycles"], summary["timings"]
    lines = [
        f"### Co-verification: {summary['images']} images on {summary['simulator']} "
        f"(stall {summary['stall']})", "",
        "| figure | value |", "|---|---:|",
        f"| mismatches (0 is the only pass) | {summary['mismatches']} |",
        f"| crossbar cells read back wrong | {summary['vfy_errors']} of "
        f"{summary['vfy_checked']} |",
        f"| hw accuracy (%) | {_f(summary['accuracy'])} |",
        f"| class agreement with float model (%) | {_f(summary['float_agreement'])} |",
        f"| cycles per image min / median / max | {c['min']} / {c['median']:.0f} / "
        f"{c['max']} |",
        f"| images/min (simulation + check) | {t['images_per_min']:.1f} |",
        f"| programming (s, cycles, writes) | {t['programming_s']:.1f}, "
        f"{t['programming_cycles']}, {t['writes']} |",
        f"| export + build + start (s) | {t['export_s'] + t['build_and_start_s']:.1f} |",
    ]
    if summary.get("layer_vectors") is not None:
        lines.append(f"| hidden-layer output vectors compared (layer trace) | "
                     f"{summary['layer_vectors']} |")
    if summary.get("passes") and summary.get("adaptive", {}).get("rule", "off") != "off":
        p, a = summary["passes"], summary["adaptive"]
        lines.append(f"| passes per image mean / min / max (adaptive {a['rule']}, T_min "
                     f"{a['t_min']}) | {p['mean']:.2f} / {p['min']} / {p['max']} |")
    if summary.get("firmware"):
        lines.append(f"| firmware image (written, checked, loaded from disk) | "
                     f"{summary['firmware']}/ |")
    lines += [
        "", "| counter | total | per image |", "|---|---:|---:|",
    ]
    for k, v in summary["counter_totals"].items():
        lines.append(f"| {k} | {v} | {summary['counters_per_image_mean'][k]:.1f} |")
    d = summary.get("driver")
    if d:
        lines += ["", f"CoreDriver over CocotbBus: {d['images']} image(s), {d['mismatches']} "
                  f"mismatches, {d['images_per_min']:.1f} images/min"]
    for m in summary["mismatch_details"][:20]:
        lines.append(f"- image {m['image']} {m['output']} {m['where']}: RTL {m['rtl']}, "
                     f"reference {m['reference']}")
    return "\n".join(lines) + "\n"


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(args) -> int:
    from . import workflow as wf
    from . import workflow_hw as wh
    from .cli_args import adaptive_settings, config_changes, health_cutoffs
    from .config import Config, config_from_args
    from .firmware.alarms import CoreAlarmError
    from .golden.contract import atomic_write
    from .sim.runner import SimulatorMissing

    try:
        # every flag is checked before anything is trained, loaded or written
        if args.images < 1:
            raise ValueError(f"--images must be at least 1, not {args.images}")
        if not 0.0 <= args.stall < 1.0:
            raise ValueError(f"--stall must be a probability in [0, 1), not {args.stall}")
        if not 0 <= args.driver_images <= args.images:
            raise ValueError(f"--driver-images must lie in 0..--images ({args.images}), "
                             f"not {args.driver_images}")
        sharded = args.workers != 1 or args.address is not None or args.shards is not None
        if args.workers < 1 or (args.shards is not None and args.shards < 1):
            raise ValueError(f"--workers and --shards must be positive integers, not "
                             f"{args.workers} and {args.shards}")
        if sharded and (args.waves or args.driver_images):
            raise ValueError("--waves and --driver-images run in one simulation: not with "
                             "--workers, --shards or --address")
        if sharded and args.reuse:
            raise ValueError("--reuse runs in one simulation: not with --workers, --shards "
                             "or --address")
        health = health_cutoffs(args.health_alpha_bits)
        adaptive_settings(args.adaptive, args.t_min, args.confidence_threshold)
        if sharded and args.adaptive != "off":
            raise ValueError("--adaptive runs in one simulation from image 0 (an image's "
                             "arbiter position depends on the passes before it): not with "
                             "--workers, --shards or --address")
        sim, why = wh.choose_simulator(args.simulator, prefer="icarus")
        out = Path(args.out)
        progress = not args.quiet
        wf.set_threads(args.threads)
        if args.checkpoint:
            from .golden.checkpoint import read_manifest

            changes = config_changes(args)
            T = Config.from_dict({**read_manifest(args.checkpoint)["config"], **changes}).T
            adaptive_settings(args.adaptive, args.t_min, args.confidence_threshold, T)
            trained = wf.load(args.checkpoint, changes)
        else:
            cfg = config_from_args(args)
            adaptive_settings(args.adaptive, args.t_min, args.confidence_threshold, cfg.T)
            trained = wf.train(cfg, out, progress=progress)
        cfg = trained.cfg
        mapped = wf.map_trained(trained)
        params = wh.hw_params(mapped, cfg, args.reuse)
        from .golden.geometry import geometry_of

        layers = ", ".join(f"{g.kind} {g.rows}x{g.outputs}" + (
            f" at {g.positions} positions" if g.positions > 1 else "")
            for g in geometry_of(mapped.hw(cfg.n_way)))
        print(f"co-verifying {args.images} images on {sim} ({why}): N={cfg.N}, "
              f"n={cfg.n_way}, T={cfg.T}, stall {args.stall}; layers (rows x outputs): {layers}")
        t0 = time.perf_counter()
        if sharded:
            from .shard import coverify_sharded

            res, params, info = coverify_sharded(
                trained, mapped, images=args.images, simulator=sim, workers=args.workers,
                stall=args.stall, shards=args.shards, address=args.address,
                threads=args.threads or 1, progress=progress, health=health)
            print(f"{len(info['shards'])} shards on {info['workers']} Ray actors "
                  f"({len(info['hosts'])} processes), {info['actors_died']} actors died and "
                  f"were replaced, {info['wall_s']:.1f} s")
        else:
            res, params = wh.coverify(trained, mapped, images=args.images, simulator=sim,
                                      stall=args.stall, waves=args.waves,
                                      driver_images=args.driver_images, progress=progress,
                                      firmware=out / wh.FIRMWARE_DIR, health=health,
                                      adaptive=adaptive_settings(
                                          args.adaptive, args.t_min,
                                          args.confidence_threshold, cfg.T),
                                      reuse=args.reuse)
    except (SimulatorMissing, ValueError, OSError) as e:
        print(f"spinbayes sim: error: {e}", file=sys.stderr)
        return 2
    except CoreAlarmError as e:    # an RNG health alarm or a stuck arbiter stopped an image
        print(f"spinbayes sim: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except AssertionError as e:    # the simulation itself failed (timeout, crash)
        print(f"spinbayes sim: error: the simulation failed: {e}", file=sys.stderr)
        return 2
    summary = res.summary()
    summary.update(config=cfg.to_dict(), params=params.describe(), simulator_choice=why,
                   firmware=None if sharded else wh.FIRMWARE_DIR,
                   health_cutoffs=asdict(health), health_alpha_bits=args.health_alpha_bits,
                   adaptive={"rule": args.adaptive, "t_min": args.t_min,
                             "confidence_threshold": args.confidence_threshold},
                   reuse=args.reuse,
                   wall_s=time.perf_counter() - t0, provenance=trained.provenance,
                   cycles_per_image=np.asarray(res.cycles).tolist())
    text = markdown(summary)
    print()
    print(text)
    atomic_write(out / SIM_MARKDOWN, text)
    atomic_write(out / SIM_JSON, json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / SIM_MARKDOWN} and {out / SIM_JSON}")
    ok = res.passed and (res.driver is None or res.driver["mismatches"] == 0)
    print("PASS: 0 mismatches" if ok else f"FAIL: {res.mismatches} mismatches, "
          f"{res.vfy_errors} cells read back wrong")
    return 0 if ok else 1
