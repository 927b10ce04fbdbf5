"""A core alarm on the co-verification path: the harness stops the image when STATUS shows
ALARM, the testbench reads the health registers through the read port, and run_images raises
the named error (not an AssertionError after 2*10^6 cycles); `spinbayes sim` prints it and
exits with 2.

The small digits MLP (N = 5: 3 devices per arbiter) 2-way, with every RNG device driven at
100 µA (threshold 0: stuck at 0): code 0 is crossbar 0, the second draw of a pass is rejected
for ever, and each device's RCT fires at sample 21.
"""

from __future__ import annotations

import pytest

from spinbayes.cli import main
from spinbayes.firmware.alarms import HealthAlarm, RngHealthError, alarm_error
from spinbayes.golden.mtj import EmulatedRng
from spinbayes.rtl.regs import ReadReg
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.harness import ALARM_CYCLES
from spinbayes.sim.runner import simulator_available

STUCK_CURRENT = 100e-6


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_stuck_rng_stops_the_image_with_the_named_error(small_mapped, digits, sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")
    assert EmulatedRng.from_current(1, STUCK_CURRENT, threshold_bits=16).threshold == 0
    hw = small_mapped.hw(2)
    T = 4
    with pytest.raises(RngHealthError) as info:
        run_images(hw, digits.x_test[:3], params=params_for(hw, T), T=T, seed=3,
                   simulator=sim, progress=False, rng_current=STUCK_CURRENT)
    e = info.value
    assert e.image == 0
    assert [a for a in e.alarms if a.test == "rct"] == [HealthAlarm(0, d, "rct", 1)
                                                        for d in range(3)]
    assert {a.test for a in e.alarms} == {"rct", "pair"}       # not stuck yet: 21 < 513
    # 64 input beats, ARB, 21 draws, the health tests' input register (a draw is their sample
    # one cycle later), the alarm register, the harness's STATUS read
    assert 21 < e.cycles <= 64 + 2 + 21 + 1 + 1 + ALARM_CYCLES
    assert "image 0" in str(e) and "layer 0's arbiter, device 2: Repetition Count" in str(e)
    print(f"\n{sim}: alarm after {e.cycles} cycles of image 0: {e}")


def test_spinbayes_sim_prints_the_alarm_and_exits_2(tmp_path, capsys, monkeypatch):
    from spinbayes import workflow_hw

    err = alarm_error({0: {ReadReg.HEALTH_ALARMS: 1 << 6}}, cycles=90, image=0)

    def alarmed(*args, **kwargs):
        raise err

    monkeypatch.setattr(workflow_hw, "coverify", alarmed)
    rc = main(["sim", "--quiet", "--out", str(tmp_path / "sim"), "--epochs", "1",
               "--hidden", "8", "--images", "1"])
    assert rc == 2
    text = capsys.readouterr().err
    assert ("spinbayes sim: error: RngHealthError: RNG health alarm in image 0 after 90 cycles "
            "of the image: layer 0's arbiter, device 2: Repetition Count Test") in text
