"""RtlParams: validation and the classes_max bound of the averaging block."""

import json

import pytest

from spinbayes.rtl.averaging import AveragingBlock
from spinbayes.rtl.params import RtlParams, params_from_json


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
