"""Co-verified images per minute and simulated cycles per second, on three simulators.

Two networks, N = 5, Q = 4, T = 10:

* the digits MLP 64-64-10 (BBB, 30 epochs), n = 1 on all three simulators and n = 2 on
  Verilator;
* LeNet-5 (conv 5x5 1->6 pad 2, pool 2, conv 5x5 6->16, pool 2, 400-120-84-10; untrained
  weights, seed 0, random 28x28 inputs: the cycle count depends on the geometry only), n = 1
  and n = 2 on Verilator (and Icarus with ``--lenet-icarus-images``).

Simulators:

* Amaranth's simulator (MLP only): the firmware driver (CoreDriver over AmaranthBus), one
  Python step per cycle, cells loaded through the back door (``SpinBayesCore(cell_init=...)``;
  the programming port then writes only the descriptor table), programming timed separately.
* cocotb + Icarus and cocotb + Verilator: :func:`spinbayes.sim.coverify.run_images` on the
  CoverifyHarness (write-list player through the programming port with read-back of every
  cell, images streamed by the harness, Python waits for ``done`` once per image), with the
  layer trace on (every hidden layer's vectors compared), as co-verification runs it.

Every image is checked against the integer reference on the RTL's own trace (co-verified);
a mismatch aborts the benchmark. Other jobs may share the machine: every row records the
1-minute load average before and after it. Prints a table and writes
bench/results/sim_throughput.json.

    python bench/sim_throughput.py                      # both networks, defaults below
    python bench/sim_throughput.py --topology lenet5 --lenet-images 20
    python bench/sim_throughput.py --topology mlp --hidden 32 --verilator-images 200
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
    r = run_images(hw, x, params=params, T=T, seed=seed, simulator=sim, progress=True,
                   trace_layers=True)
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


def digits_network(hidden: int, n_way: int = 1):
    """The benchmarks' MLP: the digits MLP 64-hidden-10 (BBB, 30 epochs, seed 0), N = 5
    crossbars of Q = 4 bits, n-way ``n_way``, folded to the integer hardware model; and the
    digits split."""
    digits = load_digits_split(0.2, 0)
    cfg = Config(hidden=(hidden,), epochs=30)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 8, 8), 10)
    train_bbb(model, digits.x_train, digits.y_train, cfg, progress=False)
    images = approximate(model, 5, 4, seed=0)
    return fold_network(build_spinbayes(images, model, digits.x_train, n_way, 20, seed=0),
                        images), digits


def lenet_network(n_way: int, images: int):
    """LeNet-5 as tests/sim/test_conv_network.py builds it: untrained (seed 0), N = 5, Q = 4,
    n-way ``n_way``, folded; and ``images`` random 28x28 inputs (seed 0)."""
    torch.manual_seed(0)
    model = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    cells = approximate(model, 5, 4, seed=0)
    x = torch.rand(max(32, images), 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return fold_network(build_spinbayes(cells, model, x[:32], n_way, 1, seed=0), cells), \
        x[:images]


def timed(fn, *a) -> dict:
    """``fn(*a)`` with the machine's 1-minute load average before and after."""
    before = os.getloadavg()[0]
    row = fn(*a)
    row["load_before"], row["load_after"] = before, os.getloadavg()[0]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topology", choices=("all", "mlp", "lenet5"), default="all")
    ap.add_argument("--hidden", type=int, default=64, help="MLP hidden width (default 64: "
                    "the main job's 64-64-10)")
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--n-way", default="1,2", help="n-way values for the Verilator rows "
                    "(default 1,2; Amaranth and Icarus run n = 1)")
    ap.add_argument("--amaranth-images", type=int, default=3)
    ap.add_argument("--icarus-images", type=int, default=10)
    ap.add_argument("--verilator-images", type=int, default=60)
    ap.add_argument("--lenet-images", type=int, default=10, help="LeNet-5 images per n on "
                    "Verilator")
    ap.add_argument("--lenet-icarus-images", type=int, default=0)
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    n_ways = [int(v) for v in args.n_way.split(",")]
    if not n_ways or min(n_ways) < 1:
        raise SystemExit(f"--n-way must list positive integers, not {args.n_way!r}")
    torch.set_num_threads(1)
    rows, params_of = [], {}
    if args.topology in ("all", "mlp"):
        rows += mlp_rows(args, n_ways, params_of)
    if args.topology in ("all", "lenet5"):
        rows += lenet_rows(args, n_ways, params_of)
    lines = ["| network | n | simulator | images | images/min | cycles/image | cycles/s | "
             "build s | programming s | per image: simulator s | per image: Python s | "
             "load before / after |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        py = "-" if r["per_image_python_s"] is None else f"{r['per_image_python_s']:.4f}"
        lines.append(f"| {r['network']} | {r['n']} | {r['simulator']} | {r['images']} | "
                     f"{r['images_per_min']:.1f} | {r['cycles_per_image']:.0f} | "
                     f"{r['cycles_per_s']:.0f} | {r['build_s']:.1f} | "
                     f"{r['programming_s']:.1f} | {r['per_image_sim_s']:.3f} | {py} | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    write_report(args, argv, params_of, rows, lines)
    return 0


def mlp_rows(args, n_ways, params_of) -> list[dict]:
    """Amaranth and Icarus at n = 1, Verilator at every n of ``n_ways``."""
    out = []
    name = f"MLP 64-{args.hidden}-10"
    for n in sorted({1, *n_ways}):
        hw, digits = digits_network(args.hidden, n)
        params = params_for(hw, args.T)
        params_of[f"{name} n={n}"] = params.describe()
        runs = [("verilator", args.verilator_images)] if n in n_ways else []
        if n == 1:
            runs = [("amaranth", args.amaranth_images), ("icarus", args.icarus_images), *runs]
        for sim, count in runs:
            x = digits.x_test[:count]
            if not count or (sim != "amaranth" and not simulator_available(sim)):
                continue
            row = (timed(amaranth, hw, x, params, args.T, 1) if sim == "amaranth"
                   else timed(cocotb_run, hw, x, params, args.T, 1, sim))
            out.append({"network": name, "n": n, "simulator": sim, **row})
            print(out[-1], flush=True)
    return out


def lenet_rows(args, n_ways, params_of) -> list[dict]:
    """Verilator at every n of ``n_ways``; Icarus at n = 1 if asked."""
    out = []
    for n in n_ways:
        runs = [("icarus", args.lenet_icarus_images)] if n == 1 else []
        runs.append(("verilator", args.lenet_images))
        hw, x_all = lenet_network(n, max(c for _, c in runs))
        params = params_for(hw, args.T)
        params_of[f"LeNet-5 n={n}"] = params.describe()
        for sim, count in runs:
            if count and simulator_available(sim):
                row = timed(cocotb_run, hw, x_all[:count], params, args.T, 7, sim)
                out.append({"network": "LeNet-5", "n": n, "simulator": sim, **row})
                print(out[-1], flush=True)
    return out


def write_report(args, argv, params, rows, lines) -> None:
    """Print the table and write the JSON result (atomically) with the command and machine.
    ``params``: the designs (``RtlParams.describe()``), one or a dict of them by name."""
    table = "\n".join(lines)
    print(table)
    if hasattr(params, "describe"):
        params = params.describe()
    report = {"T": args.T, "N": 5, "params": params, "rows": rows, "table": table,
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1min": os.getloadavg()[0]}}
    atomic_write(Path(args.out), json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
