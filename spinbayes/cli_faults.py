"""``spinbayes faults [SPEC.toml]``: the digits MLP under device faults (docs/RELIABILITY.md).

The work is :mod:`spinbayes.fault_campaign` (spec, sweep, report) on the fault maps of
:mod:`spinbayes.golden.faults`; this module parses the command line, trains (or loads
``--checkpoint``) and maps the network through the workflow layer, and writes the report.
:func:`add_parser` adds the subcommand (handler :func:`main`, exit 0, or 2 with a message on
a clear error such as a bad spec, 1 when an RTL sample point fails).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "main"]


def add_parser(sub, eval_fields) -> argparse.ArgumentParser:
    """Add ``faults`` to the subparsers ``sub`` of the main parser; returns its parser.
    ``eval_fields``: the Config fields a spec may change on a loaded checkpoint."""
    from .cli_args import add_checkpoint, add_common, add_simulator

    p = sub.add_parser(
        "faults", help="fault campaign: stuck MTJs, write failures, resistance variation and "
        "RNG faults swept over seeds on the integer reference",
        description="Train (or load --checkpoint) the network, map it onto crossbars, then "
        "for every fault kind, value and seed of the spec build a seeded fault map (the "
        "levels each cell reads back after program-and-verify, and the RNG devices' "
        "thresholds), run the integer reference under it on the test, OoD and calibration "
        "sets, and report error, R_cc, R_iu, UA, OoD detection, in-distribution rejection, "
        "AUROC, what read-back verify caught and its retries, and the RNG health tests' "
        "alarms. A sample of the points (--rtl-points) is then run on the RTL (one "
        "simulator build, Verilator preferred) and checked bit for bit against the faulted "
        "reference. Writes OUT/faults.json, OUT/faults.md and OUT/faults_<kind>.png. Spec "
        "format: examples/faults_digits.toml; without a spec the defaults of "
        "spinbayes.fault_campaign.DEFAULT_SWEEP run.")
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.toml",
                   help="campaign spec (default: the built-in defaults)")
    p.add_argument("--rtl-points", type=int, default=None, metavar="K",
                   help="points checked on the RTL (default: the spec's campaign.rtl_points, "
                   "else one per fault kind at its highest value and one with all kinds "
                   "together)")
    p.add_argument("--rtl-images", type=int, default=None, metavar="B",
                   help="test images per RTL point (default: campaign.rtl_images, else 10)")
    p.add_argument("--no-rtl", action="store_true", help="check no point on the RTL")
    add_simulator(p, "Verilator when installed, else Icarus")
    add_checkpoint(p, required=False)
    add_common(p, "runs/faults")
    p.set_defaults(func=main, eval_fields=frozenset(eval_fields))
    return p


def main(args) -> int:
    """Run ``spinbayes faults``; returns the exit status."""
    from . import workflow as wf
    from .config import Config
    from .fault_campaign import (
        CampaignSpec,
        check_config,
        load_spec,
        run_campaign,
        write_report,
    )

    try:
        spec = _rtl_options(load_spec(args.spec) if args.spec else CampaignSpec(), args)
        wf.set_threads(args.threads)
        progress = not args.quiet
        if args.checkpoint:
            trained = wf.load(args.checkpoint, _checkpoint_changes(args.checkpoint, spec,
                                                                   args.eval_fields))
        else:
            cfg = Config.from_dict(spec.config)
            check_config(spec, cfg)                         # before training
            trained = wf.train(cfg, Path(args.out), progress=progress)
        mapped = wf.map_trained(trained)
        points = len(spec.points())
        print(f"fault campaign: {points} points ({', '.join(spec.sweep)}; seeds "
              f"{list(spec.seeds)}) -> {args.out}")
        report = run_campaign(spec, trained, mapped, wf.ood(trained), progress=progress)
        report["rtl"] = _rtl(spec, trained, mapped, report["n_way"], args, progress)
        paths = write_report(report, args.out)
    except (ValueError, OSError) as e:
        print(f"spinbayes faults: error: {e}", file=sys.stderr)
        return 2
    print(Path(paths[1]).read_text())
    print(f"{points} points in {report['seconds']:.0f} s; wrote "
          f"{', '.join(str(p) for p in paths)}")
    rtl = report["rtl"]
    if rtl and rtl.get("failed"):
        print(f"spinbayes faults: {rtl['failed']} RTL sample point(s) failed (see the RTL "
              f"table)", file=sys.stderr)
        return 1
    return 0


def _rtl_options(spec, args):
    """``spec`` with the command line's --rtl-points, --rtl-images and --no-rtl."""
    from dataclasses import replace

    for flag, v, lo in (("--rtl-points", args.rtl_points, 0),
                        ("--rtl-images", args.rtl_images, 1)):
        if v is not None and v < lo:
            raise ValueError(f"{flag} must be an integer >= {lo}, not {v!r}")
    if args.rtl_points is not None:
        spec = replace(spec, rtl_points=args.rtl_points)
    if args.rtl_images is not None:
        spec = replace(spec, rtl_images=args.rtl_images)
    return replace(spec, rtl_points=0) if args.no_rtl else spec


def _rtl(spec, trained, mapped, n_way, args, progress):
    """The RTL sample (spinbayes/fault_rtl.py), or None with --no-rtl / rtl_points = 0, or
    {"skipped": why} when no simulator is installed."""
    from .fault_rtl import run_rtl_points
    from .sim.runner import SimulatorMissing
    from .workflow_hw import choose_simulator

    if spec.rtl_points == 0:
        return None
    try:
        sim, why = choose_simulator(args.simulator, prefer="verilator")
    except SimulatorMissing as e:
        print(f"RTL sample points skipped: {e}")
        return {"skipped": f"no simulator ({e})"}
    print(f"RTL sample: checking points on {sim} ({why})")
    return run_rtl_points(spec, trained, mapped, n_way, sim, why, progress=progress)


def _checkpoint_changes(checkpoint, spec, eval_fields) -> dict:
    """The spec's [config] as changes to ``checkpoint``'s Config: evaluation fields only
    (the weights were trained with the manifest's), each checked."""
    from .config import Config
    from .golden.checkpoint import read_manifest

    recorded = read_manifest(checkpoint)["config"]
    cfg = Config.from_dict({**recorded, **spec.config})
    trained = Config.from_dict(recorded)
    differ = sorted(k for k in spec.config
                    if k not in eval_fields and getattr(cfg, k) != getattr(trained, k))
    if differ:
        raise ValueError(f"[config] sets training field(s) {differ} that differ from the "
                         f"checkpoint {checkpoint}'s; with --checkpoint only evaluation "
                         f"fields may change ({', '.join(sorted(eval_fields))})")
    return {k: getattr(cfg, k) for k in spec.config}
