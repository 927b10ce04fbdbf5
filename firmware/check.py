"""Whether a firmware image fits the design it names: what the core itself never checks.

The core accepts any write and runs whatever it holds: a zero pass count, a layer count the
design does not have, a layer that reaches past its memory, a missing seed or threshold all
give wrong results or a hang, not an error. :func:`check_image` proves, before anything is
programmed, that an image's descriptor writes, crossbar cells and manifest describe one network
that the design (the manifest's :class:`~spinbayes.rtl.params.RtlParams`) runs as compiled:

1. **every write** within its register's legal range for the design (the table of
   :func:`spinbayes.rtl.reg_ranges.register_ranges`), no register written twice, no crossbar cell
   among the descriptor writes;
2. **exactly the writes the network needs** for ``N_LAYERS`` layers: the twelve layer
   registers (rows, outputs, group base, input bits and the eight of the geometry), every
   hidden output's sign and thresholds, every class's scale and offset, an RNG seed for
   every device of every layer's arbiter, and ``N_LAYERS``, ``PASSES``, ``N_WAY``,
   ``RNG_THRESHOLD`` and the four RNG health cutoffs (``HEALTH_*``, low watermark <= high);
   nothing for layers, outputs or classes the network does not have;
3. **layer geometry**: each layer's row groups inside the crossbar memory and disjoint from the
   other layers'; its geometry consistent (golden/geometry.py ``LayerGeometry``: the window
   fits the padded input, the pooling its outputs, a dense layer is 1 x 1, rows = C_in*k*k,
   the output layer dense); its input what the previous layer hands on (a dense layer's rows
   the previous dense layer's outputs, a convolution's C_in x H x W the previous one's pooled
   outputs, a dense layer after a convolution the flattened size); the input of a first
   convolution within ``image_depth``, a hidden convolution's pooled outputs within
   ``act_depth`` pixels of ``act_channels`` channels; the input bits of layer 0 within ``A_in``
   and of later layers = ``A``, the classes within ``classes_max``;
4. **cells**: every level within the range of a Q-bit weight split over ``k_cells`` cells,
   every weight code (the sum of its cells) within +-(2^(Q-1) - 1), and 0 outside every
   layer's rows and columns;
5. **the manifest against the descriptor**: its layer table, ``T`` = ``PASSES``, ``n_outputs``
   = the last layer's ``LAYER_OUTS`` (integers, not floats or booleans), ``group_base``,
   the RNG ``seed`` within the RNG's range and every ``RNG_SEED`` write derived from it, and
   ``extra``.

Each stage reports all its problems (the first few) in one :class:`FirmwareImageError`,
every problem prefixed with the file it is in.
"""

from __future__ import annotations

import numpy as np

from ..golden.arbiter import device_seed
from ..golden.geometry import LayerGeometry
from ..rtl.reg_ranges import register_ranges, write_name, write_problem
from ..rtl.regs import GEOMETRY_REGS, AdaptRule, LayerKind, Reg, as_data, check_seed
from .compiler import memory_problems

__all__ = ["DESCRIPTOR_FILE", "MANIFEST_FILE", "FirmwareImageError", "check_image",
           "crossbar_file", "layer_table"]

MANIFEST_FILE = "manifest.json"
DESCRIPTOR_FILE = "descriptor.hex"
#: Problems listed in one error (the count of the others is given).
MAX_LISTED = 5
#: The per-layer registers, with their key in :func:`layer_table`.
LAYER_REGS = {Reg.LAYER_ROWS: "rows", Reg.LAYER_OUTS: "outputs",
              Reg.LAYER_GROUP_BASE: "group_base", Reg.LAYER_IN_BITS: "in_bits",
              **{r: r.name.lower().removeprefix("layer_") for r in GEOMETRY_REGS}}
#: Registers written once per network.
GLOBAL_REGS = (Reg.N_LAYERS, Reg.PASSES, Reg.N_WAY, Reg.RNG_THRESHOLD, Reg.HEALTH_RCT_CUTOFF,
               Reg.HEALTH_APT_CUTOFF, Reg.HEALTH_BIAS_LOW, Reg.HEALTH_BIAS_HIGH)


