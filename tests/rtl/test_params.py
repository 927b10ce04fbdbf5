"""RtlParams: validation, the classes_max bound of the averaging block, the widths of the
contract and the round trip through describe()."""

import json

import pytest

from spinbayes.golden.contract import ROWS_PER_READ, layer_widths
from spinbayes.rtl.averaging import AveragingBlock
from spinbayes.rtl.params import DIV_BITS, RtlParams, divide_cycles, params_from_json


def test_classes_max_defaults_to_outputs_max():
    assert RtlParams().classes_max == 64
    assert RtlParams(outputs_max=12).classes_max == 12
    assert RtlParams(outputs_max=12, classes_max=None) == RtlParams(outputs_max=12,
                                                                     classes_max=12)
    assert RtlParams(classes_max=10).describe()["classes_max"] == 10


@pytest.mark.parametrize("kw, msg", [
    ({"classes_max": 0}, "classes_max must be a positive integer, not 0"),
    ({"classes_max": 2.0}, "classes_max must be a positive integer, not 2.0"),
    ({"outputs_max": 8, "classes_max": 9}, r"classes_max must not exceed outputs_max \(8\), "
                                           "not 9"),
    ({"n_max": 6}, r"n_max must not exceed N \(5\), not 6"),
    ({"rows_max": 0}, "rows_max must be a positive integer, not 0"),
])
def test_bad_params(kw, msg):
    with pytest.raises(ValueError, match=msg):
        RtlParams(**kw)


def test_classes_max_sizes_the_averaging_block():
    p = RtlParams(outputs_max=64, classes_max=10)
    dut = AveragingBlock(p)
    dut._MustUse__silence = True            # ports only, not elaborated
    assert len(dut.Y.as_value()) == 10 * p.total_bits
    assert len(dut.M.as_value()) == 10 * p.scale_bits
    # n_out still takes any layer's output count (clamped to classes_max inside)
    assert 2 ** len(dut.n_out) > p.outputs_max


def test_params_from_json_reads_classes_max(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"n_max": 1, "classes_max": 10}))
    assert params_from_json(f) == RtlParams(n_max=1, classes_max=10)


def test_widths_are_the_contracts():
    """Default design: |S| <= n_max * rows_max * (2^A_max - 1) * q_max = 2 * 64 * 15 * 7."""
    p = RtlParams()
    assert p.sum_max == 2 * 64 * 15 * 7 == 13440
    assert p.widths == layer_widths(64, 64, 4, 4, ROWS_PER_READ, 2, T=16,
                                    m_max=2 ** 15 - 1, b_max=2 ** 23)
    assert (p.sum_bits, p.adc_bits, p.level_bits, p.k_cells) == (15, 6, 4, 2)
    assert p.R == ROWS_PER_READ
    assert divide_cycles(p) == max(2, -(-(p.out_bits - 1) // DIV_BITS))


def test_from_describe_round_trip_and_mismatch():
    p = RtlParams(N=3, n_max=3, rows_max=10, outputs_max=4, groups_total=3, classes_max=2)
    assert RtlParams.from_describe(p.describe()) == p
    assert RtlParams.from_describe(json.loads(json.dumps(p.describe()))) == p
    d = p.describe()
    d["sum_bits"] += 1
    with pytest.raises(ValueError, match=r"disagree .*sum_bits: \(\d+, \d+\)"):
        RtlParams.from_describe(d)
    d = p.describe()
    del d["rows_max"]
    with pytest.raises(ValueError, match=r"lack the RtlParams fields \['rows_max'\]"):
        RtlParams.from_describe(d)
    with pytest.raises(ValueError, match="must be a dict"):
        RtlParams.from_describe(p)
