"""The energy model: Table 4 arithmetic, the energy table file, and analytic operation counts
against the RTL's activity counters (Amaranth simulator)."""

import json
import math

import pytest

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.approximation import approximate
from spinbayes.golden.energy import (
    BLOCKS,
    COUNTER_OF,
    PAPER_TABLE4,
    EnergyModel,
    LayerShape,
    arbiter_draws,
    count_operations,
    energy_of_counters,
    energy_of_counts,
    layer_shapes,
    lenet5_shapes,
    load_energy_model,
    shapes_of_hw,
    totals,
)
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.layers import input_codes
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.rtl.params import RtlParams


def test_hand_computed_small_case():
    """Dense 10-3 (hidden, A=1) then 3-2 (output), R=4, A_in=2, T=2, n=1, N=5, draws 3 and 2.

    layer 0: reads = T * ceil(10/4) * 2 bits = 2 * 3 * 2 = 12; comparators = 2 * 3 * 1 = 6
    layer 1: reads = 2 * ceil(3/4) * 1 = 2; averaging = (T + 1) * 2 = 6
    energy = (12 + 2) * 4.71 + (3 + 2) * 3.80 + 6 * 18.42 + 14 * 0.06 + 6 * 0.01 pJ
    """
    shapes = [LayerShape("a", "linear", 10, 3, 1, 2, False, 1),
              LayerShape("b", "linear", 3, 2, 1, 1, True, 1)]
    c = count_operations(shapes, N=5, n_way=1, T=2, R=4, draws=[3, 2])
    assert (c[0].cnt_xbar_reads, c[0].cnt_cmp_ops, c[0].cnt_avg_ops) == (12, 6, 0)
    assert (c[1].cnt_xbar_reads, c[1].cnt_cmp_ops, c[1].cnt_avg_ops) == (2, 0, 6)
    e = energy_of_counts(c)
    hand = 14 * 4.71 + 5 * 3.80 + 6 * 18.42 + 14 * 0.06 + 6 * 0.01
    assert e["total_pj"] == pytest.approx(hand, rel=1e-12)
    assert e["total_uj"] == pytest.approx(hand * 1e-6, rel=1e-12)
    assert e["per_layer_pj"]["a"]["memory"] == pytest.approx(12 * 4.71)
    assert e["per_block_pj"]["rng"] == pytest.approx(5 * 3.80)
    # other readings: memory per whole-vector MVM (1 per layer and pass), RNG per device (k=3)
    alt = energy_of_counts(c, EnergyModel().with_reading(memory="mvm", rng="device",
                                                         averaging="image"))
    assert alt["per_block_pj"]["memory"] == pytest.approx(4 * 4.71)
    assert alt["per_block_pj"]["rng"] == pytest.approx(15 * 3.80)
    assert alt["per_block_pj"]["averaging"] == pytest.approx(18.42)
    # measured path: the same counters give the same energy
    counters = {COUNTER_OF[b]: 3 * v for b, v in
                zip(BLOCKS, (14, 5, 6, 14, 6))}
    m = energy_of_counters(counters, 3, counts=c)
    assert m["total_pj"] == pytest.approx(hand)
    assert sum(v["memory"] for v in m["per_layer_pj"].values()) == pytest.approx(14 * 4.71)
    with pytest.raises(ValueError, match="not an RTL counter"):
        energy_of_counters(counters, 3, EnergyModel().with_reading(memory="mvm"))


def test_conv_schedule_of_lenet5():
    s = lenet5_shapes()
    assert [(x.kind, x.rows, x.outputs, x.positions) for x in s] == [
        ("conv2d", 25, 6, 784), ("conv2d", 150, 16, 100), ("linear", 400, 120, 1),
        ("linear", 120, 84, 1), ("linear", 84, 10, 1)]
    c = count_operations(s, N=5, n_way=1, T=10, R=4)
    assert c[0].cnt_xbar_reads == 10 * 784 * 7 * 4      # ceil(25/4) = 7 groups, 4 planes
    assert c[1].cnt_xbar_reads == 10 * 100 * 38          # ceil(150/4) = 38
    assert c[0].cnt_rng_draws == pytest.approx(16.0)     # 10 passes x 8/5


