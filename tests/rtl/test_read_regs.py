"""The core's register read path (rtl/status.py) and the driver's reads through it.

In Amaranth's simulator, on a tiny design (N = 3, 2-way, 16-6-10 MLP on 4x4 digits):

* the port's widths come from rtl/regs.py (``READ_FIELDS``), its latency is one cycle;
* STATUS before programming, while the last write lands, after programming, during an image
  and after it; every counter after two images equals the count the network's shape gives
  and the core's own counter register;
* a select that is not a ``ReadReg`` (the reserved health selects included) reads
  ``READ_UNKNOWN``; the driver refuses selects and indices that do not fit the port;
* ALARM: an arbiter stuck on an RNG that never switches sets it, a reset clears it;
* docs/HARDWARE.md's read-register and status tables list exactly the enums.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from amaranth import ClockDomain, Module, Shape

from spinbayes.firmware.compiler import Write, compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.energy_model import COUNTER_OF
from spinbayes.golden.layers import input_codes
from spinbayes.golden.mapping import map_model
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.regs import (
    COUNTER_REGS,
    COUNTERS,
    HEALTH_REGS,
    READ_DATA_BITS,
    READ_FIELDS,
    READ_UNKNOWN,
    ReadReg,
    Reg,
    Status,
)
from spinbayes.rtl.status import READ_LATENCY

TINY = RtlParams(N=3, n_max=2, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                 groups_total=8, T_max=4)
T, N_WAY = 3, 2
DOCS = Path(__file__).resolve().parents[2] / "docs" / "HARDWARE.md"


@pytest.fixture(scope="module")
def tiny(tiny_model, tiny_digits):
    hw = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2).hw(N_WAY)
    program = compile_network(hw, TINY, T=T, seed=11)
    return hw, program, input_codes(tiny_digits.x_test[:2], hw.input_bits).flatten(1).numpy()


def test_port_widths_come_from_the_register_map():
    members = SpinBayesCore(TINY).signature.members
    for name, bits in READ_FIELDS:
        assert Shape.cast(members[f"rd_{name}"].shape).width == bits
    assert Shape.cast(members["rd_data"].shape).width == READ_DATA_BITS
    assert max(ReadReg) < 2 ** dict(READ_FIELDS)["sel"] <= 32
    assert COUNTERS == ("cnt_xbar_reads", "cnt_rng_draws", "cnt_aac_ops", "cnt_cmp_ops",
                        "cnt_avg_ops", "cnt_cycles")
    assert set(HEALTH_REGS) <= set(ReadReg) and READ_LATENCY == 1


def test_status_and_counters_through_an_image(tiny, run_sim):
    hw, program, codes = tiny
    seen, images = {}, []
    dut = SpinBayesCore(TINY, program.cells)

    async def driver(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        seen["reset"] = await drv.status()
        await drv.program(program, cells=False)
        seen["landing"] = await drv.status()               # the last write in its stage
        await ctx.tick()
        seen["programmed"] = await drv.status()
        for img in codes:
            images.append(await drv.infer(img, program, len(hw.layers), hw.n_way))
            seen.setdefault("after", []).append(await drv.status())
        seen["counters"] = await drv.counters()
        seen["registers"] = {n: ctx.get(dut.counters[n]) for n in COUNTERS}
        seen["unknown"] = await drv.read_regs([s for s in range(32) if s not in set(ReadReg)],
                                              index=1)

    async def spy(ctx):
        """Mid-image (the driver leaves rd_en low while it streams): STATUS, then CNT_CYCLES
        twice back to back; each value is the register's in the cycle of its request."""
        for image in range(2):
            while not ctx.get(dut.busy):
                await ctx.tick()
            await ctx.tick().repeat(10)
            ctx.set(dut.rd_en, 1)
            got = []
            for sel in (ReadReg.STATUS, ReadReg.CNT_CYCLES, ReadReg.CNT_CYCLES):
                ctx.set(dut.rd_sel, sel)
                await ctx.tick()
                got.append((ctx.get(dut.rd_valid), ctx.get(dut.rd_data)))
            ctx.set(dut.rd_en, 0)
            seen[f"busy{image}"] = got
            while ctx.get(dut.busy):
                await ctx.tick()

    run_sim(dut, driver, spy)
    assert seen["reset"] == Status.READY
    assert seen["landing"] == Status.PROGRAMMED                # in_ready low while it lands
    assert seen["programmed"] == Status.PROGRAMMED | Status.READY
    assert seen["after"] == [Status.PROGRAMMED | Status.READY | Status.DONE] * 2
    for image in range(2):                     # DONE of image 0 cleared by image 1's first beat
        (v0, status), (v1, c1), (v2, c2) = seen[f"busy{image}"]
        assert v0 == v1 == v2 == 1
        assert status == Status.BUSY | Status.PROGRAMMED and c2 == c1 + 1
    got = seen["counters"]
    assert got == seen["registers"]
    rows = [layer.rows for layer in hw.layers]
    bits = [layer.in_bits for layer in hw.layers]
    reads = sum(-(-r // TINY.R) * a for r, a in zip(rows, bits))         # per pass
    C, hidden = int(hw.layers[-1].codes.shape[1]), int(hw.layers[0].codes.shape[1])
    assert got["cnt_aac_ops"] == 2 * T * reads
    assert got["cnt_xbar_reads"] == N_WAY * 2 * T * reads
    assert got["cnt_cmp_ops"] == 2 * T * hidden * TINY.levels
    assert got["cnt_avg_ops"] == 2 * (T * C + C)
    for name in COUNTERS:                      # the driver's per-image counters add up
        assert sum(r.counters[name] for r in images) == got[name], name
    assert seen["unknown"] == [READ_UNKNOWN] * (32 - len(ReadReg))


def test_alarm_from_a_stuck_arbiter_and_reset(tiny, run_sim):
    """RNG threshold 0: every device reads 0, every code is crossbar 0, so the 2-way
    arbiter's second draw is rejected for ever: stuck (ALARM) after 64 * 2^k rejections and
    the core stays busy; a reset clears ALARM, BUSY and PROGRAMMED."""
    _, program, codes = tiny
    seen = {}
    dut = SpinBayesCore(TINY, program.cells)
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.core = dut

    async def tb(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        await drv.write(Write(Reg.RNG_THRESHOLD, data=0))
        ctx.set(dut.in_valid, 1)
        for code in codes[0]:
            ctx.set(dut.in_data, int(code))
            while not ctx.get(dut.in_ready):               # the last write is landing
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.in_valid, 0)
        await ctx.tick().repeat(64 * 2 ** TINY.code_bits + 20)
        seen["stuck"] = await drv.status()
        seen["draws"] = await drv.read(ReadReg.CNT_RNG_DRAWS)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        seen["reset"] = await drv.status()
        seen["counters"] = await drv.counters()

    run_sim(top, tb)
    assert seen["stuck"] == Status.BUSY | Status.PROGRAMMED | Status.ALARM
    assert seen["draws"] > 64 * 2 ** TINY.code_bits
    assert seen["reset"] == Status.READY
    assert seen["counters"] == dict.fromkeys(COUNTERS, 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(regs=[32]), r"read sel must be an integer in 0\.\.31 \(rd_sel has 5 bits\), not 32"),
    (dict(regs=[-1]), r"read sel must be an integer in 0\.\.31"),
    (dict(regs=[ReadReg.STATUS], index=256), r"read index must be an integer in 0\.\.255"),
    (dict(regs=[True]), r"read sel must be an integer .* not True"),
])
def test_driver_refuses_reads_that_do_not_fit_the_port(kwargs, message, run_sim):
    dut = SpinBayesCore(TINY)

    async def tb(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        with pytest.raises(ValueError, match=message):
            await drv.read_regs(**kwargs)
        assert ctx.get(dut.rd_en) == 0

    run_sim(dut, tb)


def _doc_table(heading: str) -> dict[str, int]:
    """`NAME` -> number of the first two columns of the table under ``heading``."""
    text = DOCS.read_text()
    part = text[text.index(heading):]
    rows = re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", part.split("\n\n", 2)[1], re.M)
    return {name: int(v) for name, v in rows}


def test_docs_list_the_read_registers_and_status_bits():
    assert _doc_table("**Read registers**") == {r.name: int(r) for r in ReadReg}
    assert _doc_table("**Status bits**") == {f.name: f.bit_length() - 1 for f in Status}
    assert [r.name.lower() for r in COUNTER_REGS] == list(COUNTERS)
    # the energy model (golden/, below rtl/ in the layering) names its counters itself
    assert set(COUNTER_OF.values()) <= set(COUNTERS)
