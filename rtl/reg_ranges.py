"""The legal values of every register's fields for a design: one table
(:func:`register_ranges`) used by the core's write decoder (rtl/program_port.py), the
firmware compiler and the image checker (firmware/), with :func:`write_problem` and
:func:`write_name` for their messages. The register map itself is rtl/regs.py.

Pure Python: firmware imports it without the RTL.
"""

from __future__ import annotations

from typing import NamedTuple

from ..golden.health import APT_WINDOW, BIAS_WINDOW
from .regs import (
    CONFIDENCE_BITS,
    AdaptRule,
    LayerKind,
    Reg,
    _is_int,
    prog_field_range,
)

__all__ = ["UNUSED", "RegField", "register_ranges", "write_name", "write_problem"]


class RegField(NamedTuple):
    """Legal values lo..hi (inclusive) of one field of a register's write."""

    lo: int
    hi: int
    #: what the field is (``layer``, ``rows``, ...)
    name: str
    #: where the bound comes from (``rows_max=64``)
    bound: str

    @property
    def stop(self) -> int:
        return self.hi + 1

    def __contains__(self, v) -> bool:
        return _is_int(v) and self.lo <= v <= self.hi


#: An index field a register does not use: it must be 0.
UNUSED = RegField(0, 0, "unused", "unused fields are 0")


def _signed_field(name: str, bits: int, bound: str) -> RegField:
    return RegField(-2 ** (bits - 1), 2 ** (bits - 1) - 1, name, f"{bound}={bits}")


