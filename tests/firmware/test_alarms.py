"""Named errors instead of timeouts: the driver raises RngHealthError / ArbiterStuckError from
the health registers as soon as STATUS shows ALARM, in Amaranth's simulator.

Tiny design (N = 3: k = 2 devices per arbiter, 2 layers): devices stuck at 0 (RNG threshold 0)
at n = 2 (the pass can never end) and an unseeded arbiter (both devices start from the same
state and give the same bits) at n = 1 and n = 2; the decoding of the health words by hand.
"""

from __future__ import annotations

import pytest

from spinbayes.firmware.alarms import (
    ArbiterStuckError,
    CoreAlarmError,
    HealthAlarm,
    RngHealthError,
    alarm_error,
    decode_alarms,
)
from spinbayes.firmware.compiler import Program, Write, compile_network
from spinbayes.firmware.driver import ALARM_POLL, AmaranthBus, CoreDriver
from spinbayes.golden.health import Cutoffs, first_event, rct_events
from spinbayes.golden.layers import input_codes
from spinbayes.golden.mapping import map_model
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.regs import ReadReg, Reg, Status

DESIGN = RtlParams(N=3, n_max=2, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                   groups_total=8, T_max=4)
RCT = Cutoffs.derive().rct


@pytest.fixture(scope="module")
def nets(tiny_model, tiny_digits):
    mapped = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2)
    codes = input_codes(tiny_digits.x_test[:1], 2).flatten(1).numpy()[0]
    return {n: compile_network(mapped.hw(n), DESIGN, T=3, seed=7) for n in (1, 2)}, codes


def _unseeded(program: Program) -> Program:
    return Program([w for w in program.descriptor if w.sel != Reg.RNG_SEED], program.cells,
                   program.group_base, program.n_outputs, program.T, program.extra)


def _run(program, codes, n_way, run_sim, extra=(), images=12):
    """Program, then infer up to ``images`` images; returns (error or None, results,
    health registers after)."""
    dut = SpinBayesCore(DESIGN, program.cells)
    out = {"error": None, "results": []}

    async def tb(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut), max_wait=50_000)
        await drv.program(program, cells=False)
        await drv.write_all(list(extra))
        try:
            for _ in range(images):
                out["results"].append(await drv.infer(codes, program, 2, n_way))
        except CoreAlarmError as e:
            out["error"] = e
        out["status"] = await drv.status()
        out["health"] = await drv.health(2)
        out["draws"] = await drv.read(ReadReg.CNT_RNG_DRAWS)

    run_sim(dut, tb)
    return out


@pytest.mark.parametrize("stuck_at", [0, 1])
def test_stuck_devices_raise_rng_health_error_within_the_bound(nets, run_sim, stuck_at):
    """Threshold 0 (2^W): both devices of every arbiter read 0 (1): code 0 = crossbar 0, so
    the 2-way pass draws crossbar 0 again for ever (code 3 >= N = 3: every draw is rejected).
    Each device's RCT fires at sample 21 (the twin's sample on the stuck stream), the pair test
    too; the driver raises RngHealthError for layer 0 long before the arbiter's stuck flag
    (257 rejections) and max_wait."""
    programs, codes = nets
    thr = stuck_at * 2 ** DESIGN.rng_bits
    out = _run(programs[2], codes, 2, run_sim, extra=[Write(Reg.RNG_THRESHOLD, data=thr)])
    e = out["error"]
    assert isinstance(e, RngHealthError) and isinstance(e, RuntimeError)
    assert not out["results"]
    want = [HealthAlarm(0, d, "rct", 1) for d in range(2)] + [HealthAlarm(0, (0, 1), "pair")]
    assert e.alarms == want
    assert "layer 0's arbiter, device 0: Repetition Count Test, 1 event(s)" in str(e)
    assert first_event(rct_events([stuck_at] * 64, RCT)[1]) == RCT == 21
    # image load (16 beats), ARB, 21 samples, the health tests' input register, the alarm's
    # register, the next poll
    assert e.cycles <= len(codes) + 2 + RCT + 1 + 1 + ALARM_POLL + 1
    print(f"\ndriver: {e} ({e.cycles} cycles)")
    assert Status.ALARM in out["status"]
    assert out["health"][1][ReadReg.HEALTH_ALARMS] == 0          # layer 1 never ran
    assert out["draws"] < 64 * 4 + 1                              # not stuck yet
    assert not out["health"][0][ReadReg.HEALTH_ALARMS] >> 31


