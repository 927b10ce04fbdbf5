"""The network core's convolution path: memories, window fetch, pooling and the output writer.

Part of :class:`~spinbayes.rtl.network.SpinBayesCore` when the design has an activation
memory (``RtlParams.act_depth`` > 0). A layer whose input is in memory (a convolution, or the
dense layer after one) has its window, per output position, copied from memory into the
core's window buffer (the flip-flop array the crossbar read path reads rows from); a hidden
convolution writes its outputs, max-pooled on the fly, to the activation memory, which the
next layer reads after a bank swap (docs/HARDWARE.md, "The convolution path"):

* **image memory** (``Memory`` of ``image_depth`` codes of A_in bits, one code a word at
  golden/geometry.py's address c*H*W + y*W + x): the input stream of a network that starts
  with a convolution; layer 0 reads it in every pass, one code a cycle, its window rows in
  the order c*k*k + ky*k + kx;
* **activation memory** (rtl/act_memory.py, ping-pong): one word per pixel (address y*W + x)
  holding the ``act_channels`` codes of all channels of that pixel, so a window row of every
  channel is one read: a convolution reads its window k*k words, rows (ky*k + kx)*C_in + c;
  the dense layer after a convolution reads the H*W words of the flattened tensor, rows
  (y*W + x)*C + c (the compiler orders the crossbar rows to match);
* **window generator** (rtl/window.py): the im2col addresses, one a cycle (with C_in = 1
  for the activation memory: pixel addresses); a row in the padding is fetched as 0 without a
  read;
* **geometry**: H_out = (H + 2 padding - k) // stride + 1 (and W_out) and the pooled size
  H_pool*W_pool (the flattened tensor's pixels, for the dense layer after), formed in the
  cycles after ``start``;
* **max-pooling** (rtl/maxpool.py) of the comparator vectors of the positions in the
  generator's raster order; each pooled vector is written in one cycle at its pooled
  position.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .act_memory import NO_RW_COLLISION, ActivationMemory
from .maxpool import MaxPool
from .params import RtlParams, bits_for, check_params
from .window import WindowAddressGenerator

__all__ = ["ConvUnit", "window_write"]


class ConvUnit(wiring.Component):
    """Image and activation memories, window fetch, pooling and writer of the core.

    Timing: ``start`` in cycle s latches the layer's geometry; the first word of the first
    window can be fetched from cycle s + 3 (generator set-up; H_out / W_out in s + 1, the
    pooling block started in s + 2). While ``fetch`` is high the unit takes the current
    position's words from the generator, one a cycle, and reads them from the image memory
    (``src_image``) or the activation memory's read bank; each reaches the window buffer the
    cycle after (``buf_we``: rows ``buf_base`` .. ``buf_base + buf_count - 1`` get
    ``buf_lanes[0 ..]``; 0 for a word in the padding). ``fetched`` is high in the cycle of the
    window's last buffer write (with ``last_pos`` when it was the layer's last position); no
    word is taken between a window's last word and that cycle, and from the cycle after it
    the next position's window is fetched while ``fetch`` is high.

    ``act_valid`` with ``act_codes`` (a hidden convolution's comparator outputs of the
    position just computed) feeds the pooling block; a pooled vector is written to the
    activation memory's write bank in the cycle after (``pooled_valid``), so a ``swap`` in
    that cycle or later hands it to the next layer.

    Ports
    -----
    img_we, img_addr, img_data : In
        Write one input code into the image memory.
    start : In(1)
        Begin a layer: latch ``C_in``, ``H``, ``W``, ``k``, ``stride``, ``padding``,
        ``pool``, ``src_image`` (layer 0: the image memory), ``is_conv`` (a convolution; else
        the dense layer after one, which reads the whole flattened tensor) and ``word_ch``
        (the codes of the input in one activation word: the previous layer's outputs).
        Ignored while the window generator is busy.
    fetch : In(1)
        Fetch the next position's window into the buffer.
    skip : In(1)
        The window is not needed (first-layer reuse, every chosen crossbar kept): each word
        taken ends its window, so a position's fetch takes one word (rtl/window.py ``skip``).
    buf_we, buf_base, buf_count, buf_lanes : Out
        Window buffer write (see above).
    fetched, last_pos : Out(1)
        The window is complete (its last word written this cycle); it was the last position.
    act_valid : In(1); act_codes : In(ArrayLayout(unsigned(A), act_channels))
        A position's activation codes, in the generator's position order.
    pooled_valid, pooled_pos, pooled_codes : Out
        A pooled vector is written this cycle: its pooled position (raster order), codes.
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
            stride_max=p.stride_max, padding_max=p.padding_max,
            depth=max(p.act_depth, p.image_depth))
        g = self.window.signature.members
        codes = data.ArrayLayout(unsigned(p.A), p.act_channels)
        super().__init__({
            "img_we": In(1), "img_addr": In(bits_for(p.image_depth)), "img_data": In(p.A_in),
            "start": In(1),
            "C_in": In(g["C_in"].shape), "H": In(g["H"].shape), "W": In(g["W"].shape),
            "k": In(g["k"].shape), "stride": In(g["stride"].shape),
            "padding": In(g["padding"].shape), "pool": In(range(p.pool_max + 1)),
            "src_image": In(1), "is_conv": In(1), "word_ch": In(range(p.act_channels + 1)),
            "fetch": In(1), "skip": In(1),
            "buf_we": Out(1), "buf_base": Out(range(p.rows_max + p.act_channels)),
            "buf_count": Out(range(p.act_channels + 1)),
            "buf_lanes": Out(data.ArrayLayout(unsigned(p.A_max), p.act_channels)),
            "fetched": Out(1), "last_pos": Out(1),
            "act_valid": In(1), "act_codes": In(codes),
            "pooled_valid": Out(1), "pooled_pos": Out(bits_for(p.out_size_max ** 2)),
            "pooled_codes": Out(codes),
            "swap": In(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.window = gen = self.window
        m.submodules.act_mem = act = ActivationMemory(depth=p.act_depth,
                                                      width=p.act_channels * p.A)
        # written in IDLE / LOAD only, read while computing: never both in one cycle
        m.submodules.image_mem = img = Memory(shape=unsigned(p.A_in), depth=p.image_depth,
                                              init=[], attrs=NO_RW_COLLISION)
        size = p.out_size_max
        m.submodules.pool = pool = MaxPool(channels=p.act_channels, code_bits=p.A,
                                           width_max=size, height_max=size,
                                           pool_max=max(1, p.pool_max))
        img_w = img.write_port()
        img_r = img.read_port(domain="sync")
        m.d.comb += [img_w.en.eq(self.img_we), img_w.addr.eq(self.img_addr),
                     img_w.data.eq(self.img_data)]

        # --- the layer's geometry, latched on start; derived sizes in the cycles after ----
        names = ("C_in", "H", "W", "k", "stride", "padding", "pool", "src_image", "is_conv",
                 "word_ch")
        geo = {n: Signal.like(getattr(self, n), name=f"g_{n}") for n in names}
        with m.If(self.start & ~gen.busy):
            m.d.sync += [geo[n].eq(getattr(self, n)) for n in names]
        s1, s2 = Signal(), Signal()                # start delayed by 1 and 2 cycles
        m.d.sync += [s1.eq(self.start & ~gen.busy), s2.eq(s1)]
        span = size + p.kernel_max                 # H + 2 padding, before - k
        H_out, W_out = Signal(range(size + 1)), Signal(range(size + 1))
        H_pool, W_pool = Signal.like(H_out), Signal.like(W_out)
        # H_pool * W_pool of the last convolution: the pixels of the tensor it wrote
        plane = Signal(range(size * size + 1))
        pool_k = Mux(geo["pool"] == 0, 1, geo["pool"])
        for out, extent in ((H_out, geo["H"]), (W_out, geo["W"])):
            num = Signal(range(span + 1))
            m.d.comb += num.eq(extent + 2 * geo["padding"] - geo["k"])
            m.d.sync += out.eq(num // geo["stride"] + 1)
        m.d.sync += [H_pool.eq(H_out // pool_k), W_pool.eq(W_out // pool_k)]
        with m.If(geo["is_conv"]):
            m.d.sync += plane.eq(H_pool * W_pool)
        # the generator walks codes (image: C_in x H x W), pixels (a convolution on the
        # activation memory: one channel) or the flattened tensor's pixels (the dense layer)
        flat = ~geo["src_image"] & ~geo["is_conv"]
        m.d.comb += [gen.start.eq(s1),
                     gen.C_in.eq(Mux(geo["src_image"], geo["C_in"], Mux(flat, plane, 1))),
                     gen.H.eq(Mux(flat, 1, geo["H"])), gen.W.eq(Mux(flat, 1, geo["W"])),
                     gen.k.eq(Mux(flat, 1, geo["k"])),
                     gen.stride.eq(Mux(flat, 1, geo["stride"])),
                     gen.padding.eq(Mux(flat, 0, geo["padding"])),
                     pool.start.eq(s2), pool.pool.eq(geo["pool"]), pool.H_out.eq(H_out),
                     pool.W_out.eq(W_out)]

        # --- window fetch: address in cycle t, the word (or 0) into the buffer in t + 1 -----
        done = Signal()                            # the last word is taken, not yet written
        take = Signal()
        m.d.comb += [take.eq(self.fetch & ~done & gen.valid), gen.ready.eq(self.fetch & ~done),
                     gen.skip.eq(self.skip)]
        with m.If(self.fetched):
            m.d.sync += done.eq(0)
        with m.Elif(take & gen.last_row):
            m.d.sync += done.eq(1)
        m.d.comb += [img_r.en.eq(take & ~gen.zero), img_r.addr.eq(gen.addr),
                     act.rd_en.eq(take & ~gen.zero), act.rd_addr.eq(gen.addr)]
        # rows of one word: an image code is one row, an activation word word_ch rows
        step = Mux(geo["src_image"], 1, geo["word_ch"])
        base = Signal.like(self.buf_base)          # first row of the word taken next
        with m.If(take):
            m.d.sync += base.eq(Mux(gen.last_row, 0, base + step))
        t_d, zero_d, last_row_d = Signal(), Signal(), Signal()
        m.d.sync += [t_d.eq(take), zero_d.eq(gen.zero), last_row_d.eq(gen.last_row),
                     self.buf_base.eq(base)]
        with m.If(take & gen.last_row):
            m.d.sync += self.last_pos.eq(gen.last)
        word = act.rd_data
        for j in range(p.act_channels):
            lane = img_r.data if j == 0 else 0
            lane = Mux(geo["src_image"], lane, word[j * p.A:(j + 1) * p.A])
            m.d.comb += self.buf_lanes[j].eq(Mux(zero_d, 0, lane))
        m.d.comb += [self.buf_we.eq(t_d), self.buf_count.eq(step),
                     self.fetched.eq(t_d & last_row_d)]

        # --- pooling and the writer: one pooled vector, one word, one cycle -----------------
        m.d.comb += [pool.in_valid.eq(self.act_valid), pool.in_codes.eq(self.act_codes),
                     act.wr_en.eq(pool.out_valid), act.wr_addr.eq(pool.out_pos),
                     act.wr_data.eq(pool.out_codes.as_value()),
                     act.swap.eq(self.swap), self.pooled_valid.eq(pool.out_valid),
                     self.pooled_pos.eq(pool.out_pos), self.pooled_codes.eq(pool.out_codes)]
        return m


def window_write(m, bufs, sel, cu, p) -> None:
    """Window buffer ``bufs[sel]`` (of two, rows_max codes each) takes the ConvUnit ``cu``'s
    fetched word: rows buf_base .. buf_base + buf_count - 1 get lanes 0 .. buf_count - 1.

    The rows to write and their codes come from two shifts of the whole word (lane j at row
    buf_base + j), so each row is one enable and one slice: a simulator evaluates two
    word-wide shifts a cycle instead of a subtraction, two comparisons and a 16-way
    selection for each of rows_max rows (Verilator 2x faster on LeNet-5; docs/COVERIFICATION.md,
    "LeNet-5")."""
    A = p.A_max
    rows = Signal(p.rows_max, name="wb_rows")          # the rows written this cycle
    data = Signal(p.rows_max * A, name="wb_data")      # lane i - buf_base at row i
    m.d.comb += [rows.eq(((1 << cu.buf_count) - 1) << cu.buf_base),
                 data.eq(cu.buf_lanes.as_value() << (cu.buf_base * A))]
    with m.If(cu.buf_we):
        for i in range(p.rows_max):
            with m.If(rows[i]):
                with m.If(sel):
                    m.d.sync += bufs[1][i].eq(data[i * A:(i + 1) * A])
                with m.Else():
                    m.d.sync += bufs[0][i].eq(data[i * A:(i + 1) * A])
