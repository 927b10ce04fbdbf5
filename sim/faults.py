"""A fault map (golden/faults.py) as simulation data for the co-verification harness.

One harness build serves any number of fault maps: the map is not Verilog but extra writes that
the testbench plays after the program, through the same programming port.

* **Cells.** After every intended cell and the descriptor table, the intended level 0 of each
  faulty cell the program leaves at 0 (the program writes only non-zero cells), then one
  ``XBAR_CELL`` write per cell whose level under the map (``FaultMap.levels``, the level the
  flash ADC reads after programming and verify) differs from the intended one: the crossbars
  then hold exactly the map's levels. The harness's read-back pass compares every written
  entry with its data, so the intended entry of every faulty cell is reported as read back
  wrong, and only those: read-back verify reports exactly the map's faulty cells.
* **RNG devices.** One ``RNG_DEV_THRESHOLD`` write per device whose threshold under the map
  (``FaultMap.rng_threshold``: 0 stuck at 0, 2^W stuck at 1, or biased through eq. 5)
  differs from the program's shared ``RNG_THRESHOLD``.

The reference is ``faulted_network(hw, fmap)``: the integer network on the map's effective codes
(the sum of a weight's cell levels), which faults can push to ±4k (±8 for Q = 4), one beyond
q_max. The design's accumulators are sized for |code| <= q_max (``layer_widths``); rather than
widen every design for faults, :func:`fault_writes` checks that the map's worst-case n-way sum
of every layer stays within the design's sum bound (``RtlParams.sum_max``; then every width
after it, thresholds and the output scaling included, holds it too) and refuses the map
otherwise, naming the layer.
"""

from __future__ import annotations

import numpy as np

from ..firmware.compiler import Program, Write
from ..golden.faults import FaultMap
from ..golden.geometry import geometry_of
from ..rtl.regs import Reg

__all__ = ["fault_writes"]


def _layout_problem(program: Program, fmap: FaultMap, p, layer: int, rows: int, width: int):
    gb = program.group_base[layer]
    block = program.cells[:, gb * p.R:gb * p.R + rows, :width]
    if not np.array_equal(block, fmap.targets[layer]):
        return (f"layer {layer}: the program's crossbar cells are not the fault map's intended "
                f"levels (another network, or a row order the compiler changes, e.g. a "
                f"convolution's)")
    return None


def fault_writes(program: Program, fmap: FaultMap, hw, params, n_way: int) -> tuple[list, int]:
    """The writes that put ``fmap`` into a core programmed with ``program`` (compiled from
    ``hw`` for ``params``), and the number of faulty cells (the read-back pass reports them).
    ValueError if the map does not belong to the program or its sums do not fit the design."""
    p = params
    if not isinstance(fmap, FaultMap):
        raise ValueError(f"fault_map must be a golden.faults.FaultMap, not {fmap!r}")
    if fmap.threshold_bits != p.rng_bits:
        raise ValueError(f"the fault map's RNG thresholds have {fmap.threshold_bits} bits, the "
                         f"design's devices rng_bits={p.rng_bits}")
    geometry = geometry_of(hw)
    if len(fmap.levels) != len(geometry) or fmap.rng_threshold.shape[1] != p.code_bits:
        raise ValueError(f"the fault map has {len(fmap.levels)} layers of "
                         f"{fmap.rng_threshold.shape[1]} RNG devices; the network has "
                         f"{len(geometry)} layers, the design {p.code_bits} devices each")
    zeros, writes = [], []
    for layer, (g, levels) in enumerate(zip(geometry, fmap.levels)):
        rows, width = levels.shape[1], levels.shape[2]
        problem = _layout_problem(program, fmap, p, layer, rows, width)
        if problem:
            raise ValueError(problem)
        codes = np.abs(fmap.codes()[layer].reshape(p.N, g.outputs, -1))
        worst = n_way * int(codes.sum(axis=2).max()) * (2 ** g.in_bits - 1)
        if worst > p.sum_max:
            raise ValueError(f"layer {layer}: the fault map's worst-case sum {worst} exceeds "
                             f"the design's sum bound {p.sum_max} (sum_bits={p.sum_bits}): the "
                             f"RTL could overflow where the reference does not")
        base = program.group_base[layer] * p.R
        target = fmap.targets[layer]
        for k, r, c in zip(*np.nonzero(levels != target)):
            cell = dict(a=base + int(r), b=int(c), c=int(k))
            writes.append(Write(Reg.XBAR_CELL, data=int(levels[k, r, c]), **cell))
            if target[k, r, c] == 0:
                zeros.append(Write(Reg.XBAR_CELL, data=0, **cell))
    shared = int(program.extra["rng_threshold"])
    for layer, row in enumerate(fmap.rng_threshold):
        for d, thr in enumerate(row):
            if int(thr) != shared:
                writes.append(Write(Reg.RNG_DEV_THRESHOLD, a=d, c=layer, data=int(thr)))
    faulty = sum(w.sel == Reg.XBAR_CELL for w in writes)
    return zeros + writes, faulty
