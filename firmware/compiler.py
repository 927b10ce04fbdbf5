"""Compile an integer SpinBayes network into what the RTL core is programmed with.

Input: the integer network of the contract (:func:`spinbayes.golden.hardware.fold_network`)
and the design's :class:`~spinbayes.rtl.params.RtlParams`. Output: a :class:`Program`, the
ordered register writes of the programming port (:class:`~spinbayes.rtl.regs.Reg`) plus the
cell levels of every crossbar as an array (for simulators' back-door loading and for
read-back verification). Every size is checked against the design, with a message that names
the layer and the limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..golden.adaptive import AdaptiveT, output_span
from ..golden.arbiter import device_seed
from ..golden.cells import encode_weights
from ..golden.geometry import LayerGeometry, geometry_of
from ..golden.health import Cutoffs
from ..golden.mtj import EmulatedRng
from ..rtl.params import RtlParams
from ..rtl.reg_ranges import register_ranges, write_problem
from ..rtl.regs import LayerKind, Reg, as_data, check_seed

if TYPE_CHECKING:   # torch; the compiler reads the network's int64 tensors through .numpy()
    from ..golden.hardware import HwNetwork

__all__ = ["HEALTH_CUTOFFS", "Write", "Program", "compile_network", "crossbar_rows",
           "memory_problems", "reads_activation_memory"]

#: The health cutoff registers and the :class:`Cutoffs` field each one takes.
HEALTH_CUTOFFS = ((Reg.HEALTH_RCT_CUTOFF, "rct"), (Reg.HEALTH_APT_CUTOFF, "apt"),
                  (Reg.HEALTH_BIAS_LOW, "bias_low"), (Reg.HEALTH_BIAS_HIGH, "bias_high"))


@dataclass(frozen=True)
class Write:
    """One programming-port write: ``prog_sel``, index fields a, b, c and signed data."""

    sel: Reg
    a: int = 0
    b: int = 0
    c: int = 0
    data: int = 0


@dataclass
class Program:
    """Everything the core needs for one network.

    descriptor: the register writes except crossbar cells, in order.
    cells: int8 (N, groups_total * R, cols_max) signed levels -4..4 of every crossbar.
    group_base: first R-row group of each layer.
    """

    descriptor: list[Write]
    cells: np.ndarray
    group_base: list[int]
    n_outputs: int
    T: int
    extra: dict = field(default_factory=dict)

    def cell_writes(self, nonzero_only: bool = True) -> list[Write]:
        """XBAR_CELL writes; after a reset every cell is 0, so zeros can be skipped."""
        k, r, c = np.nonzero(self.cells) if nonzero_only else np.indices(self.cells.shape
                                                                        ).reshape(3, -1)
        return [Write(Reg.XBAR_CELL, int(ri), int(ci), int(ki), int(self.cells[ki, ri, ci]))
                for ki, ri, ci in zip(k, r, c)]


def reads_activation_memory(g: LayerGeometry, prev: LayerGeometry | None) -> bool:
    """Whether a layer reads the activation memory: a convolution after layer 0, or the
    dense layer after a convolution (layer 0 reads the input stream or the image memory)."""
    return prev is not None and (g.kind == "conv2d" or prev.kind == "conv2d")


def crossbar_rows(codes: np.ndarray, g: LayerGeometry, prev: LayerGeometry | None
                  ) -> np.ndarray:
    """A layer's weight codes (N, out, ...) as (N, out, rows) in the order the core fetches
    the rows (rtl/conv_unit.py): c*k*k + ky*k + kx from the image memory (the codes' own
    (C, k, k) order), (ky*k + kx)*C + c for a convolution on the activation memory (a word
    holds a pixel's channels), (y*W + x)*C + c for the dense layer after a convolution (its
    fan-in in torch's flatten order c*H*W + y*W + x), the fan-in order otherwise."""
    N, out = codes.shape[:2]
    if reads_activation_memory(g, prev):
        if g.kind == "conv2d":                      # (N, out, C, k, k) -> (N, out, k, k, C)
            codes = codes.transpose(0, 1, 3, 4, 2)
        else:                                       # (N, out, C*P) -> (N, out, P, C)
            codes = codes.reshape(N, out, prev.outputs, -1).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(codes).reshape(N, out, g.rows)


def memory_problems(i: int, g: LayerGeometry, prev: LayerGeometry | None, p) -> list[str]:
    """Why layer i's input or output does not fit the convolution path's memories."""
    problems = []
    if g.kind == "conv2d" and prev is None and g.in_size > p.image_depth:
        problems.append(f"layer {i}: its {g.C_in}x{g.H}x{g.W} input exceeds "
                        f"image_depth={p.image_depth}")
    if g.kind == "conv2d" and not g.is_output:
        if g.H_pool * g.W_pool > p.act_depth:
            problems.append(f"layer {i}: its {g.H_pool}x{g.W_pool} outputs exceed "
                            f"act_depth={p.act_depth} pixels")
        if g.outputs > p.act_channels:
            problems.append(f"layer {i}: its {g.outputs} output channels exceed "
                            f"act_channels={p.act_channels}")
    return problems


def compile_network(hw: HwNetwork, params: RtlParams, *, T: int, seed: int,
                    rng_current: float = 230e-6, health: Cutoffs | None = None,
                    adaptive: AdaptiveT | None = None, reuse: bool = False) -> Program:
    """The program of ``hw`` for a design of ``params``, T passes, RNG ``seed``; the RNG
    health tests' cutoffs ``health`` (default ``Cutoffs.derive()``: H = 1, α = 2^-20, i.e.
    RCT 21, APT 589, bias 1891..2205; :class:`~spinbayes.golden.health.Cutoffs`).

    Every write is checked against the design's register table
    (:func:`~spinbayes.rtl.regs.register_ranges`); ``seed`` must lie in the RNG's range
    (:func:`~spinbayes.rtl.regs.check_seed`). ``adaptive``: the early-stop rule
    (:class:`~spinbayes.golden.adaptive.AdaptiveT`, T = T_max); None or rule ``off``
    writes ``ADAPT_RULE`` = OFF only. The exact rule's span must be at least the network's
    (:func:`~spinbayes.golden.adaptive.output_span`), or its class guarantee would not hold.
    ``reuse``: write ``REUSE`` = 1 (first-layer reuse, rtl/reuse.py): the design's cache must
    hold the first layer's output positions and outputs; False writes nothing (reset 0)."""
    p = params
    check_seed(seed)
    L = len(hw.layers)
    problems = []
    if L > p.layers_max:
        problems.append(f"{L} layers, the design holds at most layers_max={p.layers_max}")
    if hw.N != p.N:
        problems.append(f"N={hw.N} crossbars per layer, the design has N={p.N}")
    if hw.n_way > p.n_max:
        problems.append(f"n_way={hw.n_way}, the design supports at most n_max={p.n_max}")
    if hw.Q != p.Q or hw.R != p.R:
        problems.append(f"Q={hw.Q}, R={hw.R}; the design has Q={p.Q}, R={p.R}")
    if not 1 <= T <= p.T_max:
        problems.append(f"T={T} outside 1..T_max={p.T_max}")
    adaptive = AdaptiveT() if adaptive is None else adaptive
    if not isinstance(adaptive, AdaptiveT):
        raise ValueError(f"adaptive must be a golden.adaptive.AdaptiveT, not {adaptive!r}")
    if adaptive.t_min > T:
        problems.append(f"T_min={adaptive.t_min} outside 1..T={T}")
    if adaptive.rule == "exact" and adaptive.span < output_span(hw):
        problems.append(f"exact rule span {adaptive.span} below the network's output span "
                        f"{output_span(hw)}")
    if not isinstance(reuse, bool):
        raise ValueError(f"reuse must be a bool, not {reuse!r}")
    if hw.input_bits > p.A_in:
        problems.append(f"input codes of {hw.input_bits} bits, the design reads A_in={p.A_in}")
    try:
        geometry = geometry_of(hw)
    except ValueError as e:
        raise ValueError(f"network does not fit the design: {e}") from None
    base, group_base = 0, []
    for i, g in enumerate(geometry):
        out, rows = g.outputs, g.rows
        if g.kind == "conv2d" and not p.conv:
            problems.append(f"layer {i}: a convolution needs a design with the convolution "
                            f"path (act_depth > 0), not act_depth={p.act_depth}")
        if g.kind == "conv2d" and g.is_output:
            problems.append(f"layer {i}: the output layer must be dense, not a convolution")
        if p.conv:
            problems += memory_problems(i, g, geometry[i - 1] if i else None, p)
        if rows > p.rows_max or out > p.outputs_max:
            problems.append(f"layer {i}: {out} x {rows} exceeds outputs_max={p.outputs_max}, "
                            f"rows_max={p.rows_max}")
        if g.is_output and out > p.classes_max:
            problems.append(f"layer {i}: {out} classes exceed classes_max={p.classes_max}")
        if not g.is_output and g.out_bits != p.A:
            problems.append(f"layer {i}: {g.out_bits}-bit comparators, the design has A={p.A}")
        group_base.append(base)
        base += -(-rows // p.R)
    if reuse and (geometry[0].positions > p.reuse_positions
                  or geometry[0].outputs > p.reuse_outputs):
        problems.append(f"first-layer reuse: layer 0 has {geometry[0].positions} positions "
                        f"of {geometry[0].outputs} outputs, the cache holds "
                        f"reuse_positions={p.reuse_positions} of "
                        f"reuse_outputs={p.reuse_outputs}")
    if base > p.groups_total:
        problems.append(f"the layers need {base} row groups, groups_total={p.groups_total}")
    if problems:
        raise ValueError("network does not fit the design: " + "; ".join(problems))

    cells = np.zeros((p.N, p.groups_total * p.R, p.cols_max), dtype=np.int8)
    writes: list[Write] = []
    for i, (layer, g, gb) in enumerate(zip(hw.layers, geometry, group_base)):
        out, rows = g.outputs, g.rows
        codes = crossbar_rows(layer.codes.numpy(), g, geometry[i - 1] if i else None)
        levels = encode_weights(codes, p.Q)                        # (N, out, rows, k)
        block = levels.transpose(0, 2, 1, 3).reshape(p.N, rows, out * p.k_cells)
        cells[:, gb * p.R:gb * p.R + rows, :out * p.k_cells] = block
        kind = LayerKind.CONV2D if g.kind == "conv2d" else LayerKind.LINEAR
        writes += [Write(Reg.LAYER_ROWS, c=i, data=rows), Write(Reg.LAYER_OUTS, c=i, data=out),
                   Write(Reg.LAYER_GROUP_BASE, c=i, data=gb),
                   Write(Reg.LAYER_IN_BITS, c=i, data=g.in_bits),
                   Write(Reg.LAYER_KIND, c=i, data=int(kind)),
                   *(Write(reg, c=i, data=v) for reg, v in (
                       (Reg.LAYER_C_IN, g.C_in), (Reg.LAYER_H, g.H), (Reg.LAYER_W, g.W),
                       (Reg.LAYER_K, g.k), (Reg.LAYER_STRIDE, g.stride),
                       (Reg.LAYER_PADDING, g.padding), (Reg.LAYER_POOL, g.pool)))]
        if layer.is_output:
            for j in range(out):
                writes += [Write(Reg.SCALE, a=j, data=int(layer.scale[j])),
                           Write(Reg.OFFSET, a=j, data=int(layer.offset[j]))]
        else:
            for j in range(out):
                writes.append(Write(Reg.SIGN, a=j, c=i, data=int(layer.sign[j] < 0)))
                for mm in range(layer.thresholds.shape[1]):
                    writes.append(Write(Reg.THRESHOLD, a=j, b=mm, c=i,
                                        data=int(layer.thresholds[j, mm])))
    thr = EmulatedRng.from_current(1, rng_current, threshold_bits=p.rng_bits).threshold
    cut = Cutoffs.derive() if health is None else health
    if not isinstance(cut, Cutoffs):
        raise ValueError(f"health must be a golden.health.Cutoffs, not {health!r}")
    writes += [Write(reg, data=int(getattr(cut, name))) for reg, name in HEALTH_CUTOFFS]
    writes += [Write(Reg.N_LAYERS, data=L), Write(Reg.PASSES, data=T),
               Write(Reg.N_WAY, data=hw.n_way), Write(Reg.RNG_THRESHOLD, data=thr),
               Write(Reg.ADAPT_RULE, data=int(adaptive.code))]
    if reuse:
        writes.append(Write(Reg.REUSE, data=1))
    if adaptive.rule != "off":
        writes += [Write(Reg.ADAPT_T_MIN, data=adaptive.t_min),
                   Write(Reg.ADAPT_THRESHOLD, data=adaptive.threshold),
                   Write(Reg.ADAPT_SPAN, data=adaptive.span)]
    for i in range(L):
        for dev in range(p.code_bits):
            writes.append(Write(Reg.RNG_SEED, a=dev, c=i,
                                data=as_data(device_seed(seed, i, dev, p.code_bits))))
    ranges = register_ranges(p)
    for w in writes:
        problem = write_problem(ranges, w.sel, w.a, w.b, w.c, w.data)
        if problem:
            raise ValueError(f"network does not fit the design: {problem}")
    n_out = hw.layers[-1].codes.shape[1]
    extra = {"seed": seed, "rng_threshold": thr}
    if adaptive.rule != "off":
        extra["adaptive"] = asdict(adaptive)
    if reuse:
        extra["reuse"] = True
    return Program(writes, cells, group_base, n_out, T, extra)
