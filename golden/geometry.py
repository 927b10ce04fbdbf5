"""The geometry of each crossbar layer of an integer network, derived once, without torch.

One :class:`LayerGeometry` per layer says what the hardware needs of its shape: the input
activation tensor it reads (C_in x H x W), the window it slides over it (k, stride,
padding), the output positions it computes (H_out x W_out), the max-pooling and flattening of
its outputs, the crossbar rows (C_in*k*k) and outputs, and its code widths.
:func:`geometry_of` derives the list from an integer network
(:class:`~spinbayes.golden.hardware.HwNetwork`) and its input image shape, propagating the
shape through convolution, pooling and flattening exactly as ``HwNetwork.run`` does
(``F.unfold`` windows, ``F.max_pool2d(a, pool)`` with the floor of H_out / pool, torch's
``flatten`` order). The firmware compiler, the design sizing (sim/coverify.py ``params_for``)
and the energy counts (golden/energy_counts.py) read it.

**A dense layer is a 1 x 1 convolution on a 1 x 1 image**: C_in = its fan-in, H = W = k =
stride = 1, padding = 0, one output position. Its window is then the identity (row r reads
activation r), so the window-address generator (rtl/window.py) treats both kinds alike.

**Code order**: the code of channel c at (y, x) of a C x H x W tensor is number
c*H*W + y*W + x, torch's ``flatten`` order: the image memory's address (rtl/conv_unit.py)
and the fan-in order of a dense layer after a flatten. The RTL's activation memory keeps a
pixel's channels in one word at y*W + x (docs/HARDWARE.md, "The convolution path").

This module imports the standard library only (rtl/ and firmware/ load it without torch);
:func:`geometry_of` duck-types the network (``codes.shape``, ``stride``, ``padding``,
``pool``, ``flatten``, ``in_bits``, ``out_bits``, ``is_output`` of every layer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["KINDS", "LayerGeometry", "activation_depth", "check_int", "geometry_of"]

#: Layer kinds, as ``HwLayer.kind`` spells them.
KINDS = ("linear", "conv2d")


def check_int(name: str, v, minimum: int = 1) -> int:
    """``v`` if it is an int (not a bool) >= ``minimum``, else ValueError: "<name> must be a
    positive integer, not <v>" (minimum 1), "... a non-negative integer ..." (minimum 0)."""
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, not {v!r}")
    return v


def _positive(name: str, v) -> None:
    check_int(name, v, 1)


def _non_negative(name: str, v) -> None:
    check_int(name, v, 0)


