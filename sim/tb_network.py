"""cocotb testbench of the whole network on :class:`~spinbayes.sim.harness.CoverifyHarness`.

Configuration (SPINBAYES_TB_CONFIG, written by :func:`spinbayes.sim.coverify.run_images`):
``data`` (an npz with the write list ``wl_sel/wl_a/wl_b/wl_c/wl_data``, the input ``codes``
(B, layer 0's input size) and ``T``, ``C``, ``L``, ``n_way``), ``out`` (npz of raw
results), ``progress`` (a file that gets one line per finished image), ``stall_thr``,
``stall_seed``, ``verify``, ``load`` (``"vpi"``: write list and images by VPI memory writes,
``"port"``: one word per cycle on ``h_wl_*`` / ``h_img_*``), ``max_cycles`` (per image),
``act_log`` (entries of the harness's activation-trace log; 0: none); for testcase
``driver_infer``: ``driver_images``, ``driver_out`` (npz), ``driver_result`` (JSON),
``index_bits``, ``n_max``.

Python never acts per cycle in ``coverify``: it fills the write list, starts the player, waits
for ``h_prog_done``; per image it fills ``image``, pulses ``h_start``, waits for ``h_done`` and
reads the logs and the counters (read by the harness through the core's read port). Checking
against the integer reference happens in the parent process, in a batch. ``driver_infer``
instead runs the unchanged firmware driver (CoreDriver over CocotbBus, one Python step per
cycle) through the harness's bypass.
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from spinbayes.rtl.regs import COUNTERS
from spinbayes.sim.harness import ERRLOG, pack_write

EXTERNAL_INPUTS = ("h_bypass", "h_wl_wen", "h_wl_waddr", "h_wl_wdata", "h_wl_count",
                   "h_prog_start", "h_verify", "h_img_wen", "h_img_waddr", "h_img_wdata",
                   "h_img_len", "h_start", "h_stall_thr", "h_stall_seed", "h_stall_load",
                   "h_snap", "prog_en", "prog_sel", "prog_a", "prog_b", "prog_c", "prog_data",
                   "vfy_k", "vfy_row", "vfy_col", "in_data", "in_valid", "out_ready", "rd_en",
                   "rd_sel", "rd_index")


#: The harness clock period (ns).
CLOCK_NS = 10

#: Set by ``coverify`` once the core is programmed: ``driver_infer`` run after it in the same
#: simulation then skips reset and programming (cocotb tests share the simulator state).
_STATE = {"programmed": None, "alarm": None}


def _config():
    with open(os.environ["SPINBAYES_TB_CONFIG"]) as f:
        return json.load(f)


async def _reset(dut, cfg):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for name in EXTERNAL_INPUTS:
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    dut.h_stall_thr.value = int(cfg.get("stall_thr", 0))
    dut.h_stall_seed.value = int(cfg.get("stall_seed", 1)) & 0xFFFFFFFF
    dut.h_stall_load.value = 1
    await RisingEdge(dut.clk)
    dut.h_stall_load.value = 0


async def _program(dut, d, cfg) -> dict:
    """Play the write list into the programming port and read every cell back, in chunks of
    the harness's write-list depth (each chunk: fill, play, read its cells back)."""
    words = [pack_write(*w) for w in zip(d["wl_sel"].tolist(), d["wl_a"].tolist(),
                                         d["wl_b"].tolist(), d["wl_c"].tolist(),
                                         d["wl_data"].tolist())]
    depth = int(cfg["wlist_depth"])
    load = cfg.get("load", "vpi")
    info = {"writes": len(words), "load_s": 0.0, "load": load, "chunks": 0, "prog_cycles": 0,
            "vfy_checked": 0, "vfy_errors": 0, "vfy_bad_entries": []}
    t0 = time.perf_counter()
    for start in range(0, len(words), depth):
        chunk = words[start:start + depth]
        t1 = time.perf_counter()
        if load == "vpi":
            mem = dut.wlist
            for i, w in enumerate(chunk):
                mem[i].value = w
            await RisingEdge(dut.clk)
        else:
            dut.h_wl_wen.value = 1
            for i, w in enumerate(chunk):
                dut.h_wl_waddr.value = i
                dut.h_wl_wdata.value = w
                await RisingEdge(dut.clk)
            dut.h_wl_wen.value = 0
        info["load_s"] += time.perf_counter() - t1
        dut.h_wl_count.value = len(chunk)
        dut.h_verify.value = int(bool(cfg.get("verify", True)))
        dut.h_prog_start.value = 1
        await RisingEdge(dut.clk)
        dut.h_prog_start.value = 0
        await RisingEdge(dut.h_prog_done)
        await ReadOnly()
        errors = int(dut.h_vfy_errors.value)
        room = ERRLOG - len(info["vfy_bad_entries"])
        info["vfy_bad_entries"] += [start + int(dut.errlog[i].value)
                                    for i in range(min(errors, ERRLOG, room))]
        info["vfy_errors"] += errors
        info["vfy_checked"] += int(dut.h_vfy_checked.value)
        info["prog_cycles"] += int(dut.h_prog_cycles.value)
        info["chunks"] += 1
        await RisingEdge(dut.clk)
    info["program_s"] = time.perf_counter() - t0
    return info


