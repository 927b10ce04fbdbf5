"""The core's streams, programming port, reset and activity counters.

In Amaranth's simulator, on a tiny design (N = 3, 2-way, 16-6-10 MLP on 4x4 digits):

* back-pressure: random gaps on ``in_valid`` and random ``out_ready`` stalls (fixed seeds)
  give results bit-identical to the un-stalled run and to the integer reference;
* a programming write presented while the core is busy is held off (``prog_ready`` = 0) and
  lands in the first idle cycle, so the image in flight is unchanged and the next one sees it;
* a synchronous reset in the middle of a pass returns the core to IDLE with every counter
  and descriptor register at its reset value, the cell memories keep their contents, and after
  re-writing the descriptor table the next image equals the integer reference;
* every activity counter of an image equals the count derived from the network shape and the
  arbiters' draws (docs/HARDWARE.md, "Activity counters").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth import ClockDomain, Module, Value

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.arbiter import Arbiter, DeviceBank, device_seed
from spinbayes.golden.layers import input_codes
from spinbayes.golden.mapping import map_model
from spinbayes.golden.mtj import EmulatedRng
from spinbayes.rtl.averaging import divide_cycles
from spinbayes.rtl.network import DRAIN, SpinBayesCore
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.regs import COUNTERS, ReadReg, Reg

TINY = RtlParams(N=3, n_max=2, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                 groups_total=8, T_max=4)
T, SEED, N_WAY = 3, 11, 2


@pytest.fixture(scope="module")
def tiny(tiny_model, tiny_digits):
    mapped = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2)
    hw = mapped.hw(N_WAY)
    x = tiny_digits.x_test[:2]
    program = compile_network(hw, TINY, T=T, seed=SEED)
    codes = input_codes(x, hw.input_bits).flatten(1).numpy()
    return hw, x, program, codes


def simulate(run_sim, program, *testbenches):
    """Run testbenches (async fns of (ctx, dut, rst)) on a core with an explicit sync domain,
    so that a testbench can drive its reset."""
    dut = SpinBayesCore(TINY, program.cells)
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.core = dut

    def bind(tb):
        async def run(ctx):
            await tb(ctx, dut, cd.rst)
        return run

    run_sim(top, *map(bind, testbenches))
    return dut


def run_images(run_sim, tiny, **stalls):
    hw, _, program, codes = tiny
    results = []

    async def tb(ctx, dut, rst):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        for img in codes:
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way, **stalls))

    simulate(run_sim, program, tb)
    return results


@pytest.fixture(scope="module")
def unstalled(tiny, run_sim):
    return run_images(run_sim, tiny)


def test_backpressure_is_bit_identical(tiny, unstalled, check_reference, run_sim):
    hw, x, _, _ = tiny
    stalled = run_images(run_sim, tiny, in_gap=0.4, out_stall=0.5,
                         rng=np.random.default_rng(5))
    check_reference(hw, x, unstalled)
    check_reference(hw, x, stalled)
    for a, b in zip(unstalled, stalled):
        assert np.array_equal(a.per_pass, b.per_pass)
        assert np.array_equal(a.averaged, b.averaged)
        assert a.prediction == b.prediction
        assert np.array_equal(a.choices, b.choices)
        assert b.cycles > a.cycles                         # the stalls did happen
        for name in COUNTERS:
            if name == "cnt_cycles":                       # output stalls keep it busy
                assert b.counters[name] > a.counters[name]
            else:
                assert b.counters[name] == a.counters[name], name


def test_stall_arguments_are_checked(tiny, run_sim):
    _, _, program, codes = tiny

    async def tb(ctx, dut, rst):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        for bad in (dict(in_gap=1.0), dict(out_stall=-0.1)):
            with pytest.raises(ValueError, match="must be a probability"):
                await drv.infer(codes[0], program, 2, N_WAY, **bad)

    simulate(run_sim, program, tb)


def test_programming_write_while_busy_waits_for_idle(tiny, unstalled, check_reference,
                                                     run_sim):
    """A write of PASSES = T + 1 presented mid-image lands only after the image."""
    hw, x, program, codes = tiny
    results, seen = [], []

    async def driver(ctx, dut, rst):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        results.append(await drv.infer(codes[0], program, len(hw.layers), hw.n_way))
        longer = dataclasses.replace(program, T=T + 1)
        results.append(await drv.infer(codes[1], longer, len(hw.layers), hw.n_way))

    async def writer(ctx, dut, rst):
        while not ctx.get(dut.busy):
            await ctx.tick()
        await ctx.tick().repeat(20)                        # well inside the first pass
        ctx.set(dut.prog_en, 1)
        ctx.set(dut.prog_sel, Reg.PASSES)
        ctx.set(dut.prog_data, T + 1)
        while True:
            ready, busy = ctx.get(dut.prog_ready), ctx.get(dut.busy)
            seen.append((ready, busy))
            assert ready == (not busy)
            await ctx.tick()
            if ready:
                break
        ctx.set(dut.prog_en, 0)

    simulate(run_sim, program, driver, writer)
    assert len(seen) > 20 and all(b for _, b in seen[:-1]) and seen[-1] == (1, 0)
    first, second = results
    assert np.array_equal(first.per_pass, unstalled[0].per_pass)
    assert np.array_equal(first.averaged, unstalled[0].averaged)
    assert first.choices.shape[1] == T and second.choices.shape[1] == T + 1
    check_reference(hw, x[:1], [first])
    check_reference(hw, x[1:], [second])


def test_no_image_starts_while_a_write_lands(tiny, run_sim):
    """A descriptor write lands the cycle after it is accepted; in_ready stays low in IDLE in
    the cycle of the write and the two after (the registered copies of the descriptor follow
    one cycle later), so the image sees the new value."""
    _, _, program, codes = tiny
    seen = []

    async def tb(ctx, dut, rst):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        await ctx.tick().repeat(2)
        passes = dut.descriptor["passes"]
        ctx.set(dut.in_valid, 1)
        ctx.set(dut.in_data, int(codes[0][0]))
        seen.append(("idle", ctx.get(dut.in_ready), ctx.get(passes)))
        ctx.set(dut.prog_en, 1)
        ctx.set(dut.prog_sel, Reg.PASSES)
        ctx.set(dut.prog_data, T + 1)
        seen.append(("write", ctx.get(dut.prog_ready), ctx.get(dut.in_ready)))
        await ctx.tick()
        ctx.set(dut.prog_en, 0)
        seen.append(("stage", ctx.get(dut.in_ready), ctx.get(passes)))
        await ctx.tick()
        seen.append(("landed", ctx.get(dut.in_ready), ctx.get(passes), ctx.get(dut.busy)))
        await ctx.tick()
        seen.append(("copied", ctx.get(dut.in_ready), ctx.get(dut.busy)))
        await ctx.tick()
        seen.append(("taken", ctx.get(dut.busy)))

    simulate(run_sim, program, tb)
    assert seen == [("idle", 1, T), ("write", 1, 0), ("stage", 0, T),
                    ("landed", 0, T + 1, 0), ("copied", 1, 0), ("taken", 1)]


def test_reset_mid_inference(tiny, check_reference, run_sim):
    hw, x, program, codes = tiny
    out = {}

    async def tb(ctx, dut, rst):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        ctx.set(dut.out_ready, 1)
        for code in codes[0]:                              # stream the image
            ctx.set(dut.in_valid, 1)
            ctx.set(dut.in_data, int(code))
            while not ctx.get(dut.in_ready):               # the last write is still landing
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.in_valid, 0)
        while not (ctx.get(dut.trace_valid) and ctx.get(dut.trace_pass) == 1):
            await ctx.tick()
        await ctx.tick().repeat(3)                         # inside pass 1, layer 0 reads
        assert ctx.get(dut.busy) and await drv.read(ReadReg.CNT_XBAR_READS) > 0
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        out["after"] = {name: ctx.get(getattr(dut, name)) for name in
                        ("busy", "in_ready", "out_valid", "trace_valid", "stuck",
                         "prog_ready")}
        out["after"].update(await drv.counters())          # through the read port
        regs = {}
        for name, sig in dut.descriptor.items():
            for i, s in enumerate(sig if isinstance(sig, list) else [sig]):
                s = Value.cast(s)                              # a View's own Signal
                regs[f"{name}{i}"] = (ctx.get(s), s.init)
        out["regs"] = regs
        out["bad"] = await drv.verify_cells(program)        # every cell, through vfy_*
        await drv.program(program, cells=False)             # descriptor table only
        out["result"] = await drv.infer(codes[1], program, len(hw.layers), hw.n_way)

    simulate(run_sim, program, tb)
    after = out["after"]
    assert after["busy"] == 0 and after["in_ready"] == 1 and after["prog_ready"] == 1
    assert after["out_valid"] == 0 and after["trace_valid"] == 0 and after["stuck"] == 0
    assert all(after[name] == 0 for name in COUNTERS), after
    changed = {k: v for k, v in out["regs"].items() if v[0] != v[1]}
    assert not changed, f"registers not at their reset values: {changed}"
    assert out["bad"] == []
    check_reference(hw, x[1:], [out["result"]])


def _draws_per_pass(n_images):
    """Draws of every layer's arbiter per (image, pass): the golden arbiter, same seeds."""
    k = TINY.code_bits
    draws = np.zeros((2, n_images, T), dtype=np.int64)
    for layer in range(2):
        bank = DeviceBank([EmulatedRng.from_current(device_seed(SEED, layer, d, k), 230e-6,
                                                    threshold_bits=TINY.rng_bits)
                           for d in range(k)])
        arb = Arbiter(TINY.N, N_WAY, bank)
        for b in range(n_images):
            for t in range(T):
                before = arb.draws
                arb.choose(1)
                draws[layer, b, t] = arb.draws - before
    return draws


