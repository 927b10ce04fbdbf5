"""Adaptive T on the network core in Amaranth's simulator against golden/adaptive.py: the
passes each image runs (ReadReg.PASSES_RUN), every output of the passes run, the class, the
counters and the busy cycles (docs/HARDWARE.md, "Adaptive T")."""

import numpy as np
import pytest
import torch

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.adaptive import AdaptiveOutput, AdaptiveT, adaptive_passes, output_span
from spinbayes.golden.energy_counts import arbiter_draws, count_operations, shapes_of_hw, totals
from spinbayes.golden.energy_model import COUNTER_OF
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.adaptive import DECIDE_CYCLES
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams, divide_cycles

PARAMS = RtlParams(N=5, n_max=1, rows_max=64, outputs_max=16, classes_max=10, layers_max=2,
                   groups_total=32, T_max=8)
T, SEED = 5, 3


def run_core(run_sim, hw, x, adaptive):
    program = compile_network(hw, PARAMS, T=T, seed=SEED, adaptive=adaptive)
    dut = SpinBayesCore(PARAMS, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        for img in input_codes(x, hw.input_bits).flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way))

    run_sim(dut, testbench)
    return results


def check(hw, x, results, adaptive):
    """Every image against the reference on the RTL's own choices (the passes it skipped
    padded with crossbar 0: the rule reads only the passes run); returns (passes, the
    reference of T passes on the same choices)."""
    choices = torch.from_numpy(np.stack([r.choices for r in results], axis=1))
    full = hw.run(x, choices)
    passes = adaptive_passes(full.per_pass, adaptive)
    ref = AdaptiveOutput(full.per_pass, passes, full.frac_bits)
    for b, r in enumerate(results):
        t = int(passes[b])
        assert r.passes == t
        assert np.array_equal(r.per_pass[:t], full.per_pass[b, :t].numpy())
        assert not r.per_pass[t:].any()                  # no PASS beat after the stop
        assert np.array_equal(r.averaged, ref.averaged[b].numpy())
        assert r.prediction == int(ref.prediction[b])
    return passes.tolist(), full


def test_exact_rule_stops_early_with_the_full_run_class(small_mapped, digits, run_sim):
    hw = small_mapped.hw(1)
    x = digits.x_test[9:12]
    adaptive = AdaptiveT("exact", 1, 0, output_span(hw))
    off = run_core(run_sim, hw, x, None)
    on = run_core(run_sim, hw, x, adaptive)
    passes, full = check(hw, x, on, adaptive)
    assert passes == [5, 5, 4]
    assert [r.prediction for r in on] == full.prediction.tolist()   # the T-pass class
    assert [r.prediction for r in off] == [r.prediction for r in on]
    assert [r.passes for r in off] == [T] * 3
    per_pass_reads = 16 * 4 + 4 * 1
    for r_on, r_off, t in zip(on, off, passes):
        for r, n, decide in ((r_on, t, DECIDE_CYCLES), (r_off, T, 0)):
            # docs/HARDWARE.md: LOAD, per pass both layers (reads + 6) + EMIT_Y_WAIT + 10
            # beats + DECIDE, the arbiters' draws, FINISH, DIVIDE, EMIT_AVG, EMIT_CLASS
            assert r.counters["cnt_cycles"] == (
                63 + n * (per_pass_reads + 2 * 6 + 11 + decide) + r.counters["cnt_rng_draws"]
                + 1 + 10 * divide_cycles(PARAMS) + 4 + 11)
        assert r_on.counters["cnt_xbar_reads"] == t * per_pass_reads
        assert r_on.counters["cnt_aac_ops"] == t * per_pass_reads
        assert r_on.counters["cnt_avg_ops"] == t * 10 + 10
        assert r_on.counters["cnt_cmp_ops"] == r_off.counters["cnt_cmp_ops"] * t // T
    # the energy model's analytic counts of the passes run equal the counters of the stopped
    # image: images 0 and 1 ran 5 passes each, so image 2's 4 passes are passes 10..13 of the
    # arbiters' stream
    draws = (arbiter_draws(2, 1, 14, 5, 1, seed=SEED) - arbiter_draws(2, 1, 10, 5, 1,
                                                                       seed=SEED))[:, 0]
    counts = totals(count_operations(shapes_of_hw(hw), N=5, n_way=1, T=4, R=4, draws=draws))
    for name in COUNTER_OF.values():
        assert on[2].counters[name] == counts[name], name


def test_confidence_rule_runs_uncertain_images_longer(small_mapped, digits, run_sim):
    hw = small_mapped.hw(1)
    x = digits.x_test[9:12]
    adaptive = AdaptiveT("confidence", 2, 256)          # two unanimous votes stop
    passes, _ = check(hw, x, run_core(run_sim, hw, x, adaptive), adaptive)
    assert 2 in passes and T in passes


@pytest.mark.parametrize("t_min", [3, T])
def test_t_min_holds_the_stop_back(small_mapped, digits, run_sim, t_min):
    hw = small_mapped.hw(1)
    x = digits.x_test[9:11]
    adaptive = AdaptiveT("confidence", t_min, 0)        # threshold 0: stop at T_min
    passes, _ = check(hw, x, run_core(run_sim, hw, x, adaptive), adaptive)
    assert passes == [t_min] * 2