async def _load_image(dut, codes, load: str) -> None:
    """Write one image's codes into the harness's ``image`` memory."""
    if load == "vpi":
        mem = dut.image
        for i, c in enumerate(codes.tolist()):
            mem[i].value = c
        return
    dut.h_img_wen.value = 1
    for i, c in enumerate(codes.tolist()):
        dut.h_img_waddr.value = i
        dut.h_img_wdata.value = c
        await RisingEdge(dut.clk)
    dut.h_img_wen.value = 0


async def _snapshot(dut) -> list[int]:
    """The counters now (core idle), read by the harness through the core's read port."""
    dut.h_snap.value = 1
    await RisingEdge(dut.clk)
    dut.h_snap.value = 0
    await RisingEdge(dut.h_snapped)
    await ReadOnly()
    values = [int(dut.counters[i].value) for i in range(len(COUNTERS))]
    await RisingEdge(dut.clk)
    return values


async def _alarm(dut, image: int, layers: int) -> dict:
    """The harness stopped ``image`` on ALARM: its cycles so far and the health registers of
    every layer in use, read through the bypass with the firmware driver's reads."""
    from spinbayes.firmware.alarms import health_json
    from spinbayes.firmware.driver import CocotbBus, CoreDriver

    await ReadOnly()
    cycles = int(dut.h_cycles.value)
    await RisingEdge(dut.clk)
    dut.h_bypass.value = 1
    health = await CoreDriver(CocotbBus(dut)).health(layers)
    dut.h_bypass.value = 0
    return {"image": image, "cycles": cycles, "health": health_json(health)}


