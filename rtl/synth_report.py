"""Synthesis results: reading the tools' JSON outputs (yosys ``stat -json``, nextpnr
``--report``) and rendering a :func:`spinbayes.rtl.synth.synthesize` result as Markdown tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .synth_tools import DEVICES, SYNTH_TOPS, SynthError

__all__ = ["CELL_FIGURES", "NEXTPNR_FIGURES", "count_cells", "markdown_table",
           "parse_memory_map", "parse_nextpnr_report", "parse_yosys_stat"]

#: nextpnr utilisation entries (BEL types) per figure of the table.
NEXTPNR_FIGURES = {
    "ice40": {"lut": ("ICESTORM_LC",), "bram": ("ICESTORM_RAM", "ICESTORM_SPRAM"),
              "dsp": ("ICESTORM_DSP",)},
    "ecp5": {"lut": ("TRELLIS_COMB",), "ff": ("TRELLIS_FF",), "bram": ("DP16KD",),
             "dsp": ("MULT18X18D", "ALU54B"), "lutram": ("TRELLIS_RAMW",)},
}
#: Post-synthesis cell types (yosys stat) per figure, where nextpnr does not give it.
CELL_FIGURES = {
    "ice40": {"lut": re.compile(r"SB_LUT4$"), "ff": re.compile(r"SB_DFF"),
              "carry": re.compile(r"SB_CARRY$")},
    "ecp5": {"lut": re.compile(r"LUT4$"), "ff": re.compile(r"TRELLIS_FF$"),
             "carry": re.compile(r"CCU2C$")},
    "generic": {"ff": re.compile(r"^\$_.*(DFF|DLATCH|SR_)")},
}
#: Cell types that are not logic: scope markers and the crossbar black boxes.
_NOT_CELLS = re.compile(r"^\$scopeinfo$|^spinbayes_core\.")


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


def count_cells(types: dict, pattern: re.Pattern) -> int:
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


_MEMORY_MAP = re.compile(r"^mapping memory (\S+) via \\?\$__(\w+?)_?$"
                         r"|^using FF mapping for memory (\S+)$", re.M)


def parse_memory_map(log_text: str) -> dict:
    """What yosys's ``memory_libmap`` made of each memory, read from its log lines
    ``mapping memory <module>.<memory> via $__<cell>_`` and ``using FF mapping for memory
    <module>.<memory>``: ``{memory: cell}`` (``DP16KD``, ``TRELLIS_DPR16X4``, ... or ``FF``),
    memory names without the top module's prefix."""
    found = {}
    for m in _MEMORY_MAP.finditer(log_text):
        name = m.group(1) or m.group(3)
        found[name.split(".", 1)[1] if "." in name else name] = m.group(2) or "FF"
    return found


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



def _fmt(v, digits=0) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _seconds(r: dict) -> str:
    """Total seconds of an FPGA entry, with the yosys and nextpnr parts when recorded."""
    if "yosys_seconds" not in r:
        return _fmt(r.get("seconds"), 1)
    return (f"{_fmt(r['seconds'], 1)} ({_fmt(r['yosys_seconds'], 0)} + "
            f"{_fmt(r['nextpnr_seconds'], 0)})")


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
                  "seconds (yosys + nextpnr) |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for top, r in _ordered(targets[target]):
            if "error" in r:
                lines.append(f"| {top} | failed (see synth.json) | - | - | - | - | - | - | - | - |")
                continue
            if not r.get("fits", True):
                lines.append(f"| {top} | fits none of {'/'.join(d for d, _ in DEVICES[target])} | "
                             f"{r['lut']} (LUT4) | {r['ff']} | {r['carry']} | - | - | - | - | "
                             f"{_seconds(r)} |")
                continue
            lines.append(f"| {top} | {r['device']} | {r['lut']} | {r['ff']} | {r['carry']} | "
                         f"{r['bram']} | {r['dsp']} | {_fmt(r['fmax_mhz'], 1)} | "
                         f"{'yes' if r['meets'] else 'no'} | {_seconds(r)} |")
        notes = [f"- {top}: {r.get('mapper') or r.get('error', '').splitlines()[0]}"
                 for top, r in _ordered(targets[target]) if r.get("mapper") or "error" in r]
        notes += [f"- {top} device: {'; '.join(r['tried'])}"
                  for top, r in _ordered(targets[target]) if len(r.get("tried", ())) > 1]
        notes += [f"- {top} memories: " + ", ".join(f"{k} -> {v}" for k, v in
                                                    sorted(r["memories"].items()))
                  for top, r in _ordered(targets[target]) if r.get("memories")]
        lines += ["", *notes, ""] if notes else [""]
    lines.append("Tools: " + "; ".join(f"{k}: {tools[k]}" for k in sorted(tools)) + ".")
    return "\n".join(lines) + "\n"
