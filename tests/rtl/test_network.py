"""The whole network in Amaranth's simulator against the integer reference (golden).

The firmware driver (firmware/driver.py) programs the core through its port, streams the
images and records the arbiters' trace; the integer reference then runs on the RTL's own
choices, and every per-pass output, average and class must be equal.
"""

import numpy as np
import pytest
import torch

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.arbiter import arbiter_choices
from spinbayes.golden.layers import input_codes
from spinbayes.golden.mapping import map_model
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams

PARAMS = RtlParams(N=5, n_max=2, rows_max=64, outputs_max=16, layers_max=2, groups_total=32,
                   T_max=16)


def run_core(run_sim, hw, x, T, seed, params=PARAMS, *, back_door=True, verify=0):
    """Program the core and run the images; returns (program, results, bad cells)."""
    program = compile_network(hw, params, T=T, seed=seed)
    dut = SpinBayesCore(params, program.cells if back_door else None)
    results, bad = [], []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=not back_door)
        if verify:
            bad.extend(await drv.verify_cells(program, sample=verify))
        for img in input_codes(x, hw.input_bits).flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way))

    run_sim(dut, testbench)
    return program, results, bad


@pytest.mark.parametrize("n_way", [1, 2])
def test_network_equals_integer_reference(small_mapped, digits, n_way, check_reference,
                                          run_sim):
    hw = small_mapped.hw(n_way)
    x = digits.x_test[:2]
    _, results, _ = run_core(run_sim, hw, x, T=4, seed=3)
    check_reference(hw, x, results)
    # the arbiters drew from the emulated devices: the trace equals the seed's choices
    got = torch.from_numpy(np.stack([r.choices for r in results], axis=1))
    assert torch.equal(got, arbiter_choices(2, 2, 4, 5, n_way, seed=3))
    for r in results:   # 64 rows x 4 planes + 16 rows x 1 plane, / R = 4, per pass
        assert r.counters["cnt_xbar_reads"] == 4 * n_way * (16 * 4 + 4 * 1)
        assert r.counters["cnt_aac_ops"] == 4 * (16 * 4 + 4 * 1)


def test_programming_through_the_port_on_a_tiny_design(tiny_model, tiny_digits,
                                                        check_reference, run_sim):
    """Firmware writes every crossbar cell through the write decoder, then reads back."""
    tiny = RtlParams(N=3, n_max=1, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                     groups_total=8, T_max=4)
    hw = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2).hw(1)
    x = tiny_digits.x_test[:2]
    program, results, bad = run_core(run_sim, hw, x, T=3, seed=5, params=tiny,
                                     back_door=False, verify=300)
    assert bad == []
    assert np.count_nonzero(program.cells) > 0
    check_reference(hw, x, results)


def test_oversized_network_is_refused(small_mapped):
    hw = small_mapped.hw(1)
    small = RtlParams(N=5, n_max=1, rows_max=32, outputs_max=16, layers_max=2,
                      groups_total=16, T_max=16)
    with pytest.raises(ValueError, match="layer 0: 16 x 64 exceeds outputs_max=16, rows_max=32"):
        compile_network(hw, small, T=4, seed=0)
    with pytest.raises(ValueError, match="T=20 outside 1..T_max=16"):
        compile_network(hw, PARAMS, T=20, seed=0)


@pytest.mark.slow
def test_digits_mlp_64_32_10_fifty_images(mlp32_model, digits, check_reference, run_sim):
    """The trained digits MLP on the RTL core: 64-32-10, N=5, Q=4, T=10, 50 test images."""
    hw = map_model(mlp32_model, digits.x_train, N=5, Q=4, seed=0, recal_batches=20).hw(1)
    params = RtlParams(N=5, n_max=2, rows_max=64, outputs_max=32, layers_max=2,
                       groups_total=32, T_max=16)
    x = digits.x_test[:50]
    _, results, _ = run_core(run_sim, hw, x, T=10, seed=1, params=params)
    ref = check_reference(hw, x, results)
    cycles = [r.cycles for r in results]
    print(f"\n50 images equal; cycles per image: min {min(cycles)}, median "
          f"{int(np.median(cycles))}, max {max(cycles)}; hw accuracy "
          f"{100 * float((ref.prediction == digits.y_test[:50]).double().mean()):.1f} %")
