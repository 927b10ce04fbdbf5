"""``spinbayes sim``: K test images through the exported RTL under cocotb, checked in a batch.

Registered by :func:`spinbayes.cli.build_parser` through :func:`add_parser`; dispatched by
:func:`spinbayes.cli.main` to :func:`main`. docs/COVERIFICATION.md documents the flow.
Exit code: 0 when every per-pass output, average, class and read-back cell equals the
integer reference, 1 on any mismatch, 2 on an error (bad input, missing simulator).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["SIM_JSON", "SIM_MARKDOWN", "add_parser", "main", "markdown"]

SIM_JSON = "sim.json"
SIM_MARKDOWN = "sim.md"


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand to the subparsers ``sub`` of the main parser."""
    from .config import add_config_arguments

    p = sub.add_parser("sim", help="co-verify K test images on the RTL under cocotb",
                       description="Train a digits model with the Config flags (or load "
                       "--checkpoint), fold it into the integer network, program the exported "
                       "RTL through its programming port under cocotb (Icarus or Verilator), "
                       "stream K test images with random stalls and compare every per-pass "
                       "output, average and class with the integer reference on the RTL's "
                       "own arbiter trace. Writes OUT/sim.json and OUT/sim.md; exit code 1 "
                       "on any mismatch.")
    p.add_argument("--checkpoint", help="checkpoint directory (from train); default: train")
    p.add_argument("--images", type=int, default=10, help="test images to run (default: 10)")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default=None,
                   help="cocotb simulator (default: $SPINBAYES_SIM, else icarus)")
    p.add_argument("--stall", type=float, default=0.1,
                   help="probability of a stall cycle on the input and result streams "
                        "(default: 0.1)")
    p.add_argument("--waves", action="store_true", help="dump waveforms (FST/VCD)")
    p.add_argument("--driver-images", type=int, default=0,
                   help="also run this many images with the per-cycle CoreDriver")
    p.add_argument("--out", default="runs/sim", help="output directory (default: runs/sim)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
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
    import torch

    from .golden.approximation import approximate
    from .golden.checkpoint import atomic_write
    from .golden.evaluate import build_spinbayes
    from .golden.hardware import fold_network
    from .sim.coverify import params_for, run_images
    from .sim.runner import SimulatorMissing, default_simulator

    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.images < 1:
            raise ValueError(f"--images must be at least 1, not {args.images}")
        out = Path(args.out)
        progress = not args.quiet
        from .cli import model_and_data

        model, data, cfg = model_and_data(args, out, progress)
        if args.images > len(data.x_test):
            raise ValueError(f"--images {args.images}: the test set has {len(data.x_test)}")
        images = approximate(model, cfg.N, cfg.Q, seed=cfg.seed)
        net = build_spinbayes(images, model, data.x_train, cfg.n_way, cfg.recal_batches,
                              seed=cfg.seed)
        hw = fold_network(net, images)
        params = params_for(hw, cfg.T)
        sim = args.simulator or default_simulator()
        x, y = data.x_test[:args.images], data.y_test[:args.images]
        print(f"co-verifying {len(x)} images on {sim}: N={cfg.N}, n={cfg.n_way}, T={cfg.T}, "
              f"stall {args.stall}, layers {[tuple(lay.codes.shape[1:3]) for lay in hw.layers]}")
        t0 = time.perf_counter()
        res = run_images(hw, x, params=params, T=cfg.T, seed=cfg.seed, simulator=sim,
                         waves=args.waves, stall=args.stall, progress=progress,
                         float_net=net, labels=y.numpy(), driver_images=args.driver_images)
    except SimulatorMissing as e:
        print(f"spinbayes sim: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"spinbayes sim: error: {e}", file=sys.stderr)
        return 2
    summary = res.summary()
    summary.update(config=cfg.to_dict(), params=params.describe(),
                   wall_s=time.perf_counter() - t0,
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
