"""Golden-model throughput: SpinBayes inference against Gaussian-MC baselines, side by side.

Measures images per second at batch 1 and batch 256, T = 10, for the digits MLP (64-64-10)
and LeNet-5 (28x28), for:

  (a)  SpinBayes, float golden model      (a') SpinBayes, integer hardware mode
  (b)  this project's BBB Gaussian MC     (c)  bayesian-torch reparameterisation MC (if installed)
  (d)  the deterministic network run T times

All methods run in one process, interleaved in a shuffled order and repeated; the report gives
medians and the ratios a/b, a/c, a/d, both per wall-clock second and per CPU second of the
measuring thread (on a shared, loaded machine the second is the steadier: it leaves out the
time other processes hold the CPU). Speed is a ratio against a baseline measured in the same
run, never an absolute promise. Usage:

    python bench/golden_throughput.py [--repeats 7] [--seconds 0.5] [--threads 1] [--out FILE]
    python bench/golden_throughput.py --profile    # where (a)'s time goes, every setup
    python bench/golden_throughput.py --steps      # CPU time of (a)'s steps, digits MLP

The JSON report records the command line and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.inference import SpinBayesNet, sample_choices
from spinbayes.golden.networks import build_model
from spinbayes.golden.train import bbb_predict

T = 10


def _setups():
    yield "MLP-digits 64-64-10", Config(), (1, 8, 8)
    yield "LeNet-5 28x28", Config(topology="lenet5"), (1, 28, 28)


def _bayesian_torch_model(cfg, shape):
    """The same topology with bayesian-torch's reparameterisation layers, or None."""
    try:
        from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn
    except ImportError:
        return None
    from torch import nn

    if cfg.topology == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64, bias=False), nn.BatchNorm1d(64),
                            nn.ReLU(), nn.Linear(64, 10, bias=False), nn.BatchNorm1d(10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": 0.1, "posterior_mu_init": 0.0,
                     "posterior_rho_init": -4.0, "type": "Reparameterization",
                     "moped_enable": False})
    return net.eval()


def _methods(cfg, shape, B):
    model = build_model(cfg, shape, 10).eval()
    images = approximate(model, cfg.N, cfg.Q, seed=0)
    net = SpinBayesNet(images, model, 1)
    hw = fold_network(net, images)
    x = torch.rand(B, *shape)
    g = torch.Generator().manual_seed(0)

    def deterministic():
        model.set_sampling(False)
        try:
            return torch.stack([torch.softmax(model(x), -1) for _ in range(T)], 1)
        finally:
            model.set_sampling(True)

    def integer():
        return hw.run(x, sample_choices(len(images), B, T, images.N, 1, g)).probs

    methods = {"(a) SpinBayes float": lambda: net(x, T, generator=g).probs,
               "(a') SpinBayes integer": integer,
               "(b) BBB Gaussian MC": lambda: bbb_predict(model, x, T, generator=g),
               "(d) deterministic x T": deterministic}
    bt = _bayesian_torch_model(cfg, shape)
    if bt is not None:
        def bayesian_torch():  # dnn_to_bnn's layers return the output only (no KL)
            return torch.stack([torch.softmax(bt(x), -1) for _ in range(T)], 1)
        methods["(c) bayesian-torch MC"] = bayesian_torch
    return methods


@torch.no_grad()
def _rate(fn, B, seconds):
    """(images per wall-clock second, images per CPU second of this thread)."""
    fn()  # warm-up
    n, start, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * B / (time.perf_counter() - start), n * B / max(time.thread_time() - cpu, 1e-9)


