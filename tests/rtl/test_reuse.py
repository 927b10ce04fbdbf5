"""First-layer reuse on the network core in Amaranth's simulator (rtl/reuse.py; docs/HARDWARE.md,
"First-layer reuse"): with REUSE on and off the same design gives the same outputs, choices and
activations; the read and accumulate counters equal the energy model's analytic count with
reuse (golden/energy_counts.py ``run_counts(..., distinct=D)``) and the busy cycles the cycle
formula."""

import math

import numpy as np
import pytest

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.energy_counts import distinct_crossbars, run_counts, shapes_of_hw, totals
from spinbayes.golden.geometry import geometry_of
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.reg_ranges import register_ranges, write_problem
from spinbayes.rtl.regs import Reg
from spinbayes.rtl.reuse import ReuseCache, cache_bits
from spinbayes.sim.coverify import params_for

SEED = 3


def run_core(run_sim, hw, codes, params, T, reuse, trace_layers=False):
    program = compile_network(hw, params, T=T, seed=SEED, reuse=reuse)
    dut = SpinBayesCore(params, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut), max_wait=400_000)
        await drv.program(program, cells=False)
        for img in codes:
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way,
                                           trace_layers=trace_layers))

    run_sim(dut, testbench)
    return results


def reuse_cycles(hw, params, T, choices0):
    """Busy cycles reuse adds to an image (docs/HARDWARE.md, "First-layer reuse", dense first
    layer): per pass 2n + 1 - reads, per distinct crossbar reads + 3 (reads: one crossbar's
    layer-0 reads, ceil(rows / R) * A_in)."""
    g = geometry_of(hw)[0]
    reads = math.ceil(g.rows / params.R) * g.in_bits
    D = int(distinct_crossbars(choices0[None], hw.N)[0])
    return T * (2 * hw.n_way + 1 - reads) + D * (reads + 3)


def check_pair(hw, x, off, on, T, check_reference, params):
    """Equal outputs, choices and activations with reuse off and on, both equal to the
    reference; counters of the reuse run = the analytic count with D distinct crossbars."""
    check_reference(hw, x, off)
    check_reference(hw, x, on)
    shapes = shapes_of_hw(hw)
    for b, (a, r) in enumerate(zip(off, on)):
        assert np.array_equal(a.choices, r.choices), f"image {b}: choices"
        assert np.array_equal(a.per_pass, r.per_pass) and a.prediction == r.prediction
        assert [(lay, t, q, list(c)) for lay, t, q, c in a.activations] == \
               [(lay, t, q, list(c)) for lay, t, q, c in r.activations], f"image {b}: layers"
        D = int(distinct_crossbars(r.choices[0][None], hw.N)[0])
        want = totals(run_counts(shapes, N=hw.N, n_way=hw.n_way, R=params.R, passes=T,
                                 distinct=D))
        assert r.counters["cnt_xbar_reads"] == want["cnt_xbar_reads"], f"image {b}: reads"
        assert r.counters["cnt_aac_ops"] == want["cnt_aac_ops"], f"image {b}: accumulates"
        for name in ("cnt_cmp_ops", "cnt_avg_ops", "cnt_rng_draws"):
            assert r.counters[name] == a.counters[name], f"image {b}: {name}"
        assert r.counters["cnt_xbar_reads"] < a.counters["cnt_xbar_reads"]


@pytest.mark.parametrize("n_way", [1, 2])
def test_dense_first_layer_reuse_same_outputs_fewer_reads(n_way, small_mapped, digits, run_sim,
                                                         check_reference):
    hw = small_mapped.hw(n_way)
    T = 6
    x = digits.x_test[20:23]
    codes = input_codes(x, hw.input_bits).flatten(1).numpy()
    params = params_for(hw, T, reuse=True)
    off = run_core(run_sim, hw, codes, params, T, False, trace_layers=True)
    on = run_core(run_sim, hw, codes, params, T, True, trace_layers=True)
    check_pair(hw, x, off, on, T, check_reference, params)
    for a, r in zip(off, on):
        assert r.counters["cnt_cycles"] - a.counters["cnt_cycles"] == \
            reuse_cycles(hw, params, T, r.choices[0])


def test_reuse_off_in_a_design_with_the_cache_is_the_plain_core(small_mapped, digits, run_sim):
    """REUSE = 0 (the reset value) in a design with the cache: the counters and cycles of the
    design without it."""
    hw = small_mapped.hw(1)
    T = 3
    codes = input_codes(digits.x_test[:2], hw.input_bits).flatten(1).numpy()
    plain = run_core(run_sim, hw, codes, params_for(hw, T), T, False)
    cached = run_core(run_sim, hw, codes, params_for(hw, T, reuse=True), T, False)
    for a, r in zip(plain, cached):
        assert a.counters == r.counters
        assert np.array_equal(a.per_pass, r.per_pass)


def test_reuse_needs_the_cache():
    hw_params = RtlParams(N=5, n_max=1, rows_max=16, outputs_max=8, classes_max=4)
    ranges = register_ranges(hw_params)
    assert write_problem(ranges, Reg.REUSE, 0, 0, 0, 1)            # no cache: only 0
    assert not write_problem(ranges, Reg.REUSE, 0, 0, 0, 0)
    with_cache = RtlParams(N=5, n_max=1, rows_max=16, outputs_max=8, classes_max=4,
                           reuse_positions=1, reuse_outputs=8)
    assert not write_problem(register_ranges(with_cache), Reg.REUSE, 0, 0, 0, 1)
    assert cache_bits(with_cache) == 5 * 1 * 8 * with_cache.sum_bits
    with pytest.raises(ValueError, match="reuse_positions > 0"):
        ReuseCache(hw_params)
    with pytest.raises(ValueError, match="both be 0"):
        RtlParams(reuse_positions=1)
    with pytest.raises(ValueError, match="reuse_outputs must not exceed"):
        RtlParams(reuse_positions=1, reuse_outputs=65)


def test_compiler_refuses_reuse_the_cache_cannot_hold(small_mapped):
    hw = small_mapped.hw(1)
    small = params_for(hw, 4, reuse_positions=1, reuse_outputs=8)   # layer 0 has 16 outputs
    with pytest.raises(ValueError, match="first-layer reuse: layer 0 has 1 positions of 16"):
        compile_network(hw, small, T=4, seed=0, reuse=True)
    with pytest.raises(ValueError, match="reuse must be a bool"):
        compile_network(hw, params_for(hw, 4, reuse=True), T=4, seed=0, reuse=1)


@pytest.mark.parametrize("seed, n_way, convs",
                         [(2, 2, 2), pytest.param(6, 1, 1, marks=pytest.mark.slow)])
def test_conv_first_layer_reuse_same_outputs_fewer_reads(seed, n_way, convs, conv_case,
                                                         run_sim, check_reference):
    """A random LeNet-like network (a first convolution, pooling, a dense output layer): the
    first layer's kept sums are per output position; reuse on and off give the same outputs
    and hidden activations, and the analytic counts."""
    hw, x, T = conv_case(seed, n_way, A_in=2, A=1, B=2, T=4, convs=convs)
    params = params_for(hw, T, reuse=True)
    assert params.reuse_positions == geometry_of(hw)[0].positions > 1
    codes = x.flatten(1).numpy()
    off = run_core(run_sim, hw, codes, params, T, False, trace_layers=True)
    on = run_core(run_sim, hw, codes, params, T, True, trace_layers=True)
    check_pair(hw, x, off, on, T, check_reference, params)