class FirmwareImageError(ValueError):
    """A firmware image is missing, truncated, corrupt, or made for another design."""


def crossbar_file(k: int) -> str:
    return f"crossbar_{k}.hex"


def layer_table(descriptor) -> list[dict]:
    """Per layer: rows, outputs, group_base, in_bits and the geometry (kind, c_in, h, w, k,
    stride, padding, pool), as the descriptor writes them."""
    n_layers = next((w.data for w in reversed(descriptor) if w.sel == Reg.N_LAYERS), None)
    table: dict[int, dict] = {}
    for w in descriptor:
        if w.sel in LAYER_REGS:
            table.setdefault(w.c, {})[LAYER_REGS[w.sel]] = w.data
    count = n_layers if n_layers is not None else len(table)
    return [{"layer": i, **table.get(i, {})} for i in range(count)]


def _raise(problems: list[str]) -> None:
    if problems:
        more = len(problems) - MAX_LISTED
        raise FirmwareImageError("; ".join(problems[:MAX_LISTED])
                                 + (f"; ... and {more} more" if more > 0 else ""))


def check_image(descriptor, cells: np.ndarray, manifest: dict, params) -> None:
    """Raise :class:`FirmwareImageError` unless the image (its descriptor writes, cell levels
    (N, groups_total * R, cols_max) and manifest) fits the design ``params`` (checks 1-5 of
    the module docstring)."""
    ranges = register_ranges(params)
    lines = _check_writes(descriptor, ranges)
    layers = _check_needed(lines, ranges, params)
    _check_geometry(layers, params, lines.get((Reg.REUSE, 0, 0, 0)))
    _check_cells(cells, layers, params)
    _check_manifest(manifest, descriptor, lines, layers, ranges, params)


def _check_writes(descriptor, ranges) -> dict[tuple, tuple[int, int]]:
    """Check 1; returns (reg, a, b, c) -> (line, data)."""
    problems, lines = [], {}
    for i, w in enumerate(descriptor, 1):
        where = f"{DESCRIPTOR_FILE}: line {i}"
        problem = write_problem(ranges, w.sel, w.a, w.b, w.c, w.data)
        key = (w.sel, w.a, w.b, w.c)
        if problem:
            problems.append(f"{where}: {problem}")
        elif w.sel == Reg.XBAR_CELL:
            problems.append(f"{where}: XBAR_CELL writes belong in the crossbar files")
        elif key in lines:
            problems.append(f"{where}: {write_name(ranges, *key)} written again (first on "
                            f"line {lines[key][0]})")
        else:
            lines[key] = (i, w.data)
    _raise(problems)
    return lines


def _compare_keys(lines, ranges, regs, needed: list[tuple], where: str) -> list[str]:
    """Problems for the needed keys without a write, and for the written keys of the registers
    ``regs`` that are not needed (``where`` says why they are needed)."""
    present = set(lines)
    problems = [f"{DESCRIPTOR_FILE}: no {write_name(ranges, *k)} write ({where})"
                for k in needed if k not in present]
    want = set(needed)
    problems += [f"{DESCRIPTOR_FILE}: line {lines[k][0]}: {write_name(ranges, *k)} is not "
                 f"part of the network ({where})"
                 for k in sorted(present, key=lambda k: lines[k][0])
                 if k[0] in regs and k not in want]
    return problems