@cocotb.test()
async def coverify(dut):
    """Program through the player, run every image, log raw results for the batch check."""
    cfg = _config()
    d = np.load(cfg["data"])
    await _reset(dut, cfg)
    prog = await _program(dut, d, cfg)
    _STATE["programmed"] = prog
    codes = d["codes"]
    B, size = codes.shape
    beat_depth, trace_depth = int(cfg["beat_depth"]), int(cfg["trace_depth"])
    act_log = int(cfg.get("act_log", 0))
    acts = np.zeros((B, act_log), dtype=object)
    n_acts = np.zeros(B, dtype=np.int64)
    beats = np.zeros((B, beat_depth), dtype=np.int64)
    trace = np.zeros((B, trace_depth), dtype=np.int64)
    n_beats = np.zeros(B, dtype=np.int64)
    n_trace = np.zeros(B, dtype=np.int64)
    cycles = np.zeros(B, dtype=np.int64)
    counters = np.zeros((B + 1, len(COUNTERS)), dtype=np.int64)
    counters[0] = await _snapshot(dut)
    passes = np.zeros(B, dtype=np.int64)
    max_cycles = int(cfg.get("max_cycles", 1_000_000))
    t_sim, t_py = 0.0, 0.0
    alarmed = None
    progress = cfg.get("progress")
    dut.h_img_len.value = size
    t_all = time.perf_counter()
    for b in range(B):
        t0 = time.perf_counter()
        await _load_image(dut, codes[b], cfg.get("load", "vpi"))
        dut.h_start.value = 1
        await RisingEdge(dut.clk)
        dut.h_start.value = 0
        t1 = time.perf_counter()
        # a Timer, not ClockCycles: ClockCycles counts edges in Python (one wake-up per cycle)
        timeout = Timer(max_cycles * CLOCK_NS, unit="ns")
        alarm = RisingEdge(dut.h_alarm)
        fired = await First(RisingEdge(dut.h_done), alarm, timeout)
        assert fired is not timeout, f"image {b}: no class beat within {max_cycles} cycles"
        if fired is alarm:
            alarmed = await _alarm(dut, b, int(d["L"]))
            B = b
            break
        await ReadOnly()
        t2 = time.perf_counter()
        n_beats[b], n_trace[b] = int(dut.h_n_beats.value), int(dut.h_n_trace.value)
        cycles[b] = int(dut.h_cycles.value)
        bm, tm = dut.beats, dut.trace
        beats[b, :n_beats[b]] = [int(bm[i].value) for i in range(int(n_beats[b]))]
        trace[b, :n_trace[b]] = [int(tm[i].value) for i in range(int(n_trace[b]))]
        if act_log:
            n_acts[b] = int(dut.h_n_acts.value)
            am = dut.acts
            acts[b, :min(n_acts[b], act_log)] = [int(am[i].value)
                                                   for i in range(min(n_acts[b], act_log))]
        counters[b + 1] = [int(dut.counters[i].value) for i in range(len(COUNTERS))]
        passes[b] = int(dut.counters[len(COUNTERS)].value)         # ReadReg.PASSES_RUN
        await RisingEdge(dut.clk)
        t3 = time.perf_counter()
        t_sim += t2 - t1
        t_py += (t1 - t0) + (t3 - t2)
        if progress:
            with open(progress, "a") as f:
                f.write(f"{b + 1}\n")
    wall = time.perf_counter() - t_all
    np.savez(cfg["out"] + ".tmp.npz", beats=beats, trace=trace, n_beats=n_beats,
             n_trace=n_trace, cycles=cycles, counters=np.diff(counters, axis=0),
             acts=acts.astype(str), n_acts=n_acts, passes=passes)
    os.replace(cfg["out"] + ".tmp.npz", cfg["out"])
    result = {"programming": prog, "images": B, "images_s": wall, "sim_wait_s": t_sim,
              "python_s": t_py, "counter_names": list(COUNTERS), "alarm": alarmed}
    _STATE["alarm"] = alarmed
    with open(os.environ["SPINBAYES_TB_RESULT"], "w") as f:
        json.dump(result, f)


@cocotb.test()
async def driver_infer(dut):
    """The unchanged firmware driver (CoreDriver over CocotbBus) on the harness's bypass; an
    alarm it raises is written to ``driver_result`` for the parent process."""
    from spinbayes.firmware.alarms import CoreAlarmError, health_json
    from spinbayes.firmware.driver import CocotbBus, CoreDriver

    cfg = _config()
    d = np.load(cfg["data"])
    if _STATE["alarm"] is not None:        # the core is stopped mid-image with an alarm
        return
    if _STATE["programmed"] is None:
        await _reset(dut, cfg)
        prog = await _program(dut, d, cfg)
    else:
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        prog = dict(_STATE["programmed"], reused=True)
    dut.h_bypass.value = 1
    await RisingEdge(dut.clk)
    bus = CocotbBus(dut, fields={"trace_indices": (int(cfg["index_bits"]),
                                                   int(cfg["n_max"]))})
    drv = CoreDriver(bus)
    shape = SimpleNamespace(T=int(d["T"]), n_outputs=int(d["C"]))
    out = {"per_pass": [], "averaged": [], "prediction": [], "choices": [], "cycles": []}
    t0 = time.perf_counter()
    for b in range(int(cfg.get("driver_images", 1))):
        try:
            r = await drv.infer(d["codes"][b], shape, int(d["L"]), int(d["n_way"]))
        except CoreAlarmError as e:
            with open(cfg["driver_result"], "w") as f:
                json.dump({"alarm": {"image": b, "cycles": e.cycles,
                                     "health": health_json(e.health)}}, f)
            return
        out["per_pass"].append(r.per_pass)
        out["averaged"].append(r.averaged)
        out["prediction"].append(r.prediction)
        out["choices"].append(r.choices)
        out["cycles"].append(r.cycles)
    wall = time.perf_counter() - t0
    np.savez(cfg["driver_out"] + ".tmp.npz", **{k: np.asarray(v) for k, v in out.items()})
    os.replace(cfg["driver_out"] + ".tmp.npz", cfg["driver_out"])
    with open(cfg["driver_result"], "w") as f:
        json.dump({"programming": prog, "images": len(out["cycles"]), "images_s": wall}, f)
