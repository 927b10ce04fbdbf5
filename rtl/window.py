"""The input address generator: im2col windows over the activation memory, one row a cycle.

For each output position of a layer it produces, row by row in the order the crossbar reads
them (row = group*R + r), the activation-memory address of that row's input code, or a
"zero" flag where the window lies in the padding. Dense layers are its special case: with the
geometry of golden/geometry.py (C_in = fan-in, H = W = k = stride = 1, padding = 0) there is
one position and row r reads address r.

**Row order**, matching ``F.unfold`` and the weight codes' (out, C, k, k) layout:
row = c*k*k + ky*k + kx, c outermost, kx innermost. **Position order**: raster, (y, x) with x
innermost, column p of ``F.unfold``. **Address** of row (c, ky, kx) at position (y, x), with
iy = y*stride - padding + ky and ix = x*stride - padding + kx: c*H*W + iy*W + ix (the layout
of golden/geometry.py), and ``zero`` = 1 when iy or ix falls outside 0..H-1 / 0..W-1.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.geometry import check_int
from .params import bits_for

__all__ = ["WindowAddressGenerator"]


class WindowAddressGenerator(wiring.Component):
    """im2col addresses of one layer's windows (see the module docstring for the order).

    On ``start`` (while not busy) the geometry ports are latched; one set-up cycle later the
    first row of position (0, 0) is on the outputs with ``valid`` = 1. A row is taken when
    ``valid`` and ``ready`` are both 1; the next row is on the outputs the cycle after, so
    with ``ready`` held at 1 the generator gives **one address per cycle**, positions back to
    back (latency: ``start`` at cycle t, first address at t + 2; throughput: 1 row/cycle,
    C_in*k*k*H_out*W_out cycles per layer). After the last row of the last position is taken
    ``busy`` falls (the next cycle accepts a ``start``). A ``start`` while busy is ignored.

    Only additions in the loop: the address is kept as running sums (channel base
    c*H*W, row base iy*W, ix); the products H*W, stride*W and padding*W are formed once in
    the set-up cycle. The number of positions comes from the window leaving the padded image
    (x*stride - padding + k <= W + padding), so no division is needed.

    The geometry must be in contract (golden/geometry.py ``LayerGeometry`` validates it):
    C_in, H, W, k, stride >= 1, k <= H + 2*padding and k <= W + 2*padding, and
    C_in*H*W <= depth. Out-of-contract values give meaningless addresses, never a hang.

    Parameters
    ----------
    channels_max : int
        Most input channels (for a dense layer: the largest fan-in).
    size_max : int
        Largest H and W of an input tensor.
    kernel_max : int
        Largest window k.
    stride_max : int
        Largest stride.
    padding_max : int
        Largest padding (0: no padding support).
    depth : int
        Words of one activation-memory bank (addresses 0 .. depth-1).

    Ports
    -----
    start : In(1)
        Begin a layer: latch the geometry below (sampled on the clock edge, ignored while
        busy).
    C_in : In(channels_max.bit_length())
        Input channels (dense: the fan-in).
    H, W : In(size_max.bit_length())
        Input height and width (dense: 1).
    k : In(kernel_max.bit_length())
        Window size (dense: 1).
    stride : In(stride_max.bit_length())
        Window step (dense: 1).
    padding : In(max(1, padding_max.bit_length()))
        Zero border (dense: 0).
    ready : In(1)
        The consumer takes the row on the outputs this cycle (when ``valid``).
    skip : In(1)
        The row taken this cycle ends its window (``last_row`` = 1): the next position's
        first row follows, so a window not needed costs one row (the core's first-layer
        reuse in a pass whose crossbars are all kept, rtl/reuse.py).
    valid : Out(1)
        A row is on ``addr`` / ``zero`` / ``row`` / ``last_row`` / ``last``.
    addr : Out(bits_for(depth))
        Activation-memory address of the row's code (0 when ``zero``).
    zero : Out(1)
        The row lies in the padding: its code is 0, nothing is read.
    row : Out(bits_for(channels_max * kernel_max**2))
        The row's index within the window, c*k*k + ky*k + kx (0 at every position's start).
    last_row : Out(1)
        The last row of this position's window.
    last : Out(1)
        The last row of the layer (last row of the last position).
    busy : Out(1)
        From the cycle after ``start`` until the last row is taken.
    """

    def __init__(self, *, channels_max: int, size_max: int, kernel_max: int, stride_max: int,
                 padding_max: int, depth: int):
        try:
            for name, v in (("channels_max", channels_max), ("size_max", size_max),
                            ("kernel_max", kernel_max), ("stride_max", stride_max),
                            ("depth", depth)):
                check_int(name, v)
            check_int("padding_max", padding_max, 0)
        except ValueError:
            self._MustUse__silence = True
            raise
        self.channels_max, self.size_max, self.kernel_max = channels_max, size_max, kernel_max
        self.stride_max, self.padding_max, self.depth = stride_max, padding_max, depth
        self.rows_max = channels_max * kernel_max ** 2
        # the running sums span -padding*(W+1) .. C*H*W + padding*(W+1): one signed width
        span = (max(depth, channels_max * size_max ** 2)
                + (size_max + padding_max + stride_max) * (size_max + 1) + padding_max)
        self.sum_bits = span.bit_length() + 1
        super().__init__({
            "start": In(1),
            "C_in": In(channels_max.bit_length()),
            "H": In(size_max.bit_length()),
            "W": In(size_max.bit_length()),
            "k": In(kernel_max.bit_length()),
            "stride": In(stride_max.bit_length()),
            "padding": In(max(1, padding_max.bit_length())),
            "ready": In(1),
            "skip": In(1),
            "valid": Out(1),
            "addr": Out(bits_for(depth)),
            "zero": Out(1),
            "row": Out(bits_for(self.rows_max)),
            "last_row": Out(1),
            "last": Out(1),
            "busy": Out(1),
        })

    @classmethod
    def for_layers(cls, geometries, depth: int | None = None) -> WindowAddressGenerator:
        """The smallest generator for the layers' geometries (golden/geometry.py); ``depth``
        None: the largest input tensor (``activation_depth``)."""
        from ..golden.geometry import activation_depth

        g = list(geometries)
        if not g:
            raise ValueError("no layers")
        return cls(channels_max=max(x.C_in for x in g), size_max=max(max(x.H, x.W) for x in g),
                   kernel_max=max(x.k for x in g), stride_max=max(x.stride for x in g),
                   padding_max=max(x.padding for x in g),
                   depth=activation_depth(g) if depth is None else depth)

    def elaborate(self, platform):
        m = Module()
        sb = self.sum_bits
        # latched geometry
        C = Signal.like(self.C_in)
        H = Signal.like(self.H)
        W = Signal.like(self.W)
        k = Signal.like(self.k)
        s = Signal.like(self.stride)
        p = Signal.like(self.padding)
        HW = Signal(sb)                        # H*W: channel step
        sW = Signal(sb)                        # stride*W: output-row step
        # counters and running sums
        c = Signal(len(self.C_in))
        ky = Signal(len(self.k))
        kx = Signal(len(self.k))
        row = Signal.like(self.row)
        x0 = Signal(signed(sb))                # x*stride - padding
        y0 = Signal(signed(sb))                # y*stride - padding
        ix = Signal(signed(sb))                # x0 + kx
        iy = Signal(signed(sb))                # y0 + ky
        y0W = Signal(signed(sb))               # y0*W
        chan = Signal(sb)                      # c*H*W
        row_base = Signal(signed(sb))          # c*H*W + iy*W

        skip = self.skip
        last_kx = (kx + 1 == k) | skip
        last_ky = (ky + 1 == k) | skip
        last_c = (c + 1 == C) | skip
        x_more = x0 + s + k <= W + p           # the next position in this output row fits
        y_more = y0 + s + k <= H + p           # the next output row fits
        win_end = last_kx & last_ky & last_c
        full = Signal(signed(sb + 1))
        m.d.comb += full.eq(row_base + ix)
        outside = (iy < 0) | (iy >= H) | (ix < 0) | (ix >= W)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [C.eq(self.C_in), H.eq(self.H), W.eq(self.W), k.eq(self.k),
                                 s.eq(self.stride), p.eq(self.padding)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [HW.eq(H * W), sW.eq(s * W),
                             c.eq(0), ky.eq(0), kx.eq(0), row.eq(0), chan.eq(0),
                             x0.eq(-p), y0.eq(-p), ix.eq(-p), iy.eq(-p),
                             y0W.eq(-(p * W)), row_base.eq(-(p * W))]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), self.valid.eq(1), self.zero.eq(outside),
                             self.addr.eq(Mux(outside, 0, full)), self.row.eq(row),
                             self.last_row.eq(win_end),
                             self.last.eq(win_end & ~x_more & ~y_more)]
                with m.If(self.ready):
                    with m.If(~last_kx):
                        m.d.sync += [kx.eq(kx + 1), ix.eq(ix + 1), row.eq(row + 1)]
                    with m.Elif(~last_ky):
                        m.d.sync += [kx.eq(0), ix.eq(x0), ky.eq(ky + 1), iy.eq(iy + 1),
                                     row_base.eq(row_base + W), row.eq(row + 1)]
                    with m.Elif(~last_c):
                        m.d.sync += [kx.eq(0), ix.eq(x0), ky.eq(0), iy.eq(y0), c.eq(c + 1),
                                     chan.eq(chan + HW), row_base.eq(chan + HW + y0W),
                                     row.eq(row + 1)]
                    with m.Else():              # window done: the next position
                        m.d.sync += [kx.eq(0), ky.eq(0), c.eq(0), chan.eq(0), row.eq(0)]
                        with m.If(x_more):
                            m.d.sync += [x0.eq(x0 + s), ix.eq(x0 + s), iy.eq(y0),
                                         row_base.eq(y0W)]
                        with m.Elif(y_more):
                            m.d.sync += [x0.eq(-p), ix.eq(-p), y0.eq(y0 + s), iy.eq(y0 + s),
                                         y0W.eq(y0W + sW), row_base.eq(y0W + sW)]
                        with m.Else():
                            m.next = "IDLE"
        return m