def _check_needed(lines, ranges, p) -> list[dict]:
    """Check 2; returns the layer table [{rows, outputs, group_base, in_bits}]."""
    glob = [(r, 0, 0, 0) for r in GLOBAL_REGS]
    _raise(_compare_keys(lines, ranges, GLOBAL_REGS, glob, "written once per network"))
    (_, low), (line, high) = (lines[(r, 0, 0, 0)] for r in (Reg.HEALTH_BIAS_LOW,
                                                            Reg.HEALTH_BIAS_HIGH))
    if low > high:
        _raise([f"{DESCRIPTOR_FILE}: line {line}: HEALTH_BIAS_HIGH={high} is below "
                f"HEALTH_BIAS_LOW={low}: every bias window would fail"])
    _raise(_adaptive_problems(lines, ranges))
    L = lines[(Reg.N_LAYERS, 0, 0, 0)][1]
    per_layer = [(r, 0, 0, i) for i in range(L) for r in LAYER_REGS]
    _raise(_compare_keys(lines, ranges, LAYER_REGS, per_layer, f"N_LAYERS={L}"))
    layers = [{name: lines[(r, 0, 0, i)][1] for r, name in LAYER_REGS.items()}
              for i in range(L)]
    outs = [lay["outputs"] for lay in layers]
    hidden = [(Reg.SIGN, j, 0, i) for i in range(L - 1) for j in range(outs[i])]
    hidden += [(Reg.THRESHOLD, j, m, i) for i in range(L - 1) for j in range(outs[i])
               for m in range(p.levels)]
    last = [(r, j, 0, 0) for j in range(outs[-1]) for r in (Reg.SCALE, Reg.OFFSET)]
    seeds = [(Reg.RNG_SEED, dev, 0, i) for i in range(L) for dev in range(p.code_bits)]
    _raise(_compare_keys(lines, ranges, (Reg.SIGN, Reg.THRESHOLD), hidden,
                         f"hidden layers with {outs[:-1]} outputs")
           + _compare_keys(lines, ranges, (Reg.SCALE, Reg.OFFSET), last, f"{outs[-1]} classes")
           + _compare_keys(lines, ranges, (Reg.RNG_SEED,), seeds,
                           f"{L} layers of {p.code_bits} RNG devices"))
    return layers


def _adaptive_problems(lines, ranges) -> list[str]:
    """Adaptive T: with ``ADAPT_RULE`` on, ``ADAPT_T_MIN``, ``ADAPT_THRESHOLD`` and
    ``ADAPT_SPAN`` written; T_min at most ``PASSES`` (T_max)."""
    problems = []
    rule = lines.get((Reg.ADAPT_RULE, 0, 0, 0))
    if rule is not None and rule[1] != AdaptRule.OFF:
        problems += [f"{DESCRIPTOR_FILE}: no {r.name} write (ADAPT_RULE="
                     f"{AdaptRule(rule[1]).name} on line {rule[0]})"
                     for r in (Reg.ADAPT_T_MIN, Reg.ADAPT_THRESHOLD, Reg.ADAPT_SPAN)
                     if (r, 0, 0, 0) not in lines]
    t_min, passes = lines.get((Reg.ADAPT_T_MIN, 0, 0, 0)), lines[(Reg.PASSES, 0, 0, 0)][1]
    if t_min is not None and t_min[1] > passes:
        problems.append(f"{DESCRIPTOR_FILE}: line {t_min[0]}: ADAPT_T_MIN={t_min[1]} above "
                        f"PASSES={passes} (T_min must lie in 1..T_max)")
    return problems


def _geometry(lay: dict, last: bool, p) -> LayerGeometry:
    """The layer's LayerGeometry from its descriptor values (ValueError if inconsistent)."""
    kind = "conv2d" if lay["kind"] == LayerKind.CONV2D else "linear"
    return LayerGeometry(kind, lay["c_in"], lay["h"], lay["w"], lay["k"], lay["stride"],
                         lay["padding"], lay["pool"], lay["outputs"], lay["in_bits"],
                         0 if last else p.A, last)