@torch.no_grad()
def _profile():
    for name, cfg, shape in _setups():
        for B in (1, 256):
            methods = _methods(cfg, shape, B)
            for m in ("(a) SpinBayes float", "(c) bayesian-torch MC"):
                if m not in methods:
                    continue
                fn, calls = methods[m], 100 if B == 1 else 3
                fn()
                with torch.profiler.profile() as prof:
                    for _ in range(calls):
                        fn()
                print(f"{name}, batch {B}, {m}: {calls} calls")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def _mlp_steps(net, B):
    """The steps of (a) on the digits MLP at batch B, as functions to time alone."""
    from spinbayes.golden import passes

    N = net.N
    (x0, x1), (s0, s1) = net.crossbars, net.stages
    x, g = torch.rand(B, 1, 8, 8), torch.Generator().manual_seed(0)
    out, h = net(x, T, generator=g), x.flatten(1)
    z0 = torch.mm(h, x0.weight_all).view(B * N, -1)
    a0 = passes.post(s0, z0)
    z1 = torch.mm(a0, x1.weight_all).view(B * N * N, -1)
    rows = torch.randint(len(z1), (B * T,), generator=g)
    z = z1.index_select(0, rows)
    return {"whole call": lambda: net(x, T, generator=g).probs,
            "input check": lambda: net.check_input(x),
            "crossbar choices": lambda: sample_choices(2, B, T, N, 1, g),
            "input rounding": lambda: x.mul(15).round_().div_(15),
            "layer 1 products": lambda: torch.mm(h, x0.weight_all),
            "layer 1 comparators": lambda: passes.post(s0, z0),
            "layer 2 products": lambda: torch.mm(a0, x1.weight_all),
            "layer 2 row gather": lambda: z1.index_select(0, rows),
            "layer 2 BatchNorm": lambda: passes.post(s1, z),
            "softmax (.probs)": lambda: out.probs}


@torch.no_grad()
def _steps():
    """CPU time of the steps of (a) on the digits MLP, each timed alone (min of 7 rounds)."""
    cfg = Config()
    model = build_model(cfg, (1, 8, 8), 10).eval()
    net = SpinBayesNet(approximate(model, cfg.N, cfg.Q, seed=0), model, 1)
    for B in (1, 256):
        n = 2000 if B == 1 else 40
        print(f"MLP-digits, batch {B}, (a), CPU microseconds per call:")
        for name, fn in _mlp_steps(net, B).items():
            fn()
            best = float("inf")
            for _ in range(7):
                start = time.thread_time()
                for _ in range(n):
                    fn()
                best = min(best, (time.thread_time() - start) / n * 1e6)
            print(f"  {name:22s} {best:9.1f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median taken)")
    p.add_argument("--seconds", type=float, default=0.5, help="time per method per round")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--profile", action="store_true",
                   help="only print a torch profile of (a) and (c), every setup")
    p.add_argument("--steps", action="store_true",
                   help="only print the CPU time of the steps of (a) on the digits MLP")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        return _profile()
    if args.steps:
        return _steps()
    rng = random.Random(0)
    report = {"command": "python bench/golden_throughput.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "T": T, "threads": args.threads, "repeats": args.repeats,
              "torch": torch.__version__, "python": platform.python_version(),
              "cpus": os.cpu_count(), "load_average_1min": {"start": os.getloadavg()[0]},
              "rows": []}
    print(f"T = {T}, {args.threads} thread(s), median of {args.repeats} interleaved rounds\n")
    print("| topology | batch | method | images/s | (a) / this | images/CPU s | (a) / this, CPU |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, cfg, shape in _setups():
        for B in (1, 256):
            methods = _methods(cfg, shape, B)
            rates = {m: [] for m in methods}
            cpu_rates = {m: [] for m in methods}
            for _ in range(args.repeats):
                order = list(methods)
                rng.shuffle(order)
                for m in order:
                    wall, cpu = _rate(methods[m], B, args.seconds)
                    rates[m].append(wall)
                    cpu_rates[m].append(cpu)
            med = {m: statistics.median(r) for m, r in rates.items()}
            cpu_med = {m: statistics.median(r) for m, r in cpu_rates.items()}
            ref, cpu_ref = med["(a) SpinBayes float"], cpu_med["(a) SpinBayes float"]
            for m, v in med.items():
                c = cpu_med[m]
                print(f"| {name} | {B} | {m} | {v:,.0f} | {ref / v:.2f} | {c:,.0f} | "
                      f"{cpu_ref / c:.2f} |")
                report["rows"].append({"topology": name, "batch": B, "method": m,
                                       "images_per_s": v, "samples": rates[m],
                                       "speedup_of_a": ref / v,
                                       "images_per_cpu_s": c, "cpu_samples": cpu_rates[m],
                                       "cpu_speedup_of_a": cpu_ref / c})
    report["load_average_1min"]["end"] = os.getloadavg()[0]
    print(f"\n1-minute load average: {report['load_average_1min']['start']:.2f} at the start, "
          f"{report['load_average_1min']['end']:.2f} at the end ({os.cpu_count()} CPUs)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