@pytest.mark.parametrize("n_way", [1, 2])
def test_unseeded_arbiter_raises_on_its_pair_test(nets, run_sim, n_way):
    """Without RNG_SEED writes both devices of an arbiter start from the same state: codes 0
    or 3 (rejected), so n = 1 always takes crossbar 0 and n = 2 never ends. Each device's own
    stream is healthy; the pair test (XOR of devices 0 and 1 stuck at 0) fires at draw 21."""
    programs, codes = nets
    out = _run(_unseeded(programs[n_way]), codes, n_way, run_sim)
    e = out["error"]
    assert isinstance(e, RngHealthError), out
    assert e.alarms[0] == HealthAlarm(0, (0, 1), "pair")
    print(f"\nunseeded n={n_way}: {len(out['results'])} images, then {e}")
    assert all(a.test == "pair" for a in e.alarms)
    sides = out["health"][0][ReadReg.HEALTH_SIDES]
    assert sides >> 16 == 1 and sides & 0xFFFF == 0
    if n_way == 1:
        # every pass took crossbar 0 until the alarm
        assert all((r.choices == 0).all() for r in out["results"])


def test_healthy_images_raise_nothing(nets, run_sim):
    programs, codes = nets
    out = _run(programs[2], codes, 2, run_sim, images=2)
    assert out["error"] is None and len(out["results"]) == 2
    assert Status.ALARM not in out["status"]
    assert all(v == 0 for h in out["health"].values() for v in h.values())


def test_decode_and_error_kinds():
    words = {ReadReg.HEALTH_ALARMS: 0b100 | 1 << 3 | 1 << 31,
             ReadReg.HEALTH_RCT_EVENTS: 2 << 8, ReadReg.HEALTH_BIAS_EVENTS: 3}
    assert decode_alarms(1, words) == [HealthAlarm(1, 0, "bias", 3), HealthAlarm(1, 1, "rct", 2),
                                       HealthAlarm(1, None, "stuck")]
    e = alarm_error({0: {ReadReg.HEALTH_ALARMS: 0}, 1: words}, cycles=40)
    assert isinstance(e, RngHealthError)
    assert str(e).startswith("RNG health alarm after 40 cycles of the image: layer 1's arbiter, "
                             "device 0: bias monitor, 3 event(s)")
    stuck = alarm_error({2: {ReadReg.HEALTH_ALARMS: 1 << 31}})
    assert type(stuck) is ArbiterStuckError and "layer 2's arbiter: stuck" in str(stuck)
    assert type(alarm_error({0: {ReadReg.HEALTH_ALARMS: 0}})) is CoreAlarmError


@pytest.mark.parametrize("kw", [dict(alarm_poll=0), dict(max_wait=True), dict(alarm_poll=1.5)])
def test_driver_refuses_bad_bounds(kw):
    with pytest.raises(ValueError, match="must be a positive integer"):
        CoreDriver(None, **kw)


def test_compiler_writes_the_cutoffs(tiny_model, tiny_digits):
    hw = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2).hw(1)
    cut = {w.sel: w.data for w in compile_network(hw, DESIGN, T=3, seed=7).descriptor}
    assert [cut[r] for r in (Reg.HEALTH_RCT_CUTOFF, Reg.HEALTH_APT_CUTOFF, Reg.HEALTH_BIAS_LOW,
                             Reg.HEALTH_BIAS_HIGH)] == [21, 589, 1891, 2205]
    strict = Cutoffs.derive(1.0, 2.0 ** -40)
    cut = {w.sel: w.data for w in compile_network(hw, DESIGN, T=3, seed=7,
                                                  health=strict).descriptor}
    assert (cut[Reg.HEALTH_RCT_CUTOFF], cut[Reg.HEALTH_APT_CUTOFF]) == (41, 625)
    with pytest.raises(ValueError, match="health must be a golden.health.Cutoffs, not 3"):
        compile_network(hw, DESIGN, T=3, seed=7, health=3)
    with pytest.raises(ValueError, match="HEALTH_RCT_CUTOFF: RCT cutoff=401 outside 1..255"):
        compile_network(hw, DESIGN, T=3, seed=7, health=Cutoffs.derive(0.1, 2.0 ** -40))