@pytest.mark.parametrize("content, match", [
    ({"memroy": 4.71}, "unknown block 'memroy'"),
    ({"memory": -1}, "finite number >= 0"),
    ({"memory": "x"}, "finite number >= 0"),
    ({"rng": {"pj": 3.8, "per": "coin"}}, "charged per"),
    ({"rng": {"pj": 3.8, "unit": "draw"}}, "takes the fields"),
    ([1, 2], "expected an object"),
])
def test_energy_file_errors(tmp_path, content, match):
    f = tmp_path / "e.json"
    f.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        load_energy_model(f)


def test_energy_file_nan_missing_and_toml(tmp_path):
    f = tmp_path / "e.json"
    f.write_text('{"aac": NaN}')
    with pytest.raises(ValueError, match="finite"):
        load_energy_model(f)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_energy_model(tmp_path / "nope.json")
    t = tmp_path / "e.toml"
    t.write_text('comparator = 0.02\n[memory]\npj = 1.5\nper = "mvm"\n')
    m = load_energy_model(t)
    assert m.pj == {**PAPER_TABLE4, "comparator": 0.02, "memory": 1.5}
    assert m.per["memory"] == "mvm" and m.per["rng"] == "draw"
    t.write_text("memory = [")
    with pytest.raises(ValueError, match="cannot parse"):
        load_energy_model(t)


def test_layer_shapes_of_the_mlp_match_the_folded_network(small_model, small_mapped, digits):
    hw = small_mapped.hw(1)
    a = [(s.rows, s.outputs, s.in_bits, s.last) for s in shapes_of_hw(hw)]
    b = [(s.rows, s.outputs, s.in_bits, s.last)
         for s in layer_shapes(small_model, digits.image_shape)]
    assert a == b == [(64, 16, 4, False), (16, 10, 1, True)]



def test_shapes_of_the_folded_lenet5_equal_the_models():
    """Conv geometry: positions, pooling and flatten of the integer LeNet-5 (untrained,
    BatchNorm re-calibrated on random images) give the golden model's layer shapes, and the
    schedule counts the same operations from either."""
    import torch

    from spinbayes.config import Config
    from spinbayes.golden.networks import build_model

    torch.manual_seed(0)
    model = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    images = approximate(model, 5, 4, seed=0)
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    hw = fold_network(build_spinbayes(images, model, x, 1, 1, seed=0), images)
    shapes = shapes_of_hw(hw, (1, 28, 28))
    assert shapes == layer_shapes(model, (1, 28, 28)) == lenet5_shapes()
    assert shapes_of_hw(hw) == shapes                  # the network's own image shape
    assert [(s.name, s.positions) for s in shapes] == [
        ("conv0", 784), ("conv1", 100), ("fc2", 1), ("fc3", 1), ("fc4", 1)]
    assert count_operations(shapes, N=5, n_way=1, T=10, R=4) == \
        count_operations(lenet5_shapes(), N=5, n_way=1, T=10, R=4)
    with pytest.raises(ValueError, match="layer 0: a conv layer of 1 input channels"):
        shapes_of_hw(hw, (2, 28, 28))

PARAMS = RtlParams(N=5, n_max=2, rows_max=64, outputs_max=16, layers_max=2, groups_total=32,
                   T_max=16)


@pytest.mark.parametrize("n_way", [1, 2])
def test_analytic_counts_equal_rtl_counters(small_mapped, digits, n_way, run_sim):
    """Per image and counter, the schedule's counts (exact draws replayed from the seed) equal
    the core's activity counters in Amaranth's simulator."""
    T, seed, B = 3, 11, 2
    hw = small_mapped.hw(n_way)
    program = compile_network(hw, PARAMS, T=T, seed=seed)
    dut = SpinBayesCore(PARAMS, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut))
        await drv.program(program, cells=False)
        for img in input_codes(digits.x_test[:B], hw.input_bits).flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way))

    run_sim(dut, testbench)
    draws = arbiter_draws(len(hw.layers), B, T, 5, n_way, seed=seed)
    assert draws.sum() >= len(hw.layers) * B * T * n_way
    for b, r in enumerate(results):
        counts = totals(count_operations(shapes_of_hw(hw), N=5, n_way=n_way, T=T, R=4,
                                         draws=draws[:, b]))
        for name in COUNTER_OF.values():
            assert r.counters[name] == counts[name], f"image {b}: {name}"
    # expected draws differ from the exact ones only through the rejections
    exp = totals(count_operations(shapes_of_hw(hw), N=5, n_way=n_way, T=T, R=4))
    assert math.isclose(exp["cnt_xbar_reads"], results[0].counters["cnt_xbar_reads"])
