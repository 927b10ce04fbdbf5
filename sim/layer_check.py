"""Layer-by-layer comparison of the core's activation trace with the integer reference.

The core's activation trace (``act_*`` ports; firmware/driver.py ``CoreDriver.infer(...,
trace_layers=True)``) gives, for every hidden layer of every pass, each output vector as the
next layer reads it: a dense layer's comparator outputs once, a convolution's pooled vector at
each pooled position (raster order). :func:`compare_layers` checks them against
``HwOutput.activations`` of ``HwNetwork.run`` on the same arbiter choices, beat by beat in the
order the core produced them, and reports every difference by image, layer, pass, position
and neuron (the first in time first), plus any vector the trace lacks or repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerMismatch", "compare_layers", "reference_vectors"]


@dataclass(frozen=True)
class LayerMismatch:
    """One difference between the trace and the reference. ``neuron`` -1: a whole vector is
    missing (``rtl`` "missing") or repeated (``rtl`` "repeated")."""

    image: int
    layer: int
    pass_: int
    position: int
    where: str
    neuron: int
    rtl: int | str
    reference: int | str

    @property
    def place(self) -> str:
        """Layer, pass, position (and neuron), e.g. ``layer 1, pass 0, position 5 (y 1, x 2
        of 3x3), neuron 4``."""
        text = f"layer {self.layer}, pass {self.pass_}, position {self.position}{self.where}"
        return text if self.neuron < 0 else f"{text}, neuron {self.neuron}"

    def __str__(self) -> str:
        if self.neuron < 0:
            return f"image {self.image}: {self.place}: vector {self.rtl}"
        return (f"image {self.image}: {self.place}: RTL {self.rtl}, reference "
                f"{self.reference}")


def reference_vectors(activations, geometry, image: int) -> dict[tuple[int, int, int],
                                                                 np.ndarray]:
    """(layer, pass, position) -> the reference codes of every hidden layer's output vector
    for ``image``, from ``HwOutput.activations`` (per layer (B, T, ...)) and the layers'
    geometry (golden/geometry.py)."""
    out = {}
    for i, g in enumerate(geometry):
        if g.is_output:
            continue
        a = np.asarray(activations[i][image]).reshape(-1, g.outputs, g.H_pool * g.W_pool)
        for t in range(a.shape[0]):
            for pos in range(a.shape[2]):
                out[(i, t, pos)] = a[t, :, pos]
    return out


def _where(g, pos: int) -> str:
    if g.kind == "linear":
        return ""
    y, x = divmod(pos, g.W_pool)
    return f" (y {y}, x {x} of {g.H_pool}x{g.W_pool})"


def compare_layers(traces, activations, geometry) -> list[LayerMismatch]:
    """Every difference between ``traces`` (per image, the trace beats (layer, pass,
    position, codes) in the core's order) and ``activations`` (``HwOutput.activations``):
    per image in trace order, then the vectors the trace never gave."""
    bad: list[LayerMismatch] = []
    for b, beats in enumerate(traces):
        want = reference_vectors(activations, geometry, b)
        seen = set()
        for layer, t, pos, codes in beats:
            key = (int(layer), int(t), int(pos))
            g = geometry[key[0]] if key[0] < len(geometry) else None
            where = _where(g, key[2]) if g is not None else ""
            if key not in want:
                bad.append(LayerMismatch(b, *key, where, -1, "not in the network", "-"))
                continue
            if key in seen:
                bad.append(LayerMismatch(b, *key, where, -1, "repeated", "-"))
                continue
            seen.add(key)
            ref = want[key]
            got = np.asarray(codes[:len(ref)])
            for j in np.nonzero(got != ref)[0]:
                bad.append(LayerMismatch(b, *key, where, int(j), int(got[j]), int(ref[j])))
        for key in sorted(set(want) - seen, key=lambda k: (k[1], k[0], k[2])):
            bad.append(LayerMismatch(b, *key, _where(geometry[key[0]], key[2]), -1,
                                     "missing", "-"))
    return bad