def test_activity_counters_match_the_network_shape(tiny, unstalled):
    hw = tiny[0]
    rows = [layer.rows for layer in hw.layers]
    outs = [int(layer.codes.shape[1]) for layer in hw.layers]
    bits = [layer.in_bits for layer in hw.layers]
    reads = [-(-r // TINY.R) * a for r, a in zip(rows, bits)]       # per layer and pass
    C, dc = outs[-1], divide_cycles(TINY)
    draws = _draws_per_pass(len(unstalled))
    for b, r in enumerate(unstalled):
        got = r.counters
        assert got["cnt_aac_ops"] == T * sum(reads)
        assert got["cnt_xbar_reads"] == N_WAY * T * sum(reads)
        assert got["cnt_cmp_ops"] == T * outs[0] * TINY.levels
        assert got["cnt_avg_ops"] == T * C + C
        assert got["cnt_rng_draws"] == draws[:, b].sum()
        cycles = ((rows[0] - 1)                                        # LOAD (beat 0 in IDLE)
                  + sum(reads[i] + int(draws[i, b, t]) + DRAIN + 3 for i in range(2)
                        for t in range(T))
                  + T * (1 + C)                                        # EMIT_Y_WAIT, EMIT_Y
                  + 1 + C * dc + 4 + C + 1)            # FINISH, DIVIDE, EMIT_AVG, EMIT_CLASS
        assert got["cnt_cycles"] == cycles
        # + the IDLE beat (the programming's last write, which keeps in_ready low while it is
        # in its stage and the cycle after, has landed while the driver read the counters)
        assert r.cycles == cycles + 1
