"""How big and how fast the exported SpinBayes core is in each simulator (a benchmark, not a test).

For one :class:`~spinbayes.rtl.params.RtlParams` (default: ``RtlParams()``, the 64-64-10 class
design with N = 5) it measures

* the Amaranth -> Verilog conversion time and the Verilog's size, total and per module;
* the Verilator build time, CPU (compiler processes) and wall (a fresh build directory; the
  build is the first run minus a second, cached run of the same design);
* simulated cycles per second of CPU time (the simulator process's own; robust on a loaded
  machine) and of wall time, idle and busy, on Verilator and Icarus (cocotb with a *light*
  testbench: the clock is cocotb's C clock and the measured stretch is one ``Timer``, so no
  Python runs per cycle: this is the design's own simulation speed) and in Amaranth's
  simulator (``ctx.tick().repeat``).

The busy workload is data, written through the programming port like firmware does: a
64-input, 64-hidden, 10-class MLP (clipped to the params), T = 10, n-way 1, A_in-bit inputs,
random cell levels through the simulator back door; in_valid is held high and out_ready
high, so the core runs image after image for the whole measured stretch.

Run::

    /work/venv/bin/python bench/rtl_sim_speed.py                    # default core, all sims
    /work/venv/bin/python bench/rtl_sim_speed.py --sims verilator --cycles 20000
    /work/venv/bin/python bench/rtl_sim_speed.py --small            # a small design, quick
    /work/venv/bin/python bench/rtl_sim_speed.py --verilog old_core.v --sims verilator

The same file is the cocotb test module (``speed``) that the runner loads in the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMALL = dict(N=3, n_max=1, rows_max=16, outputs_max=10, layers_max=2, groups_total=8,
             T_max=4)


def workload(p) -> list[tuple[int, int, int, int, int]]:
    """The register writes (sel, a, b, c, data) of the busy workload for params ``p``."""
    from spinbayes.rtl.regs import Reg
    rows0 = min(64, p.rows_max)
    hidden = min(64, p.outputs_max, p.rows_max)
    classes = min(10, p.outputs_max)
    groups0 = -(-rows0 // p.R)
    w = [(Reg.LAYER_ROWS, 0, 0, 0, rows0), (Reg.LAYER_OUTS, 0, 0, 0, hidden),
         (Reg.LAYER_GROUP_BASE, 0, 0, 0, 0), (Reg.LAYER_IN_BITS, 0, 0, 0, p.A_in),
         (Reg.LAYER_ROWS, 0, 0, 1, hidden), (Reg.LAYER_OUTS, 0, 0, 1, classes),
         (Reg.LAYER_GROUP_BASE, 0, 0, 1, groups0), (Reg.LAYER_IN_BITS, 0, 0, 1, p.A),
         (Reg.N_LAYERS, 0, 0, 0, 2), (Reg.PASSES, 0, 0, 0, min(10, p.T_max)),
         (Reg.N_WAY, 0, 0, 0, 1), (Reg.RNG_THRESHOLD, 0, 0, 0, 2 ** (p.rng_bits - 1))]
    for layer in range(2):
        for dev in range(max(1, p.code_bits)):
            w.append((Reg.RNG_SEED, dev, 0, layer, 1 + 7 * dev + 101 * layer))
    for c in range(classes):
        w.append((Reg.SCALE, c, 0, 0, 3 + c))
        w.append((Reg.OFFSET, c, 0, 0, -c))
    return [(int(s), a, b, c, d) for s, a, b, c, d in w]


def cell_init(p, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(-4, 5, size=(p.N, p.groups_total * p.R, p.cols_max))


# --- cocotb side (runs inside the simulator) ------------------------------------------------
try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge, Timer
except ImportError:             # pragma: no cover - the script still measures Amaranth
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def speed(dut):
        cfg = json.loads(Path(os.environ["SPINBAYES_TB_CONFIG"]).read_text())
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        for name in ("prog_en", "prog_sel", "prog_a", "prog_b", "prog_c", "prog_data",
                     "vfy_k", "vfy_row", "vfy_col", "in_data", "in_valid", "out_ready"):
            getattr(dut, name).value = 0
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        out = {}
        w0, c0 = time.perf_counter(), time.process_time()
        await Timer(10 * cfg["cycles"], unit="ns")
        out["idle_s"], out["idle_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        for sel, a, b, c, d in cfg["writes"]:
            dut.prog_en.value = 1
            dut.prog_sel.value, dut.prog_a.value, dut.prog_b.value = sel, a, b
            dut.prog_c.value, dut.prog_data.value = c, d
            await RisingEdge(dut.clk)
        dut.prog_en.value = 0
        dut.in_data.value = cfg["in_data"]
        dut.in_valid.value = 1
        dut.out_ready.value = 1
        await RisingEdge(dut.clk)
        busy0 = dut.cnt_cycles.value
        w0, c0 = time.perf_counter(), time.process_time()
        await Timer(10 * cfg["cycles"], unit="ns")
        out["busy_s"], out["busy_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        await RisingEdge(dut.clk)
        busy1 = dut.cnt_cycles.value
        # None when the counter is X (Icarus never evaluated a comb block of the old core)
        out["busy_cycles"] = (int(busy1) - int(busy0) if busy0.is_resolvable
                              and busy1.is_resolvable else None)
        out["cycles"] = cfg["cycles"]
        Path(os.environ["SPINBAYES_TB_RESULT"]).write_text(json.dumps(out))


# --- host side ------------------------------------------------------------------------------
def convert(p, cells):
    from amaranth.back import verilog

    from spinbayes.rtl.network import SpinBayesCore
    t0 = time.perf_counter()
    text = verilog.convert(SpinBayesCore(p, cells), name="spinbayes_core", emit_src=False)
    return text, time.perf_counter() - t0


def module_sizes(text: str) -> dict[str, int]:
    """Bytes of Verilog per module, largest first."""
    sizes = {}
    for chunk in re.split(r"(?m)^module ", text)[1:]:
        sizes[chunk.split("(")[0].strip().lstrip("\\")] = len("module " + chunk)
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def _child_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: compiler, simulator."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cocotb_speed(sim, text, p, cycles, cache_dir):
    from spinbayes.sim.runner import run_cocotb
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    cfg = {"cycles": cycles, "writes": workload(p), "in_data": 2 ** p.A_in - 1 - 5 % 2 ** p.A_in}
    t0, c0 = time.perf_counter(), _child_cpu()
    res = run_cocotb(verilog=text, toplevel="spinbayes_core", test_module="rtl_sim_speed",
                     params=p.describe(), config=cfg, simulator=sim, cache_dir=cache_dir)
    first, first_cpu = time.perf_counter() - t0, _child_cpu() - c0
    build = None
    if sim == "verilator":
        t0, c0 = time.perf_counter(), _child_cpu()
        res = run_cocotb(verilog=text, toplevel="spinbayes_core", test_module="rtl_sim_speed",
                         params=p.describe(), config=cfg, simulator=sim, cache_dir=cache_dir)
        build = first - (time.perf_counter() - t0)
        build_cpu = first_cpu - (_child_cpu() - c0)
        gen = sum(f.stat().st_size for f in res.directory.parent.rglob("*")
                  if f.suffix in (".cpp", ".h"))
    d = res.data
    out = {**_rates(d, cycles),
           "busy_fraction": (d["busy_cycles"] / cycles if d["busy_cycles"] is not None
                             else float("nan"))}
    if build is not None:
        out["build_wall_s"] = build
        out["build_cpu_s"] = build_cpu
        out["generated_cpp_bytes"] = gen
    return out


def amaranth_speed(p, cells, cycles):
    from amaranth.sim import Simulator

    from spinbayes.rtl.network import SpinBayesCore
    dut = SpinBayesCore(p, cells)
    out = {}

    async def tb(ctx):
        w0, c0 = time.perf_counter(), time.process_time()
        await ctx.tick().repeat(cycles)
        out["idle_s"], out["idle_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        for sel, a, b, c, d in workload(p):
            ctx.set(dut.prog_en, 1)
            ctx.set(dut.prog_sel, sel)
            ctx.set(dut.prog_a, a)
            ctx.set(dut.prog_b, b)
            ctx.set(dut.prog_c, c)
            ctx.set(dut.prog_data, d)
            await ctx.tick()
        ctx.set(dut.prog_en, 0)
        ctx.set(dut.in_data, 2 ** p.A_in - 1 - 5 % 2 ** p.A_in)
        ctx.set(dut.in_valid, 1)
        ctx.set(dut.out_ready, 1)
        await ctx.tick()
        busy0 = ctx.get(dut.counters["cnt_cycles"])
        w0, c0 = time.perf_counter(), time.process_time()
        await ctx.tick().repeat(cycles)
        out["busy_s"], out["busy_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
        out["busy_cycles"] = ctx.get(dut.counters["cnt_cycles"]) - busy0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    t0 = time.perf_counter()
    sim.run()
    return {**_rates(out, cycles), "busy_fraction": out["busy_cycles"] / cycles,
            "elaborate_and_run_s": time.perf_counter() - t0}


def _rates(d, cycles):
    """Cycles per second of CPU time (what the simulator costs, robust to a loaded machine)
    and of wall time."""
    return {"idle_cycles_per_cpu_s": cycles / d["idle_cpu_s"],
            "busy_cycles_per_cpu_s": cycles / d["busy_cpu_s"],
            "idle_cycles_per_wall_s": cycles / d["idle_s"],
            "busy_cycles_per_wall_s": cycles / d["busy_s"]}


def main(argv=None):
    from spinbayes.rtl.params import RtlParams
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help=f"RtlParams(**{SMALL})")
    ap.add_argument("--sims", default="amaranth,icarus,verilator",
                    help="comma list of amaranth, icarus, verilator")
    ap.add_argument("--cycles", type=int, default=10000, help="cycles per measured stretch")
    ap.add_argument("--amaranth-cycles", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--verilog", type=Path, help="measure this exported core instead of "
                    "converting the current rtl/ (e.g. an older version; no Amaranth run)")
    ap.add_argument("--cache", type=Path, help="build directory to keep (default: a fresh "
                    "temporary one, so the Verilator build time is measured)")
    args = ap.parse_args(argv)
    p = RtlParams(**SMALL) if args.small else RtlParams()
    cells = cell_init(p)
    if args.verilog:
        text, conv_s = args.verilog.read_text(), float("nan")
    else:
        text, conv_s = convert(p, cells)
    sizes = module_sizes(text)
    report = {"params": p.describe(), "convert_s": conv_s, "verilog_bytes": len(text),
              "modules": sizes}
    print(f"Verilog: {len(text)} bytes, {len(sizes)} modules, convert {conv_s:.1f} s")
    for name, n in list(sizes.items())[:8]:
        print(f"  {n:>9}  {name}")
    sims = [s for s in args.sims.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="rtl-speed-") as tmp:
        cache = args.cache or tmp
        for sim in sims:
            if sim == "amaranth":
                if args.verilog:
                    continue
                r = amaranth_speed(p, cells, args.amaranth_cycles)
            else:
                r = cocotb_speed(sim, text, p, args.cycles, cache)
            report[sim] = r
            print(f"{sim:9s} " + ", ".join(f"{k} {v:.3g}" for k, v in r.items()))
    if "verilator" in report and "amaranth" in report:
        ratio = (report["verilator"]["busy_cycles_per_cpu_s"]
                 / report["amaranth"]["busy_cycles_per_cpu_s"])
        report["verilator_over_amaranth_busy"] = ratio
        print(f"Verilator / Amaranth (busy, CPU time): {ratio:.1f}x")
    if "verilator" in report and "icarus" in report:
        ratio = (report["verilator"]["busy_cycles_per_cpu_s"]
                 / report["icarus"]["busy_cycles_per_cpu_s"])
        report["verilator_over_icarus_busy"] = ratio
        print(f"Verilator / Icarus (busy, CPU time): {ratio:.1f}x")
    if args.json:
        from spinbayes.golden.checkpoint import atomic_write
        atomic_write(args.json, json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
