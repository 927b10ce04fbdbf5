"""Network co-verification: the exported RTL under cocotb against the integer reference.

:func:`run_images` compiles the network (firmware/compiler.py), exports
:class:`~spinbayes.sim.harness.CoverifyHarness` around the core, runs ``sim/tb_network.py`` on
Icarus or Verilator (the harness plays the write list into the programming port, reads every
cell back, streams each image with random stalls and logs every result beat and arbiter
selection), then decodes the logs and checks every per-pass output, average and class against
``hw.run(x, choices)`` on the RTL's own arbiter trace, all images in one batch.
docs/COVERIFICATION.md describes the flow and the measured speed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..firmware.compiler import Program, compile_network
from ..golden.adaptive import AdaptiveOutput, AdaptiveT, adaptive_passes
from ..golden.checkpoint import atomic_write
from ..golden.geometry import geometry_of
from ..golden.hardware import HwNetwork
from ..golden.layers import input_codes
from ..rtl.params import RtlParams
from ..rtl.regs import COUNTERS
from .coverify_results import (
    CoverifyResult,
    Mismatch,
    compare,
    decode_acts,
    decode_logs,
    fill_not_run,
    layer_mismatches,
    reuse_count_mismatches,
)
from .runner import _cache_root, run_cocotb

__all__ = ["CoverifyResult", "Mismatch", "decode_acts", "decode_logs", "harness_verilog",
           "params_for", "run_images", "same_program", "write_list"]

TOPLEVEL = "spinbayes_harness"
TB_MODULE = "tb_network"


def _sources() -> list[Path]:
    """Files whose text decides the harness's Verilog (the cache key of
    :func:`harness_verilog`): the loaded rtl modules, the harness, the golden width rules."""
    import sys

    from . import harness  # noqa: F401  (loads every rtl module the harness uses)
    names = [*sorted(n for n in sys.modules if n.startswith("spinbayes.rtl.")),
             "spinbayes.sim.harness", "spinbayes.golden.hardware", "spinbayes.golden.cells"]
    return [Path(sys.modules[n].__file__) for n in names
            if getattr(sys.modules.get(n), "__file__", None)]


def harness_verilog(params: RtlParams, *, wlist_depth: int | None = None, stuck_cells=(),
                    act_log: int = 0, cache_dir=None) -> tuple[str, dict]:
    """Verilog of the harness (``emit_src=False``) and its :meth:`describe`, cached on disk.

    The key is the parameters, the harness options and the text of rtl/*.py and
    sim/harness.py. The write list's all-zero ``initial`` block (one line per entry) is
    removed: the testbench writes every entry the player reads.
    """
    from amaranth.back import verilog

    from .harness import CoverifyHarness

    key = hashlib.sha256(json.dumps([params.describe(), wlist_depth, sorted(stuck_cells),
                                     act_log], default=list).encode()
                         + b"".join(s.read_bytes() for s in _sources())).hexdigest()[:16]
    path = _cache_root(cache_dir) / f"harness-{key}.v"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path.read_text(), json.loads(meta_path.read_text())
    h = CoverifyHarness(params, wlist_depth=wlist_depth, stuck_cells=stuck_cells,
                        act_log=act_log)
    text = verilog.convert(h, name=TOPLEVEL, emit_src=False)
    lines = text.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):                     # drop "initial begin / wlist[k] = 0; ... end"
        if lines[i].strip() == "initial begin" and i + 1 < len(lines) and \
                lines[i + 1].lstrip().startswith("wlist["):
            j = i + 1
            while lines[j].lstrip().startswith("wlist["):
                j += 1
            i = j + 1                         # skip the closing "end"
            continue
        out.append(lines[i])
        i += 1
    text = "".join(out)
    info = h.describe()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    atomic_write(meta_path, json.dumps(info))
    return text, info


def params_for(hw: HwNetwork, T: int, *, reuse: bool = False, **overrides) -> RtlParams:
    """The smallest design (RtlParams) that runs ``hw`` at ``T`` passes (T_max at least 16,
    so that T = 1..16 share one build); ``overrides`` replace any field. Rows and outputs
    come from the layers' geometry (golden/geometry.py: C_in*k*k rows for a convolution); a
    network with convolutions gets the convolution path, sized by its input tensor (the
    image memory), its hidden convolutions' pooled pixels and channels (the activation
    memory), and their largest size, window, stride, padding and pooling. ``reuse``: with
    the first-layer reuse cache, sized by the first layer's positions and outputs."""
    geometry = geometry_of(hw)
    rows = [g.rows for g in geometry]
    outs = [g.outputs for g in geometry]
    hidden_bits = [g.out_bits for g in geometry if not g.is_output]
    kw = dict(N=hw.N, n_max=max(1, hw.n_way), Q=hw.Q, R=hw.R, A_in=hw.input_bits,
              A=max(hidden_bits, default=1), rows_max=max(rows), outputs_max=max(outs),
              classes_max=outs[-1],
              layers_max=len(hw.layers), groups_total=sum(-(-r // hw.R) for r in rows),
              T_max=max(16, int(T)))
    conv = [g for g in geometry if g.kind == "conv2d"]
    if conv:
        hidden = [g for g in conv if not g.is_output]
        kw.update(image_depth=geometry[0].in_size,
                  act_depth=max((g.H_pool * g.W_pool for g in hidden), default=1),
                  act_channels=max((g.outputs for g in hidden), default=1),
                  size_max=max(max(g.H, g.W) for g in conv),
                  kernel_max=max(g.k for g in conv), stride_max=max(g.stride for g in conv),
                  padding_max=max(g.padding for g in conv), pool_max=max(g.pool for g in conv))
    if reuse:
        kw.update(reuse_positions=geometry[0].positions, reuse_outputs=geometry[0].outputs)
    kw.update(overrides)
    return RtlParams(**kw)


def same_program(a: Program, b: Program) -> bool:
    """Whether two programs write the same cells and descriptor and run the same T."""
    return (a.T == b.T and a.n_outputs == b.n_outputs and list(a.group_base) == list(
        b.group_base) and np.array_equal(np.asarray(a.cells), np.asarray(b.cells))
        and list(a.descriptor) == list(b.descriptor))


def write_list(program: Program, extra=()) -> dict[str, np.ndarray]:
    """The player's entries: every non-zero cell, then the descriptor table (driver order),
    then the writes ``extra`` (a fault map's, sim/faults.py)."""
    ws = program.cell_writes() + program.descriptor + list(extra)
    return {"wl_sel": np.array([int(w.sel) for w in ws], dtype=np.int64),
            "wl_a": np.array([w.a for w in ws], dtype=np.int64),
            "wl_b": np.array([w.b for w in ws], dtype=np.int64),
            "wl_c": np.array([w.c for w in ws], dtype=np.int64),
            "wl_data": np.array([w.data for w in ws], dtype=np.int64)}


def run_images(hw: HwNetwork, x: torch.Tensor, *, params: RtlParams, T: int, seed: int,
               simulator: str = "icarus", waves: bool = False, stall: float = 0.0,
               progress: bool = True, float_net=None, labels=None, stall_seed: int = 1,
               driver_images: int = 0, load: str = "vpi", stuck_cells=(),
               trace_layers: bool = False, cache_dir=None,
               first_image: int = 0, program: Program | None = None,
               rng_current: float = 230e-6, fault_map=None, health=None,
               adaptive: AdaptiveT | None = None, reuse: bool = False) -> CoverifyResult:
    """Run images ``x`` (B, C, H, W; in [0, 1], or integer input codes) through the RTL
    under cocotb and check them in a batch.

    ``stall``: probability that the harness drops ``in_valid`` / ``out_ready`` in a cycle.
    ``float_net``: the float SpinBayes model (:class:`~spinbayes.golden.inference.
    SpinBayesNet`); its eq. 4 class on the RTL's choices is compared with the RTL's class.
    ``labels``: (B,) true classes, for the accuracy. ``driver_images``: also run that many of
    the images with the unchanged CoreDriver over CocotbBus (per-cycle Python) and check
    them. ``load``: ``"vpi"`` (write list and images by VPI memory writes) or ``"port"``.
    ``trace_layers``: the harness also logs the core's activation trace, and every hidden
    layer's output vectors are checked against the reference's (a ``"layer"`` mismatch names
    the layer, pass, position and neuron; sim/layer_check.py).
    ``first_image``: ``x`` are images first_image.. of a run; the arbiters start where they
    stand at that image in a run from image 0 (one shard of a run, sim/shard.py).
    ``program``: the program to play (e.g. a firmware image loaded from disk,
    firmware/image.py ``load_image``); None: ``hw`` compiled for ``params``, ``T`` and
    ``seed``. A given program must be the one those compile to (checked).
    ``rng_current``: the drive current of every RNG device (eq. 5; 230 µA gives p = 1/2),
    compiled into the RNG threshold register: far from 230 µA every device is biased or stuck.
    ``fault_map``: a :class:`~spinbayes.golden.faults.FaultMap` of ``hw``'s codes, played as
    extra writes after the program (sim/faults.py; the same build for any map) and checked
    against ``faulted_network(hw, fault_map)``; the read-back pass then reports exactly the
    faulty cells (``vfy_errors`` = ``timings["fault_cells"]``).
    ``health``: the RNG health tests' cutoffs (:class:`~spinbayes.golden.health.Cutoffs`;
    default H = 1, α = 2^-20), e.g. raised so that a fault map's biased devices run through.
    ``adaptive``: the early-stop rule (:class:`~spinbayes.golden.adaptive.AdaptiveT`, T is
    T_max): the passes each image ran (the core's PASSES_RUN, ``passes``) must equal the
    reference's (golden/adaptive.py), and the outputs are those of the passes run; a run with
    a rule on starts at image 0 (a later image's arbiter position depends on the passes the
    earlier images ran).
    ``reuse``: first-layer reuse on (``REUSE`` = 1; the design needs the cache,
    ``params_for(..., reuse=True)``): the outputs must be the same, and each image's crossbar
    reads and accumulations must equal the analytic count with its distinct first-layer
    crossbars (a ``cnt_xbar_reads`` / ``cnt_aac_ops`` mismatch otherwise).
    Raises ValueError for bad arguments, the named
    :class:`~spinbayes.firmware.alarms.CoreAlarmError` (``RngHealthError``,
    ``ArbiterStuckError``) when the core's ALARM stops an image (the harness watches STATUS;
    the error names the image, its cycles, the layer, device and test), AssertionError if the
    simulation itself fails.
    """
    if not 0.0 <= float(stall) < 1.0:
        raise ValueError(f"stall must be a probability in [0, 1), not {stall!r}")
    if load not in ("vpi", "port"):
        raise ValueError(f"load must be 'vpi' or 'port', not {load!r}")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"x must hold at least one image (B, ...), got {tuple(x.shape)}")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} images")
    if not 0 <= int(driver_images) <= len(x):
        raise ValueError(f"driver_images must lie in 0..{len(x)}, not {driver_images!r}")
    adaptive = AdaptiveT() if adaptive is None else adaptive
    if adaptive.rule != "off" and first_image:
        raise ValueError("an adaptive-T run must start at image 0, not first_image="
                         f"{first_image!r}: the arbiters' position at a later image depends "
                         "on the passes the earlier images ran")
    p = params
    compiled = compile_network(hw, p, T=T, seed=seed, rng_current=rng_current, health=health,
                               adaptive=adaptive, reuse=reuse)
    if program is None:
        program = compiled
    elif not same_program(program, compiled):
        raise ValueError("program is not the compilation of this network for this design, "
                         f"T = {T} and seed = {seed}: the reference would check the RTL "
                         "against another network")
    if first_image:
        from .shard import program_from_image
        program = program_from_image(program, p, seed=seed, first_image=first_image)
    geometry = geometry_of(hw)
    codes = (input_codes(x, hw.input_bits) if x.is_floating_point() else x.long())
    codes = codes.flatten(1).numpy().astype(np.int64)
    if codes.shape[1] != geometry[0].in_size:
        raise ValueError(f"images give {codes.shape[1]} inputs, layer 0 reads "
                         f"{geometry[0].in_size}")
    L, C, n = len(hw.layers), program.n_outputs, hw.n_way
    # every hidden layer's vectors of T_max passes (one log per design and network)
    act_log = p.T_max * sum(g.H_pool * g.W_pool for g in geometry if not g.is_output) \
        if trace_layers else 0
    timings: dict = {}
    t0 = time.perf_counter()
    text, info = harness_verilog(p, stuck_cells=stuck_cells, act_log=act_log,
                                 cache_dir=cache_dir)
    timings["export_s"] = time.perf_counter() - t0
    hw_ref, extra, timings["fault_cells"] = hw, [], 0
    if fault_map is not None:
        from ..golden.faults import faulted_network
        from .faults import fault_writes

        extra, timings["fault_cells"] = fault_writes(program, fault_map, hw, p, n)
        hw_ref = faulted_network(hw, fault_map)
    wl = write_list(program, extra)
    if extra and len(wl["wl_sel"]) > info["wlist_depth"]:
        # the player verifies each chunk right after playing it: a fault write in a later
        # chunk would change cells already verified
        raise ValueError(f"the program and the fault map's writes ({len(wl['wl_sel'])}) must "
                         f"fit the harness's write list ({info['wlist_depth']} entries)")
    work = Path(tempfile.mkdtemp(prefix="coverify-", dir=_cache_root(cache_dir)))
    np.savez(work / "data.npz", codes=codes, T=T, C=C, L=L, n_way=n, **wl)
    prog_file = work / "progress.txt"
    prog_file.write_text("")
    cfg = {"data": str(work / "data.npz"), "out": str(work / "raw.npz"),
           "progress": str(prog_file), "stall_thr": round(float(stall) * 2 ** 16),
           "stall_seed": int(stall_seed), "verify": True, "load": load,
           "beat_depth": info["beat_depth"], "trace_depth": info["trace_depth"],
           "act_log": act_log, "wlist_depth": info["wlist_depth"],
           "max_cycles": 2_000_000, "driver_images": int(driver_images),
           "driver_out": str(work / "driver.npz"), "driver_result": str(work / "driver.json"),
           "index_bits": p.index_bits, "n_max": p.n_max}
    kw = dict(verilog=text, toplevel=TOPLEVEL, test_module=TB_MODULE, params=p.describe(),
              simulator=simulator, cache_dir=cache_dir, waves=waves, seed=seed)
    tb, err = {}, []

    def _run():
        try:
            # with driver images, driver_infer runs after coverify in the same simulation
            tb["r"] = run_cocotb(config=cfg, testcase=None if driver_images else "coverify",
                                 **kw)
        except BaseException as e:    # re-raised in the caller's thread
            err.append(e)

    t0 = time.perf_counter()
    th = threading.Thread(target=_run, daemon=True)
    th.start()
    bar = None
    if progress:
        from ..golden.progress import progress as progress_bar

        # tqdm on a terminal, periodic plain lines when the output goes to a file
        bar = progress_bar(total=len(codes), desc=f"coverify ({simulator})", unit="img")
        # until the first image: the simulator build (cached per design), start-up, and the
        # programming of every cell through the port with read-back
        bar.set_postfix_str("build (cached) + start + program and read back")
    done = 0
    while th.is_alive():
        th.join(0.5)
        if bar is not None:
            now = len(prog_file.read_text().split())
            if now and not done:
                bar.set_postfix_str("")
            bar.update(now - done)
            done = now
    if bar is not None:
        bar.update(len(prog_file.read_text().split()) - done)
        bar.close()
    if err:
        raise err[0]
    timings["cocotb_total_s"] = time.perf_counter() - t0
    res = tb["r"].data
    timings["build_dir"] = str(Path(tb["r"].directory).parent)
    if res.get("alarm"):
        raise _alarm(res["alarm"], first_image)
    prog_info = res["programming"]
    timings.update(programming_s=prog_info["program_s"], write_list_load_s=prog_info["load_s"],
                   programming_cycles=prog_info["prog_cycles"], writes=prog_info["writes"],
                   images_s=res["images_s"], sim_wait_s=res["sim_wait_s"],
                   tb_python_s=res["python_s"])
    timings["build_and_start_s"] = (timings["cocotb_total_s"] - res["images_s"]
                                    - prog_info["program_s"])
    raw = dict(np.load(cfg["out"]))

    t0 = time.perf_counter()
    per_pass, averaged, prediction, choices, bad = decode_logs(
        raw, info, T=T, C=C, L=L, n_way=n, index_bits=p.index_bits, total_bits=p.total_bits,
        passes=raw["passes"])
    if not any(m.output == "trace" for m in bad) and choices.max() < hw.N:
        ref, full = _reference(hw_ref, x, choices, adaptive)
        bad += compare("passes", raw["passes"][:, None], ref.passes.numpy()[:, None])
        ran = ref.ran.numpy()[..., None]
        bad += compare("per_pass", per_pass, full.per_pass.numpy() * ran)
        bad += compare("averaged", averaged, ref.averaged.numpy())
        bad += compare("class", prediction[:, None], ref.prediction.numpy()[:, None])
        if trace_layers:
            bad += layer_mismatches(raw, info, geometry, full, ref.passes)
    else:
        bad.append(Mismatch(-1, "trace", "unusable", "see above", "-"))
    timings["check_s"] = time.perf_counter() - t0
    timings["images_per_min"] = 60.0 * len(codes) / (res["images_s"] + timings["check_s"])
    counters = {name: raw["counters"][:, i] for i, name in enumerate(COUNTERS)}
    if reuse and not any(m.output == "trace" for m in bad):
        bad += reuse_count_mismatches(hw, p.R, choices, raw["passes"], counters)
    result = CoverifyResult(
        images=len(codes), mismatches=len(bad), details=bad, cycles=raw["cycles"],
        counters=counters, counter_totals={k: int(v.sum()) for k, v in counters.items()},
        per_pass=per_pass, averaged=averaged, prediction=prediction, choices=choices,
        passes=raw["passes"],
        vfy_errors=prog_info["vfy_errors"], vfy_checked=prog_info["vfy_checked"],
        simulator=simulator, stall=float(stall), timings=timings)
    result.timings["vfy_bad_entries"] = prog_info["vfy_bad_entries"]
    if trace_layers:
        result.act_beats = raw["n_acts"]
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        result.accuracy = 100.0 * float((prediction == lab).mean())
    if float_net is not None and adaptive.rule == "off" and not any(
            m.output == "trace" for m in bad):     # eq. 4 of T passes: not an adaptive run's
        with torch.no_grad():
            f_cls = float_net(x, choices=torch.from_numpy(choices)).prediction.numpy()
        result.float_agreement = 100.0 * float((prediction == f_cls).mean())
    if driver_images:
        result.driver = _check_driver(hw_ref, x[:driver_images], cfg, adaptive)
    return result


def _reference(hw, x, choices: np.ndarray, adaptive: AdaptiveT):
    """(the adaptive reference, the T-pass reference) on the RTL's choices, the passes not run
    filled in (:func:`~spinbayes.sim.coverify_results.fill_not_run`): the rule reads only the
    passes run, and their outputs are compared only where run."""
    full = hw.run(x, torch.from_numpy(fill_not_run(choices)))
    passes = adaptive_passes(full.per_pass, adaptive)
    return AdaptiveOutput(full.per_pass, passes, full.frac_bits), full


def _alarm(alarm: dict, first_image: int = 0):
    """The named error (firmware/alarms.py) of an alarm the testbench recorded."""
    from ..firmware.alarms import alarm_error

    return alarm_error(alarm["health"], alarm["cycles"], first_image + int(alarm["image"]))


def _check_driver(hw, x, cfg, adaptive: AdaptiveT) -> dict:
    """The CoreDriver.infer images (per-cycle Python through the harness's bypass)."""
    info = json.loads(Path(cfg["driver_result"]).read_text())
    if info.get("alarm"):
        raise _alarm(info["alarm"])
    d = np.load(cfg["driver_out"])
    choices = d["choices"].transpose(1, 0, 2, 3)            # (B, L, T, n) -> (L, B, T, n)
    ref, full = _reference(hw, x, choices, adaptive)
    bad = (compare("per_pass", d["per_pass"], full.per_pass.numpy() * ref.ran.numpy()[..., None])
           + compare("averaged", d["averaged"], ref.averaged.numpy())
           + compare("class", d["prediction"][:, None], ref.prediction.numpy()[:, None]))
    return {"images": len(x), "mismatches": len(bad), "details": [asdict(m) for m in bad[:20]],
            "cycles": d["cycles"].tolist(), "images_s": info["images_s"],
            "images_per_min": 60.0 * len(x) / info["images_s"]}
