"""Convolution networks through the core in Amaranth's simulator against the integer reference.

Random integer networks (tests/conftest.py ``random_conv_network``: kernel 1-3, stride 1-2,
padding 0-1, C_in 1-2, pooling on and off, one or two convolutions, a dense hidden layer or
not, a dense output layer) are compiled (firmware/compiler.py), run through the core by the
firmware driver, and checked against ``HwNetwork.run`` on the core's own arbiter choices:
every per-pass output, average and class, every hidden layer's output vectors (the core's
activation trace, sim/layer_check.py), every activity counter and the busy cycles
(docs/HARDWARE.md, "The convolution path"). A fault programmed into one layer is reported
in that layer; the dense MLP runs bit for bit on a design with the convolution path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.geometry import geometry_of
from spinbayes.golden.hardware import HwLayer, HwNetwork
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.network import DRAIN, SpinBayesCore
from spinbayes.rtl.params import divide_cycles
from spinbayes.rtl.regs import Reg
from spinbayes.sim.coverify import params_for
from spinbayes.sim.layer_check import compare_layers


def run_conv_core(run_sim, hw, x, T, seed, params, program=None):
    """Program the core (cells by the back door) with ``program`` (None: compiled from
    ``hw``) and run the images ``x`` (integer codes (B, C, H, W)) in one simulation, tracing
    every layer; returns (program, results)."""
    if program is None:
        program = compile_network(hw, params, T=T, seed=seed)
    dut = SpinBayesCore(params, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut), max_wait=200_000)
        await drv.program(program, cells=False)
        for img in x.flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way,
                                           trace_layers=True))

    run_sim(dut, testbench)
    return program, results


def expected_cycles(geometry, params, T, draws):
    """Busy cycles of an image (docs/HARDWARE.md, "The convolution path"): LOAD; per pass
    and layer the arbiter's ``draws`` (all layers and passes together) and, for a layer read
    from the window buffer, reads + 6, for a layer read from memory 2 + the first position
    (the words of its window + 1 fetch, reads, DRAIN, ACT) + each further position
    max(reads + DRAIN + 1, words + 1) (its window fetched during the previous position), and
    for a convolution FLUSH (1); per pass EMIT_Y_WAIT and C beats; per image the averages."""
    per_pass = 0
    for i, g in enumerate(geometry):
        reads = -(-g.rows // params.R) * g.in_bits
        prev = geometry[i - 1] if i else None
        if g.kind == "linear" and (prev is None or prev.kind == "linear"):
            per_pass += reads + DRAIN + 3
            continue
        # image memory: a code a row; activation memory: a pixel of every channel a word
        words = g.rows if prev is None else (
            g.k * g.k if g.kind == "conv2d" else prev.H_pool * prev.W_pool)
        # the first window is fetched before READ; each next one during the previous
        # position's READ, DRAIN and ACT (two window buffers)
        first = words + 1 + reads + DRAIN + 1
        per_pass += 2 + first + (g.positions - 1) * max(reads + DRAIN + 1, words + 1)
        if g.kind == "conv2d":
            per_pass += 1
    C, dc = geometry[-1].outputs, divide_cycles(params)
    return (geometry[0].in_size - 1 + T * per_pass + draws + T * (1 + C)
            + 1 + C * dc + 4 + C + 1)


def check_core(run_sim, hw, x, T, seed, check_reference):
    """Run ``hw`` through the core; every output and every layer's trace equal the
    reference, every activity counter the count of the geometry, the busy cycles the
    cycle formula; returns the geometry."""
    geometry = geometry_of(hw)
    params = params_for(hw, T)
    _, results = run_conv_core(run_sim, hw, x, T, seed, params)
    ref = check_reference(hw, x, results)
    bad = compare_layers([r.activations for r in results], ref.activations, geometry)
    assert not bad, "\n".join(str(m) for m in bad[:5])
    reads = sum(g.positions * -(-g.rows // params.R) * g.in_bits for g in geometry)
    cmps = sum(g.positions * g.outputs * params.levels for g in geometry if not g.is_output)
    for r in results:
        assert r.counters["cnt_cycles"] == expected_cycles(geometry, params, T,
                                                           r.counters["cnt_rng_draws"])
        assert r.counters["cnt_aac_ops"] == T * reads
        assert r.counters["cnt_xbar_reads"] == T * reads * hw.n_way
        assert r.counters["cnt_cmp_ops"] == T * cmps
    return geometry


#: (seed, n_way, A_in, A): random networks of the default run; together they have kernels
#: 1-3, strides 1-2, paddings 0-1, C_in 1-2, pooling on and off, one and two convolutions,
#: with and without a dense hidden layer (test_default_cases_cover_the_geometry)
CASES = [(1, 1, 2, 1), (2, 2, 2, 1), (3, 1, 3, 2), (4, 2, 1, 1), (6, 1, 2, 2), (11, 1, 2, 1)]


@pytest.mark.parametrize("seed, n_way, A_in, A", CASES)
def test_random_conv_network_equals_reference(seed, n_way, A_in, A, conv_case, run_sim,
                                              check_reference):
    hw, x, T = conv_case(seed, n_way, A_in=A_in, A=A)
    check_core(run_sim, hw, x, T, seed, check_reference)


def test_default_cases_cover_the_geometry(conv_case):
    seen = {"k": set(), "stride": set(), "padding": set(), "C_in": set(), "pool": set(),
            "convs": set(), "dense_hidden": set()}
    for seed, n_way, A_in, A in CASES:
        geometry = geometry_of(conv_case(seed, n_way, A_in=A_in, A=A)[0])
        conv = [g for g in geometry if g.kind == "conv2d"]
        for g in conv:
            for name in ("k", "stride", "padding", "C_in"):
                seen[name].add(getattr(g, name))
            seen["pool"].add(g.pool > 0)
        seen["convs"].add(len(conv))
        seen["dense_hidden"].add(len(geometry) - len(conv) > 1)
    assert seen == {"k": {1, 2, 3}, "stride": {1, 2}, "padding": {0, 1}, "C_in": {1, 2},
                    "pool": {False, True}, "convs": {1, 2}, "dense_hidden": {False, True}}, seen


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 40))
def test_more_random_conv_networks(seed, conv_case, run_sim, check_reference):
    rng = np.random.default_rng(seed)
    n_way, A_in, A = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    hw, x, T = conv_case(seed, n_way, A_in=A_in, A=A, T=3)
    check_core(run_sim, hw, x, T, seed, check_reference)


def test_a_fault_in_one_layer_is_reported_in_that_layer(conv_case, run_sim):
    """A threshold of layer 1 programmed wrong (always on, or always off where the reference
    is always on): the first difference of the trace is in layer 1, none in layer 0."""
    hw, x, T = conv_case(5, convs=2, dense_hidden=True)
    geometry = geometry_of(hw)
    params = params_for(hw, T)
    program = compile_network(hw, params, T=T, seed=5)
    ref = hw.run(x, torch.zeros(len(hw.layers), len(x), T, 1, dtype=torch.long))
    codes = ref.activations[1].reshape(len(x), T, geometry[1].outputs, -1)[:, :, 0]
    top = params.levels
    sum_max = params.sum_max
    on = bool((codes < top).any())        # always on changes something, else always off
    value = -sum_max if on else sum_max + 1
    desc = [dataclasses.replace(w, data=value) if (w.sel == Reg.THRESHOLD and w.c == 1
                                                   and w.a == 0) else w
            for w in program.descriptor]
    desc = [dataclasses.replace(w, data=0) if (w.sel == Reg.SIGN and w.c == 1 and w.a == 0)
            else w for w in desc]
    _, results = run_conv_core(run_sim, hw, x, T, 5, params,
                               program=dataclasses.replace(program, descriptor=desc))
    choices = torch.from_numpy(np.stack([r.choices for r in results], axis=1))
    ref = hw.run(x, choices)
    bad = compare_layers([r.activations for r in results], ref.activations, geometry)
    assert bad, "the fault changed nothing"
    first = bad[0]
    assert (first.image, first.layer, first.pass_, first.neuron) == (0, 1, 0, 0), str(first)
    assert all(m.layer >= 1 for m in bad)
    assert str(first).startswith("image 0: layer 1, pass 0, position "), str(first)


def test_dense_mlp_on_a_convolution_design(small_mapped, digits, run_sim, check_reference):
    """The digits MLP (dense layers only) on a design with the convolution path: its layers
    read the window buffer directly, as on a dense-only design, bit for bit."""
    hw = small_mapped.hw(2)
    params = params_for(hw, 3, act_depth=16, image_depth=64, act_channels=4, size_max=8,
                        kernel_max=3, padding_max=1, pool_max=2)
    x = digits.x_test[:2]
    program = compile_network(hw, params, T=3, seed=4)
    dut = SpinBayesCore(params, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        for img in input_codes(x, hw.input_bits).flatten(1).numpy():
            results.append(await drv.infer(img, program, 2, 2, trace_layers=True))

    run_sim(dut, testbench)
    ref = check_reference(hw, x, results)
    assert not compare_layers([r.activations for r in results], ref.activations,
                              geometry_of(hw))


def test_convolutions_the_design_cannot_run_are_refused(conv_case):
    hw, _, T = conv_case(4)                    # two convolutions of 2 and 3 outputs
    params = params_for(hw, T)
    dense_only = dataclasses.replace(params, act_depth=0)
    with pytest.raises(ValueError, match=r"layer 0: a convolution needs a design with the "
                                         r"convolution path \(act_depth > 0\), not act_depth=0"):
        compile_network(hw, dense_only, T=T, seed=0)
    for field, match in (("image_depth", r"layer 0: its \dx\dx\d input exceeds image_depth="),
                         ("act_depth", r"layer \d: its \dx\d outputs exceed act_depth=\d+ "
                                       r"pixels"),
                         ("act_channels", r"layer \d: its \d output channels exceed "
                                          r"act_channels=")):
        small = dataclasses.replace(params, **{field: getattr(params, field) - 1})
        with pytest.raises(ValueError, match=match):
            compile_network(hw, small, T=T, seed=0)
    with pytest.raises(ValueError, match=r"LAYER_H \[layer 0\]: input height=\d outside "
                                         r"1\.\.2 \(size_max=2\)"):
        compile_network(hw, dataclasses.replace(params, size_max=2), T=T, seed=0)
    one = torch.ones(2, dtype=torch.long)
    conv_out = HwNetwork([HwLayer("conv2d", torch.ones(3, 2, 1, 1, 1, dtype=torch.long), 2,
                                  scale=one, offset=one)], 2, False, 3, 3, 1,
                         image_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="layer 0: the output layer must be dense, not a "
                                         "convolution"):
        compile_network(conv_out, params, T=T, seed=0)


def test_conv_firmware_image_round_trip(conv_case, tmp_path):
    """A convolution network's image: saved, checked and loaded unchanged; its summary names
    each convolution's geometry; a geometry write that breaks the chain is refused."""
    from spinbayes.cli_firmware import summary
    from spinbayes.firmware.check import check_image
    from spinbayes.firmware.image import FirmwareImageError, load_image, save_image

    hw, _, T = conv_case(4)
    params = params_for(hw, T)
    program = compile_network(hw, params, T=T, seed=2)
    out = save_image(program, params, tmp_path / "fw")
    loaded, manifest = load_image(out, params)
    assert loaded.descriptor == program.descriptor
    assert np.array_equal(loaded.cells, program.cells)
    g = geometry_of(hw)[0]
    assert (f"conv {g.C_in}x{g.H}x{g.W} k {g.k} stride {g.stride} padding {g.padding} "
            f"pool {g.pool}") in summary(loaded, manifest)
    bad = [dataclasses.replace(w, data=w.data + 1) if (w.sel == Reg.LAYER_C_IN and w.c == 1)
           else w for w in program.descriptor]
    with pytest.raises(FirmwareImageError, match=r"descriptor\.hex: layer 1: input \d+x\d+x\d+, "
                                                 r"layer 0 writes \d+x\d+x\d+"):
        check_image(bad, program.cells, manifest, params)
