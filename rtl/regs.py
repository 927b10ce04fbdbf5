"""The programming port's register map, shared by the RTL and the firmware driver.

One enum serves both sides (no bare register numbers anywhere): the network core decodes
``prog_sel`` with it, and firmware/ writes with it. A write presents ``prog_sel``, the index
fields ``prog_a`` / ``prog_b`` / ``prog_c`` and ``prog_data``, holds them with ``prog_en`` and
waits for ``prog_ready``.
"""

from __future__ import annotations

import enum

__all__ = ["Reg", "OutKind"]


class Reg(enum.IntEnum):
    """Register selects of the programming port (``prog_sel``).

    Index fields per register: a, b, c (unused ones are ignored); ``data`` is signed 32-bit.
    """

    #: crossbar cell: a = row, b = cell column, c = crossbar index k; data = signed level -4..4
    XBAR_CELL = 0
    #: layer descriptor, c = layer: rows (inputs) of the layer
    LAYER_ROWS = 1
    #: layer descriptor, c = layer: outputs (neurons, or classes for the last layer)
    LAYER_OUTS = 2
    #: layer descriptor, c = layer: first R-row group of the layer in every crossbar
    LAYER_GROUP_BASE = 3
    #: layer descriptor, c = layer: bits A of the layer's input code (A_in for layer 0)
    LAYER_IN_BITS = 4
    #: comparator threshold theta, c = layer, a = output, b = comparator m - 1
    THRESHOLD = 5
    #: comparator sign, c = layer, a = output: 1 means sigma = -1 (BatchNorm gamma < 0)
    SIGN = 6
    #: output scale M_c of the last layer, a = class
    SCALE = 7
    #: output offset B_c of the last layer, a = class
    OFFSET = 8
    #: number of layers in use
    N_LAYERS = 9
    #: passes T per image
    PASSES = 10
    #: n-way: crossbars chosen per layer and pass
    N_WAY = 11
    #: RNG threshold round(p_sw * 2^W), shared by every emulated device
    RNG_THRESHOLD = 12
    #: seed of an emulated RNG device, c = layer, a = device (loads it immediately)
    RNG_SEED = 13


class OutKind(enum.IntEnum):
    """What a beat of the result stream carries (``out_kind``)."""

    #: y_c of one pass (``out_pass`` = t, ``out_index`` = c)
    PASS = 0
    #: averaged_c = floor((Y_c + floor(T/2)) / T) (``out_index`` = c)
    AVERAGE = 1
    #: the predicted class argmax_c Y_c (in ``out_data``)
    CLASS = 2
