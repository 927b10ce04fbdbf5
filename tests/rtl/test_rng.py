"""SotMtjRng: the synthesizable SOT-MTJ emulation against its golden twin EmulatedRng."""

import numpy as np
import pytest
from amaranth.back import verilog

from spinbayes.golden.mtj import EmulatedRng, p_sw, threshold_for, xorshift32
from spinbayes.rtl.rng import SotMtjRng


def rtl_bits(run_sim, dut, seed, threshold, n, ext=None):
    """Load ``seed``, then step n times sampling ``bit`` in each step's cycle; returns the
    bits and the states after each step. ``ext``: optional array of external bits."""
    bits, states = [], []

    async def tb(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.ext_en, ext is not None)
        ctx.set(dut.step, 1)
        for i in range(n):
            if ext is not None:
                ctx.set(dut.ext_bit, int(ext[i]))
            bits.append(ctx.get(dut.bit))
            await ctx.tick()
            states.append(ctx.get(dut.state))

    run_sim(dut, tb)
    return np.array(bits, dtype=np.uint8), np.array(states, dtype=np.uint32)


def test_bad_parameters():
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="rng_bits must be a positive integer, not"):
            SotMtjRng(bad)
    with pytest.raises(ValueError, match="rng_bits must be at most 32"):
        SotMtjRng(33)


def test_ports_and_verilog():
    dut = SotMtjRng(12)
    assert len(dut.threshold) == 13 and len(dut.seed) == 32 and len(dut.state) == 32
    assert len(dut.bit) == 1 and dut.state.init == 1
    text = verilog.convert(dut, emit_src=False)
    assert "module" in text and "threshold" in text


W230 = threshold_for(float(p_sw(230e-6)), 16)


@pytest.mark.parametrize(("seed", "threshold", "W"), [
    (1, W230, 16),                 # the contract's known-answer case (thr 32768)
    (0xDEADBEEF, 0, 16),           # all zeros
    (0x12345678, 2 ** 16, 16),     # all ones
    (0x9E3779B1, 19661, 16),       # p = 0.3
    (0xFFFFFFFF, 5, 3),            # small W
    (2024, 2 ** 31 + 12345, 32),   # full-width word
    (77, 1, 1),                    # W = 1
])
def test_bits_equal_golden_twin(seed, threshold, W, run_sim):
    n = 2500
    bits, states = rtl_bits(run_sim, SotMtjRng(W), seed, threshold, n)
    twin = EmulatedRng(seed, threshold, W)
    assert np.array_equal(bits, twin.bits(n))
    assert int(states[-1]) == twin.state
    assert np.array_equal(states, EmulatedRng(seed, threshold, W).states(n))
    if threshold == 0:
        assert not bits.any()
    if threshold == 2 ** W:
        assert bits.all()


def test_known_answer_vector(run_sim):
    bits, states = rtl_bits(run_sim, SotMtjRng(16), 1, 32768, 16)
    assert bits.tolist() == [1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0]
    assert int(states[-1]) == 0xC9C495B1


def test_reset_state_load_zero_and_hold(run_sim):
    """Reset state 1; a seed of 0 loads as 1; without step the state holds; load beats step;
    each state update equals golden xorshift32."""
    dut = SotMtjRng(16)
    seen = {}

    async def tb(ctx):
        seen["reset"] = ctx.get(dut.state)
        ctx.set(dut.seed, 0)
        ctx.set(dut.load, 1)
        ctx.set(dut.step, 1)            # load has priority
        await ctx.tick()
        seen["zero"] = ctx.get(dut.state)
        ctx.set(dut.load, 0)
        ctx.set(dut.step, 0)
        await ctx.tick().repeat(3)
        seen["held"] = ctx.get(dut.state)
        ctx.set(dut.step, 1)
        await ctx.tick()
        seen["stepped"] = ctx.get(dut.state)
        ctx.set(dut.seed, 0xCAFEF00D)
        ctx.set(dut.load, 1)
        await ctx.tick()
        seen["loaded"] = ctx.get(dut.state)

    run_sim(dut, tb)
    assert seen == {"reset": 1, "zero": 1, "held": 1, "stepped": xorshift32(1),
                    "loaded": 0xCAFEF00D}


def test_reset_state_is_seed_one(run_sim):
    """Without any load the device runs from state 1: the stream of EmulatedRng(1, ...)."""
    dut = SotMtjRng(16)
    bits = []

    async def tb(ctx):
        ctx.set(dut.threshold, 40000)
        ctx.set(dut.step, 1)
        for _ in range(64):
            bits.append(ctx.get(dut.bit))
            await ctx.tick()

    run_sim(dut, tb)
    assert bits == EmulatedRng(1, 40000, 16).bits(64).tolist()


def test_external_bit_path(run_sim):
    """ext_en replaces the output by ext_bit (e.g. the behavioural MTJRng) while the emulated
    state keeps stepping; threshold is ignored."""
    rng = np.random.default_rng(5)
    ext = rng.integers(0, 2, 300)
    bits, states = rtl_bits(run_sim, SotMtjRng(16), 99, 0, 300, ext=ext)
    assert np.array_equal(bits, ext)
    assert np.array_equal(states, EmulatedRng(99, 0, 16).states(300))
