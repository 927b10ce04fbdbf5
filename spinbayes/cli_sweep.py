"""``spinbayes sweep SPEC.toml`` and ``spinbayes sweep report``: design-space sweeps on Ray.

:func:`add_parser` adds the subcommand to the main parser (its handler is :func:`main`); the
work is :mod:`spinbayes.sweep` (the spec), :mod:`spinbayes.sweep_run` (Ray, the results
table) and :mod:`spinbayes.sweep_report`. docs/SCALE.md documents both commands.
Exit code: 0 when every point finished, 1 when some failed, 2 on an error (a bad spec, no
results table).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "main"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``sweep`` to the subparsers ``sub`` of the main parser; returns its parser."""
    p = sub.add_parser(
        "sweep", help="a design-space sweep on Ray (spinbayes sweep SPEC.toml | report)",
        description="`spinbayes sweep SPEC.toml`: run every point of the spec's grid (and "
        "random samples) as a Ray task (train once per shared training, then golden "
        "evaluation, RTL co-verification, energy as the spec says), one row per point in "
        "OUT/results.sqlite; points already there are skipped. Ray runs on this machine "
        "(127.0.0.1 only, --workers CPUs) unless --address or $RAY_ADDRESS names a cluster. "
        "`spinbayes sweep report [SPEC.toml]`: OUT/report.md and the figures. "
        "Spec format: docs/SCALE.md and examples/sweep_digits.toml.")
    p.add_argument("spec", metavar="SPEC.toml|report",
                   help="the sweep spec to run, or `report`")
    p.add_argument("report_spec", nargs="?", metavar="SPEC.toml", default=None,
                   help="with `report`: report this spec's points (default: every row of "
                   "--out)")
    p.add_argument("--out", default=None,
                   help="results directory (default: the spec's sweep.out, else "
                   "runs/sweep/NAME)")
    p.add_argument("--workers", type=int, default=None,
                   help="CPUs of the local Ray (default: every core); not with --address")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--force", action="store_true",
                   help="run every point again, replacing its row")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    from .sweep import load_spec
    from .sweep_report import write_report
    from .sweep_run import keyed_points

    try:
        if args.spec == "report":
            if args.report_spec is None and args.out is None:
                raise ValueError("sweep report needs a SPEC.toml or --out DIR")
            keys = title = None
            out = args.out
            if args.report_spec is not None:
                spec = load_spec(args.report_spec, out=args.out)
                keys = [p.key for p in keyed_points(spec)]
                title, out = spec.name, spec.out
            path = write_report(out, keys=keys, title=title)
            print(f"wrote {path}")
            return 0
        if args.report_spec is not None:
            raise ValueError(f"unexpected argument {args.report_spec!r}: give one SPEC.toml "
                             f"(or `report [SPEC.toml]`)")
        spec = load_spec(args.spec, out=args.out)       # every point checked: before Ray
        from .sweep_run import run_sweep

        print(f"sweep {spec.name}: {len(spec.points)} points, stages "
              f"{', '.join(spec.stages)}, swept {', '.join(spec.swept) or 'nothing'} "
              f"-> {spec.out}")
        s = run_sweep(spec, address=args.address, workers=args.workers, force=args.force,
                      progress=not args.quiet)
        path = write_report(spec.out, keys=s["keys"], title=spec.name)
    except (ValueError, OSError) as e:
        print(f"spinbayes sweep: error: {e}", file=sys.stderr)
        return 2
    print(f"{s['ran']} points run, {s['skipped']} already done, {s['failed']} failed, "
          f"{s['trained']} trainings, {s['seconds']:.0f} s; table {spec.out}/results.sqlite; "
          f"wrote {path}")
    return 1 if s["failed"] else 0
