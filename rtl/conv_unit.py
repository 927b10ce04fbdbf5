"""The network core's convolution path: memories, window fetch, pooling and the output writer.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore` when the design has an activation
memory (``RtlParams.act_depth`` > 0). A layer whose input is in memory (a convolution, or the
dense layer after a flatten) has its window, per output position, copied from memory into the
core's window buffer (the flip-flop array the crossbar read path reads rows from); a hidden
convolution writes its outputs, max-pooled on the fly, to the activation memory, which the
next layer reads after a bank swap (docs/HARDWARE.md, "The convolution path"):

* **image memory** (``Memory`` of ``act_depth`` codes of A_in bits): the input stream of a
  network that starts with a convolution; layer 0 reads it in every pass;
* **activation memory** (rtl/act_memory.py, ping-pong, A-bit codes): hidden activations,
  at golden/geometry.py's layout c*H*W + y*W + x;
* **window generator** (rtl/window.py): the im2col address of each row of each position's
  window, one a cycle; a row in the padding is fetched as 0 without a read;
* **geometry**: H_out = (H + 2 padding - k) // stride + 1 (and W_out), the pooled size
  H_out // pool x W_out // pool and its product, formed in the cycles after ``start``;
* **max-pooling** (rtl/maxpool.py) of the comparator vectors of the positions in the
  generator's raster order, and a **writer** that stores each pooled vector, one channel a
  cycle, at c * H_pool*W_pool + pooled position.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .act_memory import ActivationMemory
from .maxpool import MaxPool
from .params import RtlParams, bits_for, check_params
from .window import WindowAddressGenerator

__all__ = ["ConvUnit"]


class ConvUnit(wiring.Component):
    """Image and activation memories, window fetch, pooling and writer of the core.

    Timing: ``start`` in cycle s latches the layer's geometry; the first row of the first
    window can be fetched from cycle s + 3 (generator set-up; H_out / W_out in s + 1, the
    pooling block started in s + 2). While ``fetch`` is high the unit takes the current
    position's rows from the generator, one a cycle, and reads them from the image memory
    (``src_image``) or the activation memory's read bank; each row reaches the window buffer
    the cycle after (``buf_we``, ``buf_row``, ``buf_data``; 0 for a row in the padding).
    ``fetched`` is high in the cycle of the window's last buffer write (with ``last_pos``
    when it was the layer's last position); the unit then takes no more rows until
    ``fetch`` has been low for a cycle.

    ``act_valid`` with ``act_codes`` (a hidden convolution's comparator outputs of the
    position just computed) feeds the pooling block; a pooled vector is written one channel
    a cycle from the cycle after. ``wr_busy``: a vector is being written or is about to be;
    ``act_valid`` must wait while it is high, and the bank swap (``swap``) must come after
    the last write.

    Ports
    -----
    img_we, img_addr, img_data : In
        Write one input code into the image memory.
    start : In(1)
        Begin a layer: latch ``C_in``, ``H``, ``W``, ``k``, ``stride``, ``padding``,
        ``pool``, ``outs`` and ``src_image`` (ignored while the window generator is busy).
    fetch : In(1)
        Fetch the next position's window into the buffer.
    buf_we, buf_row, buf_data : Out
        Window buffer write: row ``buf_row`` of the window holds ``buf_data``.
    fetched, last_pos : Out(1)
        The window is complete (its last row written this cycle); it was the last position.
    act_valid : In(1); act_codes : In(ArrayLayout(unsigned(A), outputs_max))
        A position's activation codes, in the generator's position order.
    wr_busy : Out(1)
        The writer is storing a pooled vector or gets one next cycle.
    pooled_valid, pooled_pos, pooled_codes : Out
        A pooled vector (the pooling block's output) reaches the writer: its pooled
        position (raster order) and codes.
    swap : In(1)
        Exchange the activation memory's banks (the written bank becomes the read bank).
    """

    def __init__(self, params: RtlParams):
        self.params = p = check_params(self, params)
        if not p.conv:
            self._MustUse__silence = True
            raise ValueError(f"ConvUnit needs act_depth > 0, not {p.act_depth!r}")
        self.window = WindowAddressGenerator(
            channels_max=p.rows_max, size_max=p.size_max, kernel_max=p.kernel_max,
            stride_max=p.stride_max, padding_max=p.padding_max, depth=p.act_depth)
        g = self.window.signature.members
        ab = bits_for(p.act_depth)
        super().__init__({
            "img_we": In(1), "img_addr": In(ab), "img_data": In(p.A_in),
            "start": In(1),
            "C_in": In(g["C_in"].shape), "H": In(g["H"].shape), "W": In(g["W"].shape),
            "k": In(g["k"].shape), "stride": In(g["stride"].shape),
            "padding": In(g["padding"].shape), "pool": In(range(p.pool_max + 1)),
            "outs": In(range(p.outputs_max + 1)), "src_image": In(1),
            "fetch": In(1),
            "buf_we": Out(1), "buf_row": Out(bits_for(p.rows_max)), "buf_data": Out(p.A_max),
            "fetched": Out(1), "last_pos": Out(1),
            "act_valid": In(1),
            "act_codes": In(data.ArrayLayout(unsigned(p.A), p.outputs_max)),
            "wr_busy": Out(1),
            "pooled_valid": Out(1), "pooled_pos": Out(bits_for(p.out_size_max ** 2)),
            "pooled_codes": Out(data.ArrayLayout(unsigned(p.A), p.outputs_max)),
            "swap": In(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.window = gen = self.window
        m.submodules.act_mem = act = ActivationMemory(depth=p.act_depth, width=p.A)
        m.submodules.image_mem = img = Memory(shape=unsigned(p.A_in), depth=p.act_depth,
                                              init=[])
        size = p.out_size_max
        m.submodules.pool = pool = MaxPool(channels=p.outputs_max, code_bits=p.A,
                                           width_max=size, height_max=size,
                                           pool_max=max(1, p.pool_max))
        img_w = img.write_port()
        img_r = img.read_port(domain="sync")
        m.d.comb += [img_w.en.eq(self.img_we), img_w.addr.eq(self.img_addr),
                     img_w.data.eq(self.img_data)]

        # --- the layer's geometry, latched on start; derived sizes in the cycles after ----
        names = ("C_in", "H", "W", "k", "stride", "padding", "pool", "outs", "src_image")
        geo = {n: Signal.like(getattr(self, n), name=f"g_{n}") for n in names}
        with m.If(self.start & ~gen.busy):
            m.d.sync += [geo[n].eq(getattr(self, n)) for n in names]
        s1, s2 = Signal(), Signal()                # start delayed by 1 and 2 cycles
        m.d.sync += [s1.eq(self.start & ~gen.busy), s2.eq(s1)]
        span = size + p.kernel_max                 # H + 2 padding, before - k
        H_out, W_out = Signal(range(size + 1)), Signal(range(size + 1))
        H_pool, W_pool = Signal.like(H_out), Signal.like(W_out)
        plane = Signal(range(size * size + 1))     # H_pool * W_pool: one output channel
        pool_k = Mux(geo["pool"] == 0, 1, geo["pool"])
        for out, extent in ((H_out, geo["H"]), (W_out, geo["W"])):
            num = Signal(range(span + 1))
            m.d.comb += num.eq(extent + 2 * geo["padding"] - geo["k"])
            m.d.sync += out.eq(num // geo["stride"] + 1)
        m.d.sync += [H_pool.eq(H_out // pool_k), W_pool.eq(W_out // pool_k),
                     plane.eq(H_pool * W_pool)]
        m.d.comb += [gen.start.eq(s1), gen.C_in.eq(geo["C_in"]), gen.H.eq(geo["H"]),
                     gen.W.eq(geo["W"]), gen.k.eq(geo["k"]), gen.stride.eq(geo["stride"]),
                     gen.padding.eq(geo["padding"]),
                     pool.start.eq(s2), pool.pool.eq(geo["pool"]), pool.H_out.eq(H_out),
                     pool.W_out.eq(W_out)]

        # --- window fetch: address in cycle t, the word (or 0) into the buffer in t + 1 -----
        done = Signal()                            # the last row is taken; wait for ~fetch
        take = Signal()
        m.d.comb += [take.eq(self.fetch & ~done & gen.valid), gen.ready.eq(self.fetch & ~done)]
        with m.If(~self.fetch):
            m.d.sync += done.eq(0)
        with m.Elif(take & gen.last_row):
            m.d.sync += done.eq(1)
        m.d.comb += [img_r.en.eq(take & ~gen.zero), img_r.addr.eq(gen.addr),
                     act.rd_en.eq(take & ~gen.zero), act.rd_addr.eq(gen.addr)]
        t_d, zero_d, last_row_d = Signal(), Signal(), Signal()
        m.d.sync += [t_d.eq(take), zero_d.eq(gen.zero), last_row_d.eq(gen.last_row),
                     self.buf_row.eq(gen.row)]
        with m.If(take & gen.last_row):
            m.d.sync += self.last_pos.eq(gen.last)
        word = Mux(geo["src_image"], img_r.data, act.rd_data)
        m.d.comb += [self.buf_we.eq(t_d), self.buf_data.eq(Mux(zero_d, 0, word)),
                     self.fetched.eq(t_d & last_row_d)]

        # --- pooling and the writer --------------------------------------------------------
        m.d.comb += [pool.in_valid.eq(self.act_valid), pool.in_codes.eq(self.act_codes)]
        ch = Signal(range(p.outputs_max + 1))      # channel being written
        active = Signal()
        addr = Signal(bits_for(p.act_depth * 2))   # ch * plane + pooled position
        m.d.comb += self.wr_busy.eq(active | pool.out_valid)
        lanes = Array(pool.out_codes[j] for j in range(p.outputs_max))
        # out_codes and out_pos hold until the next pooled vector, which comes only after
        # the next act_valid (held off while wr_busy)
        with m.If(pool.out_valid):
            m.d.sync += [active.eq(geo["outs"] > 1), ch.eq(1), addr.eq(pool.out_pos + plane)]
            m.d.comb += [act.wr_en.eq(1), act.wr_addr.eq(pool.out_pos),
                         act.wr_data.eq(pool.out_codes[0])]
        with m.Elif(active):
            m.d.sync += [ch.eq(ch + 1), addr.eq(addr + plane),
                         active.eq(ch + 1 < geo["outs"])]
            m.d.comb += [act.wr_en.eq(1), act.wr_addr.eq(addr), act.wr_data.eq(lanes[ch])]
        m.d.comb += [act.swap.eq(self.swap), self.pooled_valid.eq(pool.out_valid),
                     self.pooled_pos.eq(pool.out_pos), self.pooled_codes.eq(pool.out_codes)]
        return m
