"""The activation memory: two banks (ping-pong), one read by a layer while it writes the other.

Layer l reads its input codes from the read bank (through the window-address generator,
rtl/window.py) and writes its output codes, pooled (rtl/maxpool.py), to the write bank; the
banks then swap, and layer l + 1 reads what layer l wrote. The image loader is a producer like
any layer: it writes the write bank, then a swap hands it to layer 0. One code per word at the
address of golden/geometry.py's layout (c*H*W + y*W + x).

Both banks are one Amaranth :class:`~amaranth.lib.memory.Memory` of 2 * ``depth`` words with
one synchronous read port and one write port (a simple dual-port block RAM on an FPGA);
bank b holds words b*depth .. b*depth + depth - 1. The depth is this block's own parameter
(golden/geometry.py ``activation_depth``: the largest tensor any layer reads), not the
crossbar's ``rows_max``.

The memory carries yosys's ``no_rw_check`` attribute (:data:`NO_RW_COLLISION`): its read and
write ports never address the same word in one cycle, so yosys need not emulate the read
port's "old data" collision order around the block RAM (without it, ``synth_ecp5`` adds
registers and comparators beside the DP16KD). The attribute changes no simulation.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.geometry import check_int
from .params import bits_for

__all__ = ["NO_RW_COLLISION", "ActivationMemory"]

#: Memory attributes of a memory whose read and write ports never address one word in the
#: same cycle: yosys then maps it to block RAM without collision logic.
NO_RW_COLLISION = {"no_rw_check": 1}


class ActivationMemory(wiring.Component):
    """Ping-pong activation memory of 2 x ``depth`` words of ``width`` bits.

    ``bank`` is the bank read; the other one is written. Timing (all on the rising edge):

    * read: ``rd_addr`` with ``rd_en`` in cycle t gives the word on ``rd_data`` in cycle
      t + 1 (one cycle latency, one read per cycle); ``rd_data`` holds while ``rd_en`` is 0.
      A read of an address >= ``depth`` gives an unspecified word.
    * write: ``wr_data`` at ``wr_addr`` with ``wr_en`` in cycle t is stored at the end of
      cycle t. Addresses >= ``depth`` are not written (they would reach the read bank).
    * swap: ``swap`` in cycle t exchanges the banks from cycle t + 1. A read in cycle t still
      reads the old read bank, a write in cycle t still goes to the old write bank, so a word
      written in any cycle up to and including the swap cycle is read from cycle t + 1 on.

    The read and write ports never address the same bank, so there is no read-during-write
    collision to order (hence :data:`NO_RW_COLLISION`).

    Parameters
    ----------
    depth : int
        Words per bank (addresses 0 .. depth-1).
    width : int
        Bits per word (one activation code: max(A_in, A)).

    Ports
    -----
    swap : In(1)
        Exchange the read and write banks on this clock edge.
    bank : Out(1)
        The bank read now (0 after reset); 1 - bank is written.
    rd_en : In(1)
        Read this cycle.
    rd_addr : In(bits_for(depth))
        Address in the read bank.
    rd_data : Out(width)
        The word read by the previous cycle's ``rd_en``.
    wr_en : In(1)
        Write this cycle.
    wr_addr : In(bits_for(depth))
        Address in the write bank.
    wr_data : In(width)
        The word to write.
    """

    def __init__(self, *, depth: int, width: int):
        try:
            check_int("depth", depth)
            check_int("width", width)
        except ValueError:
            self._MustUse__silence = True
            raise
        self.depth, self.width = depth, width
        ab = bits_for(depth)
        super().__init__({
            "swap": In(1),
            "bank": Out(1),
            "rd_en": In(1),
            "rd_addr": In(ab),
            "rd_data": Out(width),
            "wr_en": In(1),
            "wr_addr": In(ab),
            "wr_data": In(width),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=2 * d, init=[],
                                         attrs=NO_RW_COLLISION)
        rd = mem.read_port(domain="sync")
        wr = mem.write_port()
        bank = Signal()
        with m.If(self.swap):
            m.d.sync += bank.eq(~bank)
        m.d.comb += [
            self.bank.eq(bank),
            rd.en.eq(self.rd_en),
            rd.addr.eq(Mux(bank, self.rd_addr + d, self.rd_addr)),
            self.rd_data.eq(rd.data),
            wr.en.eq(self.wr_en & (self.wr_addr < d)),
            wr.addr.eq(Mux(bank, self.wr_addr, self.wr_addr + d)),
            wr.data.eq(self.wr_data),
        ]
        return m