@dataclass(frozen=True)
class LayerGeometry:
    """The shape of one crossbar layer (see the module docstring).

    Parameters
    ----------
    kind : "linear" or "conv2d".
    C_in, H, W : the input activation tensor (C_in channels of H x W); a dense layer has
        C_in = fan-in and H = W = 1.
    k, stride, padding : the square window (k x k), its step and the zero border; a dense
        layer has k = stride = 1, padding = 0.
    pool : max-pooling kernel = stride of the outputs (0: none); hidden layers only.
    outputs : neurons (output channels).
    in_bits : A of the input codes; out_bits : A' of the comparator outputs (0 for the
        output layer, which scales instead).
    is_output : the last layer (output scaling, no comparators, no pooling).
    flatten : the pooled outputs are flattened to one vector (torch order) for the next
        layer.

    Derived (properties): ``H_out``, ``W_out`` (after the window, before pooling),
    ``positions`` = H_out*W_out, ``rows`` = C_in*k*k, ``H_pool``, ``W_pool``,
    ``in_size`` = C_in*H*W, ``out_shape`` (the next layer's input) and ``out_size``.
    """

    kind: str
    C_in: int
    H: int
    W: int
    k: int
    stride: int
    padding: int
    pool: int
    outputs: int
    in_bits: int
    out_bits: int
    is_output: bool
    flatten: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        for name in ("C_in", "H", "W", "k", "stride", "outputs", "in_bits"):
            _positive(name, getattr(self, name))
        for name in ("padding", "pool", "out_bits"):
            _non_negative(name, getattr(self, name))
        for name in ("is_output", "flatten"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        if self.kind == "linear":
            want = dict(H=1, W=1, k=1, stride=1, padding=0, pool=0)
            odd = {n: getattr(self, n) for n, v in want.items() if getattr(self, n) != v}
            if odd:
                raise ValueError(f"a linear layer has H = W = k = stride = 1 and padding = "
                                 f"pool = 0, not {odd}")
        if self.k > self.H + 2 * self.padding or self.k > self.W + 2 * self.padding:
            raise ValueError(f"kernel {self.k} does not fit the {self.H}x{self.W} input "
                             f"padded by {self.padding}")
        if self.is_output:
            if self.pool:
                raise ValueError(f"the output layer does not pool, not pool = {self.pool!r}")
        else:
            _positive("out_bits of a hidden layer", self.out_bits)
        if self.pool and (self.pool > self.H_out or self.pool > self.W_out):
            raise ValueError(f"pool {self.pool} does not fit the {self.H_out}x{self.W_out} "
                             f"outputs")

    # --- derived -------------------------------------------------------------------------
    @property
    def H_out(self) -> int:
        """Output rows of the window, before pooling: (H + 2 padding - k) // stride + 1."""
        return (self.H + 2 * self.padding - self.k) // self.stride + 1

    @property
    def W_out(self) -> int:
        return (self.W + 2 * self.padding - self.k) // self.stride + 1

    @property
    def positions(self) -> int:
        """Output positions per image (1 for a dense layer)."""
        return self.H_out * self.W_out

    @property
    def rows(self) -> int:
        """Crossbar rows: C_in*k*k (the fan-in for a dense layer)."""
        return self.C_in * self.k * self.k

    @property
    def H_pool(self) -> int:
        """Output rows after pooling (floor, as ``F.max_pool2d``); H_out without pooling."""
        return self.H_out // self.pool if self.pool else self.H_out

    @property
    def W_pool(self) -> int:
        return self.W_out // self.pool if self.pool else self.W_out

    @property
    def in_size(self) -> int:
        """Input activations: C_in*H*W."""
        return self.C_in * self.H * self.W

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The activation tensor this layer hands on, as ``HwLayer.activate`` shapes it:
        (outputs,) for a dense layer, (outputs, H_pool, W_pool) for a conv layer,
        flattened to one dimension when ``flatten``."""
        if self.kind == "linear":
            return (self.outputs,)
        shape = (self.outputs, self.H_pool, self.W_pool)
        return (shape[0] * shape[1] * shape[2],) if self.flatten else shape

    @property
    def out_size(self) -> int:
        """Activations this layer writes: outputs * H_pool * W_pool."""
        return self.outputs * self.H_pool * self.W_pool

    def as_dict(self) -> dict:
        """Every field and derived size (for reports and manifests)."""
        d = asdict(self)
        for name in ("H_out", "W_out", "positions", "rows", "H_pool", "W_pool", "in_size",
                     "out_size"):
            d[name] = getattr(self, name)
        return d


def _input_shape(hw, image_shape) -> tuple[int, ...]:
    shape = image_shape if image_shape is not None else getattr(hw, "image_shape", None)
    first = hw.layers[0]
    if shape is None:
        if first.kind != "linear":
            raise ValueError("image_shape is needed for a network that starts with a "
                             "convolution (the network records none)")
        return (int(first.codes.shape[2]),)
    shape = tuple(shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                            for s in shape):
        raise ValueError(f"image_shape must be a tuple of positive integers, not {shape!r}")
    if getattr(hw, "flatten_input", False) or first.kind == "linear":
        n = 1
        for s in shape:
            n *= s
        return (n,)
    return shape


def geometry_of(hw, image_shape=None) -> list[LayerGeometry]:
    """The geometry of every layer of the integer network ``hw``, for inputs of
    ``image_shape`` (C, H, W) (None: ``hw.image_shape``; a dense network without one starts
    from its first layer's fan-in). Raises ValueError, naming the layer, where a layer's
    weights do not fit the activations that reach it."""
    layers = list(getattr(hw, "layers", None) or [])
    if not layers:
        raise ValueError("the network has no layers")
    shape = _input_shape(hw, image_shape)
    out: list[LayerGeometry] = []
    prev_bits = getattr(hw, "input_bits", None)
    for i, layer in enumerate(layers):
        cs = tuple(int(s) for s in layer.codes.shape)
        in_bits = int(layer.in_bits)
        if prev_bits is not None and in_bits != prev_bits:
            src = "the network's input_bits" if i == 0 else f"the output bits of layer {i - 1}"
            raise ValueError(f"layer {i}: in_bits {in_bits} differs from {src} ({prev_bits})")
        if i < len(layers) - 1 and layer.is_output:
            raise ValueError(f"layer {i} is an output layer but not the last one")
        common = dict(outputs=cs[1], in_bits=in_bits, out_bits=int(layer.out_bits),
                      is_output=bool(layer.is_output), flatten=bool(layer.flatten))
        if layer.kind == "linear":
            if len(cs) != 3:
                raise ValueError(f"layer {i}: linear codes must be (N, out, in), not {cs}")
            if shape != (cs[2],):
                raise ValueError(f"layer {i}: a linear layer of fan-in {cs[2]} cannot read "
                                 f"activations of shape {shape} (flatten them first)")
            if int(layer.pool):
                raise ValueError(f"layer {i}: a linear layer cannot pool "
                                 f"(pool = {layer.pool!r})")
            g = LayerGeometry("linear", cs[2], 1, 1, 1, 1, 0, 0, **common)
        elif layer.kind == "conv2d":
            if len(cs) != 5 or cs[3] != cs[4]:
                raise ValueError(f"layer {i}: conv codes must be (N, out, C, k, k), not {cs}")
            if len(shape) != 3 or shape[0] != cs[2]:
                raise ValueError(f"layer {i}: a conv layer of {cs[2]} input channels cannot "
                                 f"read activations of shape {shape}")
            try:
                g = LayerGeometry("conv2d", cs[2], shape[1], shape[2], cs[3],
                                  int(layer.stride), int(layer.padding), int(layer.pool),
                                  **common)
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from None
        else:
            raise ValueError(f"layer {i}: kind must be one of {KINDS}, not {layer.kind!r}")
        out.append(g)
        shape = g.out_shape
        prev_bits = g.out_bits
    if not out[-1].is_output:
        raise ValueError(f"the last layer ({len(out) - 1}) must be the output layer")
    return out


def activation_depth(geometries: list[LayerGeometry]) -> int:
    """Words one bank of the activation memory needs: the largest tensor any layer reads
    (each layer reads one bank, which the previous layer or the image loader wrote)."""
    if not geometries:
        raise ValueError("no layers")
    return max(g.in_size for g in geometries)
