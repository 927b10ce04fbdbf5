"""Faults as simulation data: the RTL equals the integer reference under a fault map, bit for
bit, with one harness build for every map (sim/faults.py).

Each map combines stuck MTJs, write failures, device-to-device variation and biased RNG devices
(golden/faults.py). The harness plays the program, then the map's writes (the faulty cells'
levels, each faulty device's RNG threshold); the RTL's per-pass outputs, averages and classes
must equal ``faulted_network(hw, fmap)`` on the RTL's choices, those choices must equal
``fault_choices`` (the emulated arbiters under the map's thresholds), and read-back verify
must report exactly the faulty cells. The health tests' cutoffs are raised for these
runs (the biased devices would otherwise stop the image, tests/sim/test_alarm.py).

Slow: two maps on Icarus, 3 images each; three maps on Verilator, 50 images each. The default
run's faulted RTL check is tests/cli/test_faults.py (two maps on Icarus through `spinbayes faults`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from spinbayes.golden.faults import FaultSpec, build_fault_map, fault_choices
from spinbayes.golden.health import Cutoffs
from spinbayes.sim.coverify import params_for, run_images
from spinbayes.sim.runner import simulator_available

T, SEED = 4, 3
#: RCT at its largest cutoff, APT and bias monitor off
RELAXED = Cutoffs(rct=255, apt=1025, bias_low=0, bias_high=4096)


def _spec(seed: int) -> FaultSpec:
    return FaultSpec(stuck_mtj=0.04, write_failure=0.05, variation=0.06, rng_bias=2e-6,
                     seed=seed)


def _built(build_dir: str) -> float:
    """Newest modification time of the build's products (logs, locks, command files and run
    directories are rewritten by every run)."""
    times = [os.path.getmtime(os.path.join(build_dir, f)) for f in os.listdir(build_dir)
             if os.path.isfile(os.path.join(build_dir, f))
             and not f.endswith((".log", ".lock", ".xml", ".f"))]
    return max(times)


def _run_maps(small_mapped, digits, sim, seeds, B):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")
    hw = small_mapped.hw(1)
    params = params_for(hw, T)
    x = digits.x_test[:B]
    out = []
    for s in seeds:
        fmap = build_fault_map([layer.codes for layer in hw.layers], hw.Q, _spec(s))
        res = run_images(hw, x, params=params, T=T, seed=SEED, simulator=sim, progress=False,
                         fault_map=fmap, health=RELAXED)
        out.append((fmap, res, _built(res.timings["build_dir"])))
    return hw, out


def _check(hw, runs, B):
    dirs = {res.timings["build_dir"] for _, res, _ in runs}
    assert len(dirs) == 1, dirs                               # one build for every map
    assert len({mtime for _, _, mtime in runs}) == 1          # and not rebuilt
    for fmap, res, _ in runs:
        assert res.mismatches == 0, res.details[:5]
        assert res.timings["fault_cells"] > 0
        assert res.vfy_errors == res.timings["fault_cells"]
        want = fault_choices(fmap, B, T, 1, seed=SEED).numpy()
        assert np.array_equal(res.choices, want)
        assert (fmap.rng_threshold != 2 ** 15).any()          # biased devices were loaded


def _report(sim, runs, B):
    differ = [int(sum((lv != t).sum() for lv, t in zip(f.levels, f.targets))) for f, _, _ in runs]
    devices = [int((f.rng_threshold != 2 ** 15).sum()) for f, _, _ in runs]
    print(f"\n{sim}: {len(runs)} maps x {B} images, 0 mismatches; faulty cells {differ}, "
          f"reported {[r.vfy_errors for _, r, _ in runs]}; biased devices {devices}")


@pytest.mark.slow      # 8 s; the default run keeps `spinbayes faults`' RTL points on Icarus
def test_rtl_equals_faulted_reference_icarus(small_mapped, digits):
    hw, runs = _run_maps(small_mapped, digits, "icarus", seeds=(1, 2), B=3)
    _check(hw, runs, 3)
    _report("icarus", runs, 3)


@pytest.mark.slow
def test_rtl_equals_faulted_reference_verilator_50_images(small_mapped, digits):
    hw, runs = _run_maps(small_mapped, digits, "verilator", seeds=(11, 12, 13), B=50)
    _check(hw, runs, 50)
    _report("verilator", runs, 50)


def test_fault_writes_refuse_maps_that_do_not_fit(small_mapped):
    from spinbayes.firmware.compiler import compile_network
    from spinbayes.sim.faults import fault_writes

    hw = small_mapped.hw(1)
    params = params_for(hw, T)
    program = compile_network(hw, params, T=T, seed=SEED)
    codes = [layer.codes for layer in hw.layers]
    fmap = build_fault_map(codes, hw.Q, _spec(1))
    writes, reported = fault_writes(program, fmap, hw, params, 1)
    differ = sum(int((lv != t).sum()) for lv, t in zip(fmap.levels, fmap.targets))
    assert reported == differ > 0 and len(writes) > reported
    with pytest.raises(ValueError, match="must be a golden.faults.FaultMap"):
        fault_writes(program, "map", hw, params, 1)
    narrow = build_fault_map(codes, hw.Q, _spec(1), threshold_bits=12)
    with pytest.raises(ValueError, match="thresholds have 12 bits, the design's devices "
                                         "rng_bits=16"):
        fault_writes(program, narrow, hw, params, 1)
    other = build_fault_map([-c for c in codes], hw.Q, _spec(1))
    with pytest.raises(ValueError, match="layer 0: the program's crossbar cells are not"):
        fault_writes(program, other, hw, params, 1)
    # every cell at level +4: every code 8 = q_max + 1, the worst case beyond the design's
    for lv in fmap.levels:
        lv[...] = 4
    with pytest.raises(ValueError, match=r"layer 0: the fault map's worst-case sum \d+ exceeds "
                                         r"the design's sum bound \d+"):
        fault_writes(program, fmap, hw, params, 1)
