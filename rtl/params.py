"""Generation parameters of the SpinBayes periphery and every width derived from them.

One frozen :class:`RtlParams` sizes the whole design; the widths follow the bounds of
docs/HARDWARE.md ("Numeric formats"), computed by the contract's own
:func:`spinbayes.golden.contract.layer_widths` (the function the integer reference
golden/hardware.py uses), so the RTL and the integer reference cannot disagree on a width.
The network's shape is data (a descriptor table written by firmware); these parameters only
bound it. Also here: the averaging block's pipeline constants (:data:`MAC_LATENCY`,
:data:`DIV_BITS`, :func:`divide_cycles`), which the cycle models of sim/models.py share.

Neither torch nor Amaranth is imported: sim/ and firmware/ read this module cheaply.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..golden.contract import (
    MAX_LEVEL,
    ROWS_PER_READ,
    LayerWidths,
    bits_for,
    cells_per_weight,
    layer_widths,
    signed_bits,
)

__all__ = ["DIV_BITS", "MAC_LATENCY", "RtlParams", "bits_for", "check_params", "divide_cycles",
           "params_from_json"]

#: Quotient bits the averaging block's divider produces per cycle (radix 2^DIV_BITS: the digit
#: is chosen by 2^DIV_BITS - 1 subtractions of the multiples of T from the partial remainder,
#: in parallel).
DIV_BITS = 4
#: Cycles from ``pass_valid`` to class 0's ``y`` in the averaging block (operands, product,
#: sum; all registered).
MAC_LATENCY = 3


def divide_cycles(params: RtlParams) -> int:
    """Divider cycles per class: ceil((out_bits - 1) / DIV_BITS), at least 2 (the next
    class's Y is read two cycles ahead of its load) (rtl.averaging.AveragingBlock)."""
    return max(2, math.ceil((params.out_bits - 1) / DIV_BITS))


def check_params(component, params) -> RtlParams:
    """The params of a block's ``__init__``, or ValueError (the half-built block is silenced,
    so it does not also warn "created but never used")."""
    if not isinstance(params, RtlParams):
        component._MustUse__silence = True
        raise ValueError(f"params must be an RtlParams, not {params!r}")
    return params


@dataclass(frozen=True)
class RtlParams:
    """Upper bounds of the networks one generated design can run.

    Parameters
    ----------
    N : crossbars per layer (paper: 5).
    n_max : largest n-way the design supports (1 .. N).
    Q : weight bits (eq. 3).
    R : rows sensed in parallel (paper: 4).
    A_in : bits of the first layer's input code.
    A : bits of a comparator activation (2^A - 1 comparators per neuron).
    rows_max : most crossbar rows (inputs) of any layer.
    outputs_max : most outputs (neurons / classes) of any layer.
    layers_max : most layers.
    groups_total : R-row groups stored per crossbar over all layers (the crossbar memory depth).
    T_max : most forward passes per image.
    rng_bits : W, bits of the emulated RNG word compared against the p_sw threshold.
    scale_bits, offset_bits : widths of the last layer's output scale M_c and offset B_c.
    classes_max : most outputs of the last layer (the classes): the averaging block, the
        output scales and offsets are sized by it (None: outputs_max). The digits MLP
        64-64-10 needs outputs_max 64 for its hidden layer but only 10 classes.
    act_depth : words (pixels) of each bank of the activation memory: the most positions
        H*W of a tensor a convolution writes; 0 builds a dense-only design without the
        convolution path (no memories, window generator or pooling; LAYER_KIND must be
        LINEAR).
    act_channels : codes in one activation-memory word: the most outputs (channels) of a
        hidden convolution.
    image_depth : codes of the image memory: the most inputs C_in*H*W of a first layer that
        is a convolution (at least 1 when act_depth > 0).
    size_max : largest input height and width H, W of a convolution.
    kernel_max, stride_max : largest window k and stride of a convolution.
    padding_max : largest zero padding of a convolution (0: none).
    pool_max : largest max-pooling kernel (0: no pooling).
    reuse_positions, reuse_outputs : the first-layer reuse cache (rtl/reuse.py): output
        positions (1 for a dense first layer) and outputs of the first layer it holds per
        crossbar; 0, 0 builds a design without it (the REUSE register can only be 0).
    """

    N: int = 5
    n_max: int = 2
    Q: int = 4
    R: int = ROWS_PER_READ
    A_in: int = 4
    A: int = 1
    rows_max: int = 64
    outputs_max: int = 64
    layers_max: int = 2
    groups_total: int = 32
    T_max: int = 16
    rng_bits: int = 16
    scale_bits: int = 16
    offset_bits: int = 24
    classes_max: int | None = None
    act_depth: int = 0
    act_channels: int = 1
    image_depth: int = 0
    size_max: int = 1
    kernel_max: int = 1
    stride_max: int = 1
    padding_max: int = 0
    pool_max: int = 0
    reuse_positions: int = 0
    reuse_outputs: int = 0

    def __post_init__(self):
        if self.classes_max is None:
            object.__setattr__(self, "classes_max", self.outputs_max)
        for name in ("N", "n_max", "Q", "R", "A_in", "A", "rows_max", "outputs_max",
                     "layers_max", "groups_total", "T_max", "rng_bits", "scale_bits",
                     "offset_bits", "classes_max", "size_max", "kernel_max", "stride_max",
                "act_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        for name in ("act_depth", "image_depth", "padding_max", "pool_max", "reuse_positions",
                     "reuse_outputs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
        if self.act_depth and not self.image_depth:
            raise ValueError("image_depth must be a positive integer when act_depth > 0 (the "
                             "convolution path reads its first layer's input from it), not 0")
        if (self.reuse_positions == 0) != (self.reuse_outputs == 0):
            raise ValueError(f"reuse_positions and reuse_outputs must both be 0 (no reuse "
                             f"cache) or both positive, not {self.reuse_positions!r} and "
                             f"{self.reuse_outputs!r}")
        if self.reuse_outputs > self.outputs_max:
            raise ValueError(f"reuse_outputs must not exceed outputs_max ({self.outputs_max}), "
                             f"not {self.reuse_outputs!r}")
        if self.act_channels > self.outputs_max:
            raise ValueError(f"act_channels must not exceed outputs_max ({self.outputs_max}), "
                             f"not {self.act_channels!r}")
        if self.n_max > self.N:
            raise ValueError(f"n_max must not exceed N ({self.N}), not {self.n_max!r}")
        if self.classes_max > self.outputs_max:
            raise ValueError(f"classes_max must not exceed outputs_max ({self.outputs_max}), "
                             f"not {self.classes_max!r}")
        if self.Q < 2 or self.Q > 8:
            raise ValueError(f"Q must be an integer in 2..8, not {self.Q!r}")
        if self.rng_bits > 32:
            raise ValueError(f"rng_bits must be at most 32 (the xorshift32 state), "
                             f"not {self.rng_bits!r}")
        if self.groups_total < self.groups_max:
            raise ValueError(f"groups_total ({self.groups_total}) must hold at least one "
                             f"layer of rows_max rows ({self.groups_max} groups)")
        if self.scale_bits < 2 or self.offset_bits < 2:
            raise ValueError("scale_bits and offset_bits must be at least 2")

    # --- derived sizes -------------------------------------------------------------------
    @property
    def conv(self) -> bool:
        """The design has the convolution path (image and activation memories, window
        generator, pooling): ``act_depth`` > 0."""
        return self.act_depth > 0

    @property
    def reuse(self) -> bool:
        """The design has the first-layer reuse cache: ``reuse_positions`` > 0."""
        return self.reuse_positions > 0

    @property
    def out_size_max(self) -> int:
        """Largest H_out and W_out of a convolution (positions per row or column before
        pooling): size_max + 2 padding_max (k = stride = 1)."""
        return self.size_max + 2 * self.padding_max

    @property
    def k_cells(self) -> int:
        """Differential cells per weight (golden/cells.py)."""
        return cells_per_weight(self.Q)

    @property
    def cols_max(self) -> int:
        """Cell columns of a crossbar: outputs_max * k_cells."""
        return self.outputs_max * self.k_cells

    @property
    def groups_max(self) -> int:
        """R-row groups of the largest layer."""
        return math.ceil(self.rows_max / self.R)

    @property
    def code_bits(self) -> int:
        """k = ceil(log2 N): RNG devices per arbiter (0 for N = 1)."""
        return (self.N - 1).bit_length()

    @property
    def index_bits(self) -> int:
        """Bits of a crossbar index 0 .. N-1."""
        return bits_for(self.N)

    @property
    def A_max(self) -> int:
        return max(self.A_in, self.A)

    @property
    def levels(self) -> int:
        """Comparators per neuron, 2^A - 1."""
        return 2 ** self.A - 1

    # --- derived widths (docs/HARDWARE.md) -----------------------------------------------
    @functools.cached_property
    def widths(self) -> LayerWidths:
        """Worst-case widths of any layer: rows_max inputs at A_max bits, n_max-way (computed
        once: the reference models read them every cycle)."""
        return layer_widths(self.rows_max, self.outputs_max, self.A_max, self.Q, self.R,
                            self.n_max, T=self.T_max,
                            m_max=2 ** (self.scale_bits - 1) - 1,
                            b_max=2 ** (self.offset_bits - 1))

    @property
    def level_bits(self) -> int:
        """A stored signed cell level -4..4."""
        return signed_bits(MAX_LEVEL)

    @property
    def adc_bits(self) -> int:
        return self.widths.adc_bits

    @property
    def sum_max(self) -> int:
        """|S| bound of the design: n_max * rows_max * (2^A_max - 1) * q_max."""
        return self.widths.sum_max

    @property
    def sum_bits(self) -> int:
        """The n-way sum S (and every partial sum of the adder-accumulator)."""
        return self.widths.sum_bits

    @property
    def threshold_bits(self) -> int:
        return self.widths.threshold_bits

    @property
    def out_bits(self) -> int:
        """Per-pass output y = M S + B."""
        return self.widths.out_bits

    @property
    def total_bits(self) -> int:
        """T-sum Y."""
        return self.widths.total_bits

    @property
    def group_bits(self) -> int:
        return bits_for(self.groups_total)

    @property
    def row_bits(self) -> int:
        return bits_for(self.groups_total * self.R)

    @property
    def col_bits(self) -> int:
        return bits_for(self.cols_max)

    @property
    def output_bits_index(self) -> int:
        return bits_for(self.outputs_max)

    @property
    def t_bits(self) -> int:
        """Bits of a pass count 0 .. T_max."""
        return (self.T_max).bit_length()

    def describe(self) -> dict:
        """Every parameter and derived width, for reports and the exported Verilog's header."""
        names = ("k_cells", "cols_max", "groups_max", "code_bits", "index_bits", "levels",
                 "adc_bits", "sum_bits", "threshold_bits", "out_bits", "total_bits")
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update({n: getattr(self, n) for n in names})
        return d

    @classmethod
    def from_describe(cls, described: dict) -> RtlParams:
        """The RtlParams whose :meth:`describe` is ``described`` (the ``params.json`` a
        testbench reads); ValueError when a field is missing or a derived width differs
        (a file written by another version of the RTL)."""
        if not isinstance(described, dict):
            raise ValueError(f"described params must be a dict, not {described!r}")
        missing = sorted(set(cls.__dataclass_fields__) - set(described))
        if missing:
            raise ValueError(f"described params lack the RtlParams fields {missing}")
        params = cls(**{f: described[f] for f in cls.__dataclass_fields__})
        ours = params.describe()
        differ = {k: (v, ours[k]) for k, v in described.items() if k in ours and ours[k] != v}
        if differ:
            raise ValueError("described params disagree with the widths RtlParams derives "
                             "(name: (described, derived)): "
                             + ", ".join(f"{k}: {v}" for k, v in sorted(differ.items())))
        return params


def params_from_json(path) -> RtlParams:
    """RtlParams from a JSON object of its fields (missing fields keep their defaults); None
    or "" gives the defaults. The one parser of ``--config`` / ``--rtl-config`` files."""
    if not path:
        return RtlParams()
    path = Path(path)
    try:
        fields_ = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(fields_, dict):
        raise ValueError(f"{path}: expected a JSON object of RtlParams fields")
    unknown = sorted(set(fields_) - set(RtlParams.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{path}: unknown RtlParams fields {unknown}")
    return RtlParams(**fields_)
