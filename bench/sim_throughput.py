"""Co-verified images per minute of the digits MLP at T = 10, N = 5, on three simulators.

* Amaranth's simulator: the firmware driver (CoreDriver over AmaranthBus), one Python step
  per cycle, cells loaded through the back door (``SpinBayesCore(cell_init=...)``; the
  programming port then writes only the descriptor table), programming timed separately.
* cocotb + Icarus and cocotb + Verilator: :func:`spinbayes.sim.coverify.run_images` on the
  CoverifyHarness (write-list player through the programming port with read-back of every
  cell, images streamed by the harness, Python waits for ``done`` once per image).

Every image is checked against the integer reference on the RTL's own trace (co-verified);
a mismatch aborts the benchmark. Prints a table and writes bench/results/sim_throughput.json.

    python bench/sim_throughput.py                      # defaults below
    python bench/sim_throughput.py --hidden 32 --verilator-images 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spinbayes.config import Config
from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.approximation import approximate
from spinbayes.golden.checkpoint import atomic_write
from spinbayes.golden.datasets import load_digits_split
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.layers import input_codes
from spinbayes.golden.networks import build_model
from spinbayes.golden.train import train_bbb
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.runner import simulator_available

RESULT = Path(__file__).resolve().parent / "results" / "sim_throughput.json"


def amaranth(hw, x, params, T, seed) -> dict:
    from amaranth.sim import Simulator

    program = compile_network(hw, params, T=T, seed=seed)
    t0 = time.perf_counter()
    dut = SpinBayesCore(params, program.cells)
    results, marks = [], {}

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        marks["start"] = time.perf_counter()
        await drv.program(program, cells=False)
        marks["programmed"] = time.perf_counter()
        for img in input_codes(x, hw.input_bits).flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way))
        marks["images"] = time.perf_counter()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    t_check = time.perf_counter()
    ref = hw.run(x, torch.from_numpy(np.stack([r.choices for r in results], axis=1)))
    bad = sum(int((r.per_pass != ref.per_pass[b].numpy()).sum())
              + int((r.averaged != ref.averaged[b].numpy()).sum())
              + int(r.prediction != int(ref.prediction[b])) for b, r in enumerate(results))
    check_s = time.perf_counter() - t_check
    images_s = marks["images"] - marks["programmed"]
    cycles = [r.cycles for r in results]
    return {"images": len(x), "mismatches": bad,
            "build_s": marks["start"] - t0,
            "programming_s": marks["programmed"] - marks["start"],
            "programming": "descriptor through the port, cells by back door (cell_init)",
            "images_s": images_s, "check_s": check_s,
            "images_per_min": 60 * len(x) / (images_s + check_s),
            "cycles_per_image": float(np.mean(cycles)),
            "cycles_per_s": sum(cycles) / images_s,
            "per_image_sim_s": images_s / len(x), "per_image_python_s": None}


def cocotb_run(hw, x, params, T, seed, sim) -> dict:
    r = run_images(hw, x, params=params, T=T, seed=seed, simulator=sim, progress=True)
    if not r.passed:
        raise SystemExit(f"{sim}: {r.mismatches} mismatches, {r.vfy_errors} cells wrong: "
                         f"{r.details[:5]}")
    t = r.timings
    B = len(x)
    return {"images": B, "mismatches": r.mismatches,
            "build_s": t["export_s"] + t["build_and_start_s"],
            "programming_s": t["programming_s"],
            "programming": f"{t['writes']} writes through the port + read-back "
                           f"({t['programming_cycles']} cycles; write list loaded by VPI in "
                           f"{t['write_list_load_s']:.2f} s)",
            "images_s": t["images_s"], "check_s": t["check_s"],
            "images_per_min": t["images_per_min"],
            "cycles_per_image": float(r.cycles.mean()),
            "cycles_per_s": float(r.cycles.sum()) / t["sim_wait_s"],
            "per_image_sim_s": t["sim_wait_s"] / B, "per_image_python_s": t["tb_python_s"] / B}


def digits_network(hidden: int):
    """The benchmarks' network: the digits MLP 64-hidden-10 (BBB, 30 epochs, seed 0), N = 5
    crossbars of Q = 4 bits, folded to the integer hardware model; and the digits split."""
    digits = load_digits_split(0.2, 0)
    cfg = Config(hidden=(hidden,), epochs=30)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8), 10)
    train_bbb(model, digits.x_train, digits.y_train, cfg, progress=False)
    images = approximate(model, 5, 4, seed=0)
    return fold_network(build_spinbayes(images, model, digits.x_train, 1, 20, seed=0),
                        images), digits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=64, help="hidden width (default 64: the "
                    "main job's 64-64-10)")
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--amaranth-images", type=int, default=3)
    ap.add_argument("--icarus-images", type=int, default=10)
    ap.add_argument("--verilator-images", type=int, default=60)
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    hw, digits = digits_network(args.hidden)
    params = params_for(hw, args.T)
    rows = {}
    n_max = max(args.amaranth_images, args.icarus_images, args.verilator_images)
    x_all = digits.x_test[:n_max]
    print(f"digits MLP 64-{args.hidden}-10, N=5, Q=4, T={args.T}, n=1; design "
          f"{params.describe()}")
    rows["amaranth"] = amaranth(hw, x_all[:args.amaranth_images], params, args.T, 1)
    print("amaranth", rows["amaranth"])
    for sim, n in (("icarus", args.icarus_images), ("verilator", args.verilator_images)):
        if n and simulator_available(sim):
            rows[sim] = cocotb_run(hw, x_all[:n], params, args.T, 1, sim)
            print(sim, rows[sim])
    base = rows["amaranth"]["images_per_min"]
    lines = ["| simulator | images | images/min | x Amaranth | cycles/image | cycles/s | "
             "build s | programming s | per image: simulator s | per image: Python s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        r["ratio_vs_amaranth"] = r["images_per_min"] / base
        py = "-" if r["per_image_python_s"] is None else f"{r['per_image_python_s']:.4f}"
        lines.append(f"| {name} | {r['images']} | {r['images_per_min']:.1f} | "
                     f"{r['ratio_vs_amaranth']:.1f} | {r['cycles_per_image']:.0f} | "
                     f"{r['cycles_per_s']:.0f} | {r['build_s']:.1f} | {r['programming_s']:.1f} | "
                     f"{r['per_image_sim_s']:.3f} | {py} |")
    write_report(args, argv, params, rows, lines)
    return 0


def write_report(args, argv, params, rows, lines) -> None:
    """Print the table and write the JSON result (atomically) with the command and machine."""
    table = "\n".join(lines)
    print(table)
    report = {"network": f"64-{args.hidden}-10", "T": args.T, "N": 5, "params":
              params.describe(), "rows": rows, "table": table,
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1min": os.getloadavg()[0]}}
    atomic_write(Path(args.out), json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