def register_ranges(p) -> dict[Reg, dict[str, RegField]]:
    """Per register, the legal values of a, b, c and data for a design ``p``
    (:class:`~spinbayes.rtl.params.RtlParams`). Fields a register does not use must be 0
    (:data:`UNUSED`). The core's write decoder, the firmware compiler and the image checker
    use this one table; cross-register rules (a layer's group range inside the memory, every
    needed write present) are the checker's (firmware/check.py)."""
    layer = RegField(0, p.layers_max - 1, "layer", f"layers_max={p.layers_max}")
    output = RegField(0, p.outputs_max - 1, "output", f"outputs_max={p.outputs_max}")
    cls = RegField(0, p.classes_max - 1, "class", f"classes_max={p.classes_max}")
    q_max = 2 ** (p.Q - 1) - 1                       # largest weight code (eq. 3)
    level = -(-q_max // p.k_cells)                   # largest cell level of an even split
    seed = prog_field_range("data")
    table = {
        Reg.XBAR_CELL: {"a": RegField(0, p.groups_total * p.R - 1, "row",
                                      f"groups_total*R={p.groups_total * p.R}"),
                        "b": RegField(0, p.cols_max - 1, "cell column", f"cols_max={p.cols_max}"),
                        "c": RegField(0, p.N - 1, "crossbar", f"N={p.N}"),
                        "data": RegField(-level, level, "level", f"Q={p.Q}")},
        Reg.LAYER_ROWS: {"c": layer, "data": RegField(1, p.rows_max, "rows",
                                                      f"rows_max={p.rows_max}")},
        Reg.LAYER_OUTS: {"c": layer, "data": RegField(1, p.outputs_max, "outputs",
                                                      f"outputs_max={p.outputs_max}")},
        Reg.LAYER_GROUP_BASE: {"c": layer, "data": RegField(0, p.groups_total - 1, "group base",
                                                            f"groups_total={p.groups_total}")},
        Reg.LAYER_IN_BITS: {"c": layer, "data": RegField(1, p.A_max, "input bits",
                                                         f"max(A_in, A)={p.A_max}")},
        Reg.THRESHOLD: {"a": output, "b": RegField(0, p.levels - 1, "comparator",
                                                   f"2^A-1={p.levels}"),
                        "c": layer, "data": _signed_field("threshold", p.threshold_bits,
                                                          "threshold_bits")},
        Reg.SIGN: {"a": output, "c": layer, "data": RegField(0, 1, "sign flag", "one bit")},
        Reg.SCALE: {"a": cls, "data": _signed_field("scale", p.scale_bits, "scale_bits")},
        Reg.OFFSET: {"a": cls, "data": _signed_field("offset", p.offset_bits, "offset_bits")},
        Reg.N_LAYERS: {"data": RegField(1, p.layers_max, "layers", f"layers_max={p.layers_max}")},
        Reg.PASSES: {"data": RegField(1, p.T_max, "passes", f"T_max={p.T_max}")},
        Reg.N_WAY: {"data": RegField(1, p.n_max, "n-way", f"n_max={p.n_max}")},
        Reg.ADAPT_RULE: {"data": RegField(0, max(AdaptRule), "adaptive rule", "AdaptRule")},
        Reg.ADAPT_T_MIN: {"data": RegField(1, p.T_max, "T_min", f"T_max={p.T_max}")},
        Reg.ADAPT_THRESHOLD: {"data": RegField(0, 2 ** CONFIDENCE_BITS, "vote threshold",
                                               f"2^CONFIDENCE_BITS={2 ** CONFIDENCE_BITS}")},
        Reg.ADAPT_SPAN: {"data": RegField(0, 2 ** min(p.out_bits, 31) - 1, "output span",
                                          f"out_bits={p.out_bits}")},
        Reg.REUSE: {"data": RegField(0, int(p.reuse), "reuse flag",
                                     f"reuse_positions={p.reuse_positions}")},
        Reg.RNG_THRESHOLD: {"data": RegField(0, 2 ** p.rng_bits, "RNG threshold",
                                             f"2^rng_bits={2 ** p.rng_bits}")},
        Reg.HEALTH_RCT_CUTOFF: {"data": RegField(1, 255, "RCT cutoff", "rct_bits=8")},
        Reg.HEALTH_APT_CUTOFF: {"data": RegField(1, APT_WINDOW + 1, "APT cutoff",
                                                 f"APT window {APT_WINDOW}")},
        Reg.HEALTH_BIAS_LOW: {"data": RegField(0, BIAS_WINDOW, "low watermark",
                                               f"bias window {BIAS_WINDOW}")},
        Reg.HEALTH_BIAS_HIGH: {"data": RegField(0, BIAS_WINDOW, "high watermark",
                                                f"bias window {BIAS_WINDOW}")},
        Reg.RNG_DEV_THRESHOLD: {"a": RegField(0, p.code_bits - 1, "device",
                                              f"ceil(log2 N)={p.code_bits} devices"),
                                "c": layer, "data": RegField(-1, 2 ** p.rng_bits,
                                                             "RNG threshold",
                                                             f"2^rng_bits={2 ** p.rng_bits}")},
        Reg.RNG_SEED: {"a": RegField(0, p.code_bits - 1, "device",
                                     f"ceil(log2 N)={p.code_bits} devices"),
                       "c": layer, "data": RegField(seed.start, seed.stop - 1, "seed",
                                                    "32-bit state")},
        Reg.LAYER_KIND: {"c": layer, "data": RegField(
            0, LayerKind.CONV2D if p.act_depth else LayerKind.LINEAR, "kind",
            f"act_depth={p.act_depth}" + ("" if p.act_depth else ": dense layers only"))},
    }
    for reg, lo, what, bound in ((Reg.LAYER_C_IN, 1, "input channels", "rows_max"),
                                 (Reg.LAYER_H, 1, "input height", "size_max"),
                                 (Reg.LAYER_W, 1, "input width", "size_max"),
                                 (Reg.LAYER_K, 1, "window", "kernel_max"),
                                 (Reg.LAYER_STRIDE, 1, "stride", "stride_max"),
                                 (Reg.LAYER_PADDING, 0, "padding", "padding_max"),
                                 (Reg.LAYER_POOL, 0, "pool", "pool_max")):
        hi = getattr(p, bound)
        table[reg] = {"c": layer, "data": RegField(lo, hi, what, f"{bound}={hi}")}
    return {reg: {f: fields.get(f, UNUSED) for f in ("a", "b", "c", "data")}
            for reg, fields in table.items()}


def write_name(ranges: dict[Reg, dict[str, RegField]], reg: Reg, a: int = 0, b: int = 0,
               c: int = 0) -> str:
    """A register and its index fields in words, e.g. ``THRESHOLD [layer 0, output 3,
    comparator 0]`` (the fields' names from ``ranges``, :func:`register_ranges`)."""
    fields, values = ranges[reg], {"a": a, "b": b, "c": c}
    where = ", ".join(f"{fields[n].name} {values[n]}" for n in ("c", "a", "b")
                      if fields[n] is not UNUSED)
    return f"{reg.name} [{where}]" if where else reg.name


def write_problem(ranges: dict[Reg, dict[str, RegField]], sel, a: int, b: int, c: int,
                  data: int) -> str | None:
    """Why the write (sel, a, b, c, data) is illegal under ``ranges``
    (:func:`register_ranges`), or None."""
    try:
        reg = Reg(sel)
    except ValueError:
        return f"prog_sel {sel!r} is not a register (Reg)"
    fields, values = ranges[reg], {"a": a, "b": b, "c": c, "data": data}
    head = write_name(ranges, reg, a, b, c)
    for name, v in values.items():
        f = fields[name]
        if not _is_int(v):
            return f"{head}: {f.name} ({name}) must be an integer, not {v!r}"
        if f is UNUSED and v != 0:
            return f"{head}: unused field {name}={v} must be 0"
        if v not in f:
            return f"{head}: {f.name}={v} outside {f.lo}..{f.hi} ({f.bound})"
    return None
