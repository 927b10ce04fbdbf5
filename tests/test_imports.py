"""The package's import structure: the hardware layers load without torch, and no module
imports itself through a chain of others.

* torch: rtl/, firmware/, the block reference models, every cocotb testbench (sim/tb_*.py,
  sim/harness.py) and the other sim/ helpers are imported in one fresh interpreter with an
  import hook that records who asked for torch; the failure message names that chain.
  sim/coverify.py (the orchestrator that runs the torch-built integer network) is exempt.
* golden/contract.py, the integer contract those layers share, loads the standard library and
  numpy only.
* cycles: every import statement of every module (module level and inside functions, absolute
  ``spinbayes.*`` and relative; not those under ``if TYPE_CHECKING:``, which never run) is an
  edge of a graph over the project's modules; the graph must have no cycle.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> import name (pyproject.toml's package-dir).
PACKAGES = {"spinbayes": "spinbayes", "golden": "spinbayes.golden", "rtl": "spinbayes.rtl",
            "sim": "spinbayes.sim", "firmware": "spinbayes.firmware"}
#: Allowed to import torch: it co-verifies the torch-built integer network.
TORCH_EXEMPT = {"spinbayes.sim.coverify"}


def module_files() -> dict[str, Path]:
    """Every project module name -> its file."""
    out = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).glob("*.py")):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


def hardware_modules() -> list[str]:
    """The modules that must load without torch."""
    mods = module_files()
    names = ["spinbayes.rtl", "spinbayes.sim.models", "spinbayes.firmware"]
    names += [m for m in mods if m.startswith(("spinbayes.rtl.", "spinbayes.firmware.",
                                               "spinbayes.sim."))]
    names.append("spinbayes.golden.contract")
    return [m for m in dict.fromkeys(names) if m not in TORCH_EXEMPT]


_TORCH_PROBE = r"""
import importlib, json, sys, traceback

ROOT, MODULES = sys.argv[1], json.loads(sys.argv[2])
first = {}


class Spy:
    '''Records the project frames on the stack when torch is first looked up.'''

    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first:
            first["chain"] = [f"{f.filename[len(ROOT) + 1:]}:{f.lineno} ({f.name})"
                              for f in traceback.extract_stack()[:-1]
                              if f.filename.startswith(ROOT + "/")]
        return None


sys.meta_path.insert(0, Spy())
for m in MODULES:
    importlib.import_module(m)
    if "torch" in sys.modules:
        print(json.dumps({"module": m, **first}))
        break
else:
    print(json.dumps({"module": None, "imported": len(MODULES)}))
"""


def test_hardware_layers_do_not_import_torch():
    mods = hardware_modules()
    assert "spinbayes.sim.tb_aac" in mods and "spinbayes.sim.harness" in mods
    assert "spinbayes.rtl.params" in mods and "spinbayes.firmware.compiler" in mods
    r = subprocess.run([sys.executable, "-c", _TORCH_PROBE, str(ROOT), json.dumps(mods)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["module"] is None, (
        f"importing {res['module']} loads torch; the import chain (outermost first):\n  "
        + "\n  ".join(res.get("chain", ["(not recorded)"])))
    assert res["imported"] == len(mods)


def test_contract_imports_numpy_and_stdlib_only():
    probe = ("import sys; before = set(sys.modules); import spinbayes.golden.contract; "
             "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
             "print(' '.join(sorted(m for m in new if m not in sys.stdlib_module_names)))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(r.stdout.split()) <= {"numpy", "spinbayes"}, r.stdout


# --- import cycles -------------------------------------------------------------------------------

def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node that runs (skips ``if TYPE_CHECKING:`` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(node, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Project modules an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        names: list[str] = []
    else:
        if node.level:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if is_package else 0)
            base = ".".join(parts[:keep])
            bases = [f"{base}.{node.module}" if node.module else base]
        else:
            bases = [node.module]
        names = [a.name for a in node.names]
    out = set()
    for base in bases:
        if base in known:
            out.add(base)
        for name in names:
            if f"{base}.{name}" in known:
                out.add(f"{base}.{name}")
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return out - ancestors - {module}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.stem == "__init__"
        graph[mod] = set().union(*(_targets(n, mod, is_pkg, known) for n in _imports(tree)))
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per strongly connected component with more than one module
    (Tarjan), each starting at its alphabetically first module."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        # shortest path back to start inside the component (BFS)
        prev, frontier, found = {start: None}, [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & comp):
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path, v = [], found
        while v is not None:
            path.append(v)
            v = prev[v]
        cycles.append([*reversed(path), start])
    return sorted(cycles)


def test_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert find_cycles(g) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve():
    known = {"spinbayes", "spinbayes.cli", "spinbayes.cli_sim", "spinbayes.golden",
             "spinbayes.golden.contract", "spinbayes.golden.cells", "spinbayes.rtl",
             "spinbayes.rtl.params"}

    def targets(src, mod, pkg=False):
        return _targets(ast.parse(src).body[0], mod, pkg, known)

    assert targets("from ..golden.contract import bits_for", "spinbayes.rtl.params") == {
        "spinbayes.golden.contract"}
    assert targets("from .cells import MAX_LEVEL", "spinbayes.golden.contract") == {
        "spinbayes.golden.cells"}
    assert targets("from . import cli", "spinbayes.cli_sim") == {"spinbayes.cli"}
    assert targets("from .contract import x", "spinbayes.golden", pkg=True) == {
        "spinbayes.golden.contract"}
    assert targets("from .golden import contract", "spinbayes.cli") == {
        "spinbayes.golden", "spinbayes.golden.contract"}
    assert targets("import spinbayes.rtl.params", "spinbayes.cli") == {"spinbayes.rtl.params"}
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from spinbayes.cli import x\nelse:\n    import spinbayes.rtl\n")
    assert {ast.unparse(n) for n in _imports(tree)} == {"from typing import TYPE_CHECKING",
                                                        "import spinbayes.rtl"}


def test_no_import_cycles():
    graph = import_graph()
    assert "spinbayes.golden.contract" in graph["spinbayes.rtl.params"]
    assert len(graph) > 50
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_one_default_of_R():
    """R (rows sensed per read) is defaulted once, golden.contract.ROWS_PER_READ: no parameter
    or keyword argument named R takes a literal (``R: int = 4``, ``R=4``)."""
    literal = re.compile(r"\bR(?:\s*:\s*int\s*=\s*|=)\d")
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
             for path in module_files().values()
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if literal.search(line.split("#")[0])]
    assert not found, "literal defaults of R (use ROWS_PER_READ):\n" + "\n".join(found)