def _input_problem(i: int, rows: int, g: LayerGeometry, prev: LayerGeometry) -> str | None:
    """Why layer i (``rows`` rows) does not read what layer i - 1 hands on, or None."""
    if prev.kind == "linear":
        if g.kind != "linear" or rows != prev.outputs:
            return (f"{rows} rows, layer {i - 1} has {prev.outputs} outputs (its outputs are "
                    f"the next layer's inputs)")
        return None
    shape = (prev.outputs, prev.H_pool, prev.W_pool)
    if g.kind == "conv2d" and (g.C_in, g.H, g.W) != shape:
        return (f"input {g.C_in}x{g.H}x{g.W}, layer {i - 1} writes {shape[0]}x{shape[1]}x"
                f"{shape[2]}")
    if g.kind == "linear" and g.C_in != prev.out_size:
        return (f"{g.C_in} inputs, layer {i - 1} writes {prev.out_size} activations "
                f"(flattened {shape[0]}x{shape[1]}x{shape[2]})")
    return None


def _check_geometry(layers: list[dict], p, reuse=None) -> None:
    """Check 3 (``reuse``: the (line, value) of the REUSE write, if any)."""
    problems, spans, geoms = [], [], []
    for i, lay in enumerate(layers):
        where = f"{DESCRIPTOR_FILE}: layer {i}"
        groups = -(-lay["rows"] // p.R)
        end = lay["group_base"] + groups
        if end > p.groups_total:
            problems.append(f"{where}: group base {lay['group_base']} + {groups} groups of "
                            f"{lay['rows']} rows exceed groups_total={p.groups_total}")
        for j, (lo, hi) in enumerate(spans):
            if lay["group_base"] < hi and lo < end:
                problems.append(f"{where}: row groups {lay['group_base']}..{end - 1} overlap "
                                f"layer {j}'s {lo}..{hi - 1}")
        spans.append((lay["group_base"], end))
        if i == 0 and lay["in_bits"] > p.A_in:
            problems.append(f"{where}: {lay['in_bits']} input bits, the design's input codes "
                            f"have A_in={p.A_in}")
        if i > 0 and lay["in_bits"] != p.A:
            problems.append(f"{where}: {lay['in_bits']} input bits, the activations have "
                            f"A={p.A}")
        try:
            g = _geometry(lay, i == len(layers) - 1, p)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            geoms.append(None)
            continue
        geoms.append(g)
        prev = geoms[i - 1] if i > 0 else None
        if prev is not None:
            problem = _input_problem(i, lay["rows"], g, prev)
            if problem:
                problems.append(f"{where}: {problem}")
        if g.rows != lay["rows"]:
            problems.append(f"{where}: {lay['rows']} rows, its geometry has C_in*k*k = "
                            f"{g.rows}")
        if g.kind == "conv2d" and g.is_output:
            problems.append(f"{where}: the output layer must be dense, not a convolution")
        if p.conv:
            problems += [f"{DESCRIPTOR_FILE}: {m}" for m in memory_problems(i, g, prev, p)]
        if i == 0 and reuse is not None and reuse[1] and (
                g.positions > p.reuse_positions or g.outputs > p.reuse_outputs):
            problems.append(f"{DESCRIPTOR_FILE}: line {reuse[0]}: REUSE=1, but layer 0 has "
                            f"{g.positions} positions of {g.outputs} outputs and the reuse "
                            f"cache holds reuse_positions={p.reuse_positions} of "
                            f"reuse_outputs={p.reuse_outputs}")
    if layers[-1]["outputs"] > p.classes_max:
        problems.append(f"{DESCRIPTOR_FILE}: layer {len(layers) - 1}: {layers[-1]['outputs']} "
                        f"classes exceed classes_max={p.classes_max}")
    _raise(problems)


def _check_cells(cells: np.ndarray, layers: list[dict], p) -> None:
    """Check 4."""
    level = register_ranges(p)[Reg.XBAR_CELL]["data"]
    k, q_max = p.k_cells, 2 ** (p.Q - 1) - 1
    problems = []
    cells = np.asarray(cells, dtype=np.int64)
    for kk, r, c in np.argwhere(np.abs(cells) > level.hi)[:MAX_LISTED + 1]:
        problems.append(f"{crossbar_file(kk)}: row {r}, cell column {c}: level "
                        f"{int(cells[kk, r, c])} outside {level.lo}..{level.hi} "
                        f"({level.bound}, {k} cells per weight)")
    used = np.zeros(cells.shape[1:], dtype=bool)
    for i, lay in enumerate(layers):
        r0, rows, outs = lay["group_base"] * p.R, lay["rows"], lay["outputs"]
        used[r0:r0 + rows, :outs * k] = True
        codes = cells[:, r0:r0 + rows, :outs * k].reshape(
            cells.shape[0], rows, outs, k).sum(-1)
        for kk, r, j in np.argwhere(np.abs(codes) > q_max)[:MAX_LISTED + 1]:
            problems.append(f"{crossbar_file(kk)}: layer {i}, row {r0 + r} (input {r}), "
                            f"output {j} (cell columns {j * k}..{j * k + k - 1}): weight code "
                            f"{int(codes[kk, r, j])} outside -{q_max}..{q_max} (Q={p.Q})")
    for kk, r, c in np.argwhere((cells != 0) & ~used)[:MAX_LISTED + 1]:
        problems.append(f"{crossbar_file(kk)}: row {r}, cell column {c}: level "
                        f"{int(cells[kk, r, c])} outside every layer's rows and columns "
                        f"(must be 0)")
    _raise(problems)


def _manifest_int(manifest: dict, key: str) -> int:
    v = manifest.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise FirmwareImageError(f"{MANIFEST_FILE}: {key} must be an integer, not {v!r}")
    return v


def _check_manifest(manifest: dict, descriptor, lines, layers, ranges, p) -> None:
    """Check 5."""
    m = MANIFEST_FILE
    if layer_table(descriptor) != manifest.get("layers"):
        raise FirmwareImageError(f"{DESCRIPTOR_FILE}: its layer writes disagree with the "
                                 f"manifest's layer table")
    problems = []
    T, n_outputs = _manifest_int(manifest, "T"), _manifest_int(manifest, "n_outputs")
    passes = lines[(Reg.PASSES, 0, 0, 0)][1]
    if T != passes:
        problems.append(f"{m}: T={T}, but {DESCRIPTOR_FILE} writes PASSES={passes}")
    if n_outputs != layers[-1]["outputs"]:
        problems.append(f"{m}: n_outputs={n_outputs}, but {DESCRIPTOR_FILE} writes "
                        f"LAYER_OUTS={layers[-1]['outputs']} for the last layer")
    bases = [lay["group_base"] for lay in layers]
    if manifest.get("group_base") != bases:
        problems.append(f"{m}: group_base {manifest.get('group_base')!r}, but "
                        f"{DESCRIPTOR_FILE} writes {bases}")
    extra = manifest.get("extra")
    if not isinstance(extra, dict):
        problems.append(f"{m}: extra must be an object, not {extra!r}")
    else:
        thr = lines[(Reg.RNG_THRESHOLD, 0, 0, 0)][1]
        if "rng_threshold" in extra and extra["rng_threshold"] != thr:
            problems.append(f"{m}: extra.rng_threshold={extra['rng_threshold']!r}, but "
                            f"{DESCRIPTOR_FILE} writes RNG_THRESHOLD={thr}")
        if "seed" in extra and extra["seed"] != manifest.get("seed"):
            problems.append(f"{m}: extra.seed={extra['seed']!r} differs from seed="
                            f"{manifest.get('seed')!r}")
    _raise(problems)
    try:
        seed = check_seed(manifest.get("seed"))
    except ValueError as e:
        raise FirmwareImageError(f"{m}: {e}") from None
    for i in range(len(layers)):
        for dev in range(p.code_bits):
            key = (Reg.RNG_SEED, dev, 0, i)
            line, got = lines[key]
            want = as_data(device_seed(seed, i, dev, p.code_bits))
            if got != want:
                problems.append(f"{DESCRIPTOR_FILE}: line {line}: {write_name(ranges, *key)} "
                                f"writes {got}, the manifest's seed {seed} gives {want}")
    _raise(problems)
