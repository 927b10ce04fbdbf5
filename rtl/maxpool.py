"""Max-pooling on the fly: a layer's activation codes in, its pooled codes out, no frame buffer.

The integer twin is golden/hardware.py's ``HwLayer.activate``: ``F.max_pool2d(a, pool)``,
kernel = stride = pool, the floor of H_out / pool and W_out / pool (trailing rows and columns
that do not fill a window are dropped), applied to the comparator counts of every channel.

**Visiting order it requires**: every output position of the layer exactly once, in raster
order (y = 0 .. H_out-1, x = 0 .. W_out-1 innermost), all channels of a position together (the
comparator bank's vector). This is the order the window generator (rtl/window.py) walks.

**Buffers**: one register vector (the running maximum of the current horizontal run of pool
positions) and a line buffer of W_out/pool partial maxima per channel (``width_max // 2``
words of channels x code_bits bits, an Amaranth ``Memory`` read asynchronously, i.e.
distributed RAM), which holds each pooled column's maximum over the rows of the current
pooled row seen so far.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.geometry import check_int
from .params import bits_for

__all__ = ["MaxPool"]


class MaxPool(wiring.Component):
    """Max-pooling of a stream of activation vectors, kernel = stride = ``pool``.

    On ``start`` the counters are cleared and ``pool``, ``H_out``, ``W_out`` latched. Each
    cycle with ``in_valid`` takes the codes of the next position in raster order. The input
    at (y, x) that completes a pooled window (y % pool = x % pool = pool - 1, inside the
    floor(H_out / pool) x floor(W_out / pool) pooled grid) puts the window's per-channel
    maximum on ``out_codes`` the next cycle with ``out_valid`` = 1, pooled positions in
    raster order, ``out_pos`` = yp * floor(W_out / pool) + xp. ``pool`` 0 or 1 passes every
    input through (one cycle later). Latency 1 cycle; an input may come every cycle; there is
    no back-pressure (the producer must not outrun the consumer of ``out_*``).

    Parameters
    ----------
    channels : int
        Codes per position (the layer's outputs; the comparator bank's width).
    code_bits : int
        Bits of one code (A of the comparators).
    width_max : int
        Largest W_out (output positions per row before pooling).
    height_max : int
        Largest H_out.
    pool_max : int
        Largest pooling kernel.

    Ports
    -----
    start : In(1)
        Begin a layer: clear the counters, latch ``pool``, ``H_out`` and ``W_out``.
    pool : In(pool_max.bit_length())
        Kernel = stride; 0 or 1: no pooling.
    H_out, W_out : In(height_max.bit_length()), In(width_max.bit_length())
        Output positions of the layer before pooling.
    in_valid : In(1)
        ``in_codes`` holds the next position's codes.
    in_codes : In(ArrayLayout(unsigned(code_bits), channels))
        The codes of all channels at one position.
    out_valid : Out(1)
        One cycle per pooled position: ``out_codes`` and ``out_pos`` are valid.
    out_codes : Out(ArrayLayout(unsigned(code_bits), channels))
        Per channel, the maximum over the pooled window.
    out_pos : Out(bits_for(height_max * width_max))
        The pooled position yp * W_pool + xp (counted from 0 at ``start``).
    out_last : Out(1)
        With ``out_valid``: the layer's last pooled position.
    """

    def __init__(self, *, channels: int, code_bits: int, width_max: int, height_max: int,
                 pool_max: int):
        try:
            for name, v in (("channels", channels), ("code_bits", code_bits),
                            ("width_max", width_max), ("height_max", height_max),
                            ("pool_max", pool_max)):
                check_int(name, v)
        except ValueError:
            self._MustUse__silence = True
            raise
        self.channels, self.code_bits, self.pool_max = channels, code_bits, pool_max
        self.width_max, self.height_max = width_max, height_max
        #: Words of the line buffer: the pooled columns of the widest row (pool >= 2).
        self.line_depth = max(1, width_max // 2)
        codes = data.ArrayLayout(unsigned(code_bits), channels)
        super().__init__({
            "start": In(1),
            "pool": In(pool_max.bit_length()),
            "H_out": In(height_max.bit_length()),
            "W_out": In(width_max.bit_length()),
            "in_valid": In(1),
            "in_codes": In(codes),
            "out_valid": Out(1),
            "out_codes": Out(codes),
            "out_pos": Out(bits_for(height_max * width_max)),
            "out_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C, A = self.channels, self.code_bits
        pool = Signal(len(self.pool))
        H = Signal.like(self.H_out)
        W = Signal.like(self.W_out)
        x = Signal(len(self.W_out))             # position in the row
        xi = Signal(len(self.pool))             # x % pool
        xb = Signal(len(self.W_out) + 1)        # x - xi: the window's first column
        xp = Signal(bits_for(self.line_depth))  # pooled column (the line buffer's address)
        yi = Signal(len(self.pool))             # y % pool
        yb = Signal(len(self.H_out) + 1)        # y - yi
        pos = Signal.like(self.out_pos)
        hmax = Signal(C * A)                    # max over x of this row's window so far

        m.submodules.line = line = Memory(shape=unsigned(C * A), depth=self.line_depth,
                                          init=[])
        rd = line.read_port(domain="comb")
        wr = line.write_port()

        def lanes(v):
            return [v[c * A:(c + 1) * A] for c in range(C)]

        def vmax(a, b):
            return [Mux(p > q, p, q) for p, q in zip(lanes(a), lanes(b))]

        def cat(parts):
            out = Signal(C * A)
            m.d.comb += [out[c * A:(c + 1) * A].eq(v) for c, v in enumerate(parts)]
            return out

        inp = self.in_codes.as_value()
        h_new = Signal(C * A)                   # with this input
        m.d.comb += h_new.eq(Mux(xi == 0, inp, cat(vmax(hmax, inp))))
        v_new = Signal(C * A)                   # and with the rows above in the window
        m.d.comb += [rd.addr.eq(xp), v_new.eq(Mux(yi == 0, h_new, cat(vmax(rd.data, h_new))))]

        x_end = xi + 1 == pool
        y_end = yi + 1 == pool
        # a window is complete at its pool-th column of its pool-th row; the trailing rows
        # and columns that do not fill a window never get there (the row end resets xi)
        complete = self.in_valid & x_end

        m.d.comb += [wr.addr.eq(xp), wr.data.eq(v_new), wr.en.eq(complete & ~y_end)]
        m.d.sync += self.out_valid.eq(0)
        with m.If(self.start):
            m.d.sync += [pool.eq(Mux(self.pool == 0, 1, self.pool)), H.eq(self.H_out),
                         W.eq(self.W_out), x.eq(0), xi.eq(0), xb.eq(0), xp.eq(0), yi.eq(0),
                         yb.eq(0), pos.eq(0)]
        with m.Elif(self.in_valid):
            m.d.sync += hmax.eq(h_new)
            with m.If(complete & y_end):
                m.d.sync += [self.out_valid.eq(1), self.out_codes.eq(v_new),
                             self.out_pos.eq(pos), pos.eq(pos + 1),
                             self.out_last.eq((xb + 2 * pool > W) & (yb + 2 * pool > H))]
            with m.If(x + 1 == W):              # the end of a row of positions
                m.d.sync += [x.eq(0), xi.eq(0), xb.eq(0), xp.eq(0)]
                with m.If(y_end):
                    m.d.sync += [yi.eq(0), yb.eq(yb + pool)]
                with m.Else():
                    m.d.sync += yi.eq(yi + 1)
            with m.Else():
                m.d.sync += x.eq(x + 1)
                with m.If(x_end):
                    m.d.sync += [xi.eq(0), xb.eq(xb + pool), xp.eq(xp + 1)]
                with m.Else():
                    m.d.sync += xi.eq(xi + 1)
        return m
