"""The ping-pong activation memory: bank swap, read-after-write order, against a two-bank model."""

import numpy as np
import pytest
from amaranth.back import rtlil, verilog

from spinbayes.rtl.act_memory import ActivationMemory


async def write(ctx, dut, addr, value, swap=0):
    ctx.set(dut.wr_en, 1)
    ctx.set(dut.wr_addr, addr)
    ctx.set(dut.wr_data, value)
    ctx.set(dut.swap, swap)
    await ctx.tick()
    ctx.set(dut.wr_en, 0)
    ctx.set(dut.swap, 0)


async def read(ctx, dut, addr):
    ctx.set(dut.rd_en, 1)
    ctx.set(dut.rd_addr, addr)
    await ctx.tick()
    ctx.set(dut.rd_en, 0)
    return ctx.get(dut.rd_data)


def test_layer_hand_over_through_a_swap(run_sim):
    """A producer fills the write bank (invisible to reads) and swaps in its last write
    cycle; the next cycle's read sees every word; the next producer writes the other bank
    while the first one's words are read."""
    dut = ActivationMemory(depth=6, width=4)

    async def tb(ctx):
        assert ctx.get(dut.bank) == 0
        for a in range(6):
            await write(ctx, dut, a, a + 1, swap=int(a == 5))   # swap with the last write
        assert ctx.get(dut.bank) == 1
        assert [await read(ctx, dut, a) for a in range(6)] == [1, 2, 3, 4, 5, 6]
        # the next layer: reads its input, writes bank 0 at the same addresses meanwhile
        for a in range(6):
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_addr, a)
            ctx.set(dut.wr_en, 1)
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, 15 - a)
            await ctx.tick()
            assert ctx.get(dut.rd_data) == a + 1               # the input, undisturbed
        ctx.set(dut.wr_en, 0)
        ctx.set(dut.swap, 1)
        assert await read(ctx, dut, 2) == 3                     # swap cycle: the old bank
        ctx.set(dut.swap, 0)
        assert ctx.get(dut.bank) == 0
        assert [await read(ctx, dut, a) for a in range(6)] == [15, 14, 13, 12, 11, 10]

    run_sim(dut, tb)


def test_random_operations_against_a_two_bank_model(run_sim):
    """300 cycles of random reads, writes (some beyond depth) and swaps; ``rd_data`` holds
    between reads."""
    depth, width = 5, 3
    dut = ActivationMemory(depth=depth, width=width)
    rng = np.random.default_rng(14)

    async def tb(ctx):
        banks = np.zeros((2, depth), dtype=int)
        bank, data = 0, 0
        for _ in range(300):
            rd_en, wr_en, swap = (int(v) for v in rng.random(3) < (0.6, 0.6, 0.1))
            ra, wa = int(rng.integers(0, depth)), int(rng.integers(0, 2 ** len(dut.wr_addr)))
            wd = int(rng.integers(0, 2 ** width))
            for port, v in ((dut.rd_en, rd_en), (dut.rd_addr, ra), (dut.wr_en, wr_en),
                            (dut.wr_addr, wa), (dut.wr_data, wd), (dut.swap, swap)):
                ctx.set(port, v)
            assert ctx.get(dut.bank) == bank
            await ctx.tick()
            if rd_en:
                data = banks[bank, ra]
            if wr_en and wa < depth:
                banks[1 - bank, wa] = wd
            bank ^= swap
            assert ctx.get(dut.rd_data) == data

    run_sim(dut, tb)


def test_block_ram_and_verilog():
    """One memory of 2 x depth words (a simple dual-port RAM), in RTLIL and Verilog."""
    dut = ActivationMemory(depth=1176, width=4)
    assert len(dut.rd_addr) == 11 and len(dut.rd_data) == 4
    il = rtlil.convert(dut)
    assert "memory width 4 size 2352" in il
    assert "module top" in verilog.convert(ActivationMemory(depth=8, width=1), emit_src=False)


@pytest.mark.parametrize("kw, match", [
    (dict(depth=0), "depth must be a positive integer, not 0"),
    (dict(width="4"), "width must be a positive integer, not '4'"),
])
def test_parameters_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        ActivationMemory(**{**dict(depth=4, width=1), **kw})
