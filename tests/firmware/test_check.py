"""`firmware check` and the loader prove that an image fits the design it names.

Each test takes the tiny image (tests/firmware/conftest.py), edits it by hand with the
checksums and the manifest's seal brought up to date (``edit``), and checks that
``load_image`` and ``spinbayes firmware check`` both refuse it with a message naming the
problem (``refused``). Every case got through these checks before they existed.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.image import DESCRIPTOR_FILE, load_image, save_image
from spinbayes.golden.arbiter import device_seed
from spinbayes.rtl.regs import SEED_MAX, Reg, as_data


def test_the_untouched_image_passes(tiny, saved, edit):
    program, _ = load_image(saved, tiny.params)
    assert program.descriptor == tiny.program.descriptor
    edit.set()                                          # re-sealing alone changes nothing
    assert load_image(saved)[0].descriptor == tiny.program.descriptor


# --- the manifest is sealed ----------------------------------------------------------------
def test_unsealed_manifest_edit_is_refused(saved, edit, refused):
    edit.set(T=2, seal=False)
    refused(saved, r"manifest\.json: manifest_sha256 mismatch: the manifest was edited or "
                   r"corrupted after it was written")
    m = edit.manifest()
    del m["manifest_sha256"]
    edit.save_manifest(m, seal=False)
    refused(saved, r"manifest\.json: no manifest_sha256: the manifest is not sealed")


def test_manifest_params_are_checked_against_the_layer_table(tiny, saved, edit, refused):
    # both layers fit rows_max = 16; a manifest claiming rows_max = 8 (consistent in itself)
    # describes a design on which layer 0's 16 rows do not fit
    edit.set(params=replace(tiny.params, rows_max=8).describe())
    line = edit.line_of(Reg.LAYER_ROWS, c=0)
    refused(saved, rf"{DESCRIPTOR_FILE}: line {line}: LAYER_ROWS \[layer 0\]: rows=16 outside "
                   r"1\.\.8 \(rows_max=8\)")


# --- every descriptor value within its register's range ------------------------------------
@pytest.mark.parametrize("reg, data, index, message", [
    (Reg.PASSES, 0, {}, r"PASSES: passes=0 outside 1\.\.4 \(T_max=4\)"),
    (Reg.N_LAYERS, 5, {}, r"N_LAYERS: layers=5 outside 1\.\.2 \(layers_max=2\)"),
    (Reg.N_WAY, 2, {}, r"N_WAY: n-way=2 outside 1\.\.1 \(n_max=1\)"),
    (Reg.LAYER_ROWS, 200, {"c": 0}, r"LAYER_ROWS \[layer 0\]: rows=200 outside 1\.\.16 "
                                    r"\(rows_max=16\)"),
    (Reg.LAYER_IN_BITS, 0, {"c": 1}, r"LAYER_IN_BITS \[layer 1\]: input bits=0 outside 1\.\.2"),
    (Reg.SIGN, 2, {"c": 0, "a": 3}, r"SIGN \[layer 0, output 3\]: sign flag=2 outside 0\.\.1"),
    (Reg.RNG_THRESHOLD, 2 ** 16 + 1, {}, r"RNG_THRESHOLD: RNG threshold=65537 outside "
                                         r"0\.\.65536 \(2\^rng_bits=65536\)"),
])
def test_descriptor_value_out_of_range_is_refused(saved, edit, refused, reg, data, index,
                                                  message):
    line = edit.set_write(reg, data, **index)
    refused(saved, rf"{DESCRIPTOR_FILE}: line {line}: {message}")


def test_n_way_beyond_n_max_is_refused(tiny, tmp_path, refused, editor):
    """N_WAY = 3 on an n_max = 2 design."""
    params = replace(tiny.params, n_max=2)
    directory = save_image(compile_network(tiny.hw, params, T=3, seed=5), params,
                           tmp_path / "img")
    line = editor(directory).set_write(Reg.N_WAY, 3)
    refused(directory, rf"line {line}: N_WAY: n-way=3 outside 1\.\.2 \(n_max=2\)")


def test_unused_index_field_and_bad_index_are_refused(saved, edit, refused):
    ws = edit.writes()
    line = edit.line_of(Reg.PASSES)
    ws[line - 1] = (int(Reg.PASSES), 7, 0, 0, 3)
    edit.put_writes(ws)
    refused(saved, rf"line {line}: PASSES: unused field a=7 must be 0")
    ws[line - 1] = (int(Reg.PASSES), 0, 0, 0, 3)
    line = edit.line_of(Reg.THRESHOLD, c=0, a=5)
    ws[line - 1] = (int(Reg.THRESHOLD), 10, 0, 0, ws[line - 1][4])
    edit.put_writes(ws)
    refused(saved, rf"line {line}: THRESHOLD \[layer 0, output 10, comparator 0\]: output=10 "
                   r"outside 0\.\.9 \(outputs_max=10\)")


# --- exactly the writes the network needs --------------------------------------------------
def test_missing_rng_seed_is_refused(saved, edit, refused):
    edit.drop_write(Reg.RNG_SEED, c=1, a=0)
    refused(saved, r"descriptor\.hex: no RNG_SEED \[layer 1, device 0\] write \(2 layers of 2 "
                   r"RNG devices\)")


def test_health_cutoffs_are_required_and_ordered(saved, edit, refused):
    edit.set_write(Reg.HEALTH_BIAS_LOW, 3000)
    refused(saved, r"descriptor\.hex: line \d+: HEALTH_BIAS_HIGH=2205 is below "
                   r"HEALTH_BIAS_LOW=3000")
    edit.drop_write(Reg.HEALTH_APT_CUTOFF)
    refused(saved, r"no HEALTH_APT_CUTOFF write")


def test_missing_threshold_and_scale_are_refused(saved, edit, refused):
    edit.drop_write(Reg.THRESHOLD, c=0, a=4)
    edit.drop_write(Reg.OFFSET, a=9)
    refused(saved, r"no THRESHOLD \[layer 0, output 4, comparator 0\] write .*; descriptor\.hex: "
                   r"no OFFSET \[class 9\] write \(10 classes\)")


def test_writes_for_a_layer_beyond_n_layers_are_refused(saved, edit, refused):
    edit.set_write(Reg.N_LAYERS, 1)
    line = edit.line_of(Reg.LAYER_ROWS, c=1)
    refused(saved, rf"line {line}: LAYER_ROWS \[layer 1\] is not part of the network "
                   r"\(N_LAYERS=1\)")


def test_a_register_written_twice_is_refused(saved, edit, refused):
    ws = edit.writes()
    first = edit.line_of(Reg.PASSES)
    edit.put_writes([*ws, ws[first - 1]])
    refused(saved, rf"line {len(ws) + 1}: PASSES written again \(first on line {first}\)")


# --- layer geometry -------------------------------------------------------------------------
def test_layer_geometry_is_checked(saved, edit, refused):
    edit.set_write(Reg.LAYER_GROUP_BASE, 7, c=1)            # 6 rows = 2 groups from group 7
    refused(saved, r"descriptor\.hex: layer 1: group base 7 \+ 2 groups of 6 rows exceed "
                   r"groups_total=8")
    edit.set_write(Reg.LAYER_GROUP_BASE, 3, c=1)            # layer 0 holds groups 0..3
    refused(saved, r"layer 1: row groups 3\.\.4 overlap layer 0's 0\.\.3")
    edit.set_write(Reg.LAYER_GROUP_BASE, 4, c=1)
    edit.set_write(Reg.LAYER_ROWS, 7, c=1)
    refused(saved, r"layer 1: 7 rows, layer 0 has 6 outputs \(its outputs are the next "
                   r"layer's inputs\)")
    edit.set_write(Reg.LAYER_ROWS, 6, c=1)
    edit.set_write(Reg.LAYER_IN_BITS, 2, c=1)                # in range (A_in = 2) but A = 1
    refused(saved, r"layer 1: 2 input bits, the activations have A=1")


# --- cells ---------------------------------------------------------------------------------
def test_weight_code_beyond_q_is_refused(tiny, saved, edit, refused):
    """Both cells of a Q = 4 weight at level 4: each is a legal level, their sum 8 is not."""
    edit.set_cell(1, 2, 6, 4)
    edit.set_cell(1, 2, 7, 4)
    refused(saved, r"crossbar_1\.hex: layer 0, row 2 \(input 2\), output 3 \(cell columns "
                   r"6\.\.7\): weight code 8 outside -7\.\.7 \(Q=4\)")


def test_cell_outside_every_layer_is_refused(tiny, saved, edit, refused):
    # layer 1 has 6 rows from row 16 (group 4) and 10 outputs: row 23 is padding
    assert not tiny.program.cells[0, 23].any()
    edit.set_cell(0, 23, 0, 1)
    refused(saved, r"crossbar_0\.hex: row 23, cell column 0: level 1 outside every layer's rows "
                   r"and columns \(must be 0\)")


def test_cell_level_beyond_a_small_q_is_refused(tiny, tmp_path, refused, editor):
    """Q = 3: weights -3..3 in one cell, so level 4 is beyond the level range."""
    params = replace(tiny.params, Q=3)
    hw = copy.copy(tiny.hw)
    hw.Q, hw.layers = 3, [replace(lay, codes=lay.codes.clamp(-3, 3)) for lay in hw.layers]
    directory = save_image(compile_network(hw, params, T=3, seed=5), params, tmp_path / "img")
    editor(directory).set_cell(0, 1, 0, 4)
    refused(directory, r"crossbar_0\.hex: row 1, cell column 0: level 4 outside -3\.\.3 "
                       r"\(Q=3, 1 cells per weight\)")


# --- the manifest against the descriptor ---------------------------------------------------
@pytest.mark.parametrize("key, value, message", [
    ("T", 10.7, r"manifest\.json: T must be an integer, not 10\.7"),
    ("T", True, r"manifest\.json: T must be an integer, not True"),
    ("T", 2, r"manifest\.json: T=2, but descriptor\.hex writes PASSES=3"),
    ("n_outputs", 9, r"manifest\.json: n_outputs=9, but descriptor\.hex writes LAYER_OUTS=10 "
                     r"for the last layer"),
    ("n_outputs", 11.0, r"manifest\.json: n_outputs must be an integer, not 11\.0"),
    ("group_base", [0, 5], r"manifest\.json: group_base \[0, 5\], but descriptor\.hex writes "
                           r"\[0, 4\]"),
])
def test_manifest_disagreeing_with_the_descriptor_is_refused(saved, edit, refused, key, value,
                                                             message):
    edit.set(**{key: value})
    refused(saved, message)


def test_seed_outside_the_rng_range_is_refused(tiny, saved, edit, refused):
    # 2^32 + 5 gives the same device seeds as 5: only the range check can tell
    assert all(device_seed(2 ** 32 + 5, i, d, 2) == device_seed(5, i, d, 2)
               for i in range(2) for d in range(2))
    edit.set(seed=2 ** 32 + 5, extra={**edit.manifest()["extra"], "seed": 2 ** 32 + 5})
    refused(saved, rf"manifest\.json: seed must be an integer in 0\.\.{SEED_MAX} \(the RNG "
                   r"devices' 32-bit state\), not 4294967301")
    with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.4294967295 .*, not "
                       r"4294967296"):
        compile_network(tiny.hw, tiny.params, T=3, seed=2 ** 32)
    with pytest.raises(ValueError, match=r"seed must be an integer .*, not -1"):
        compile_network(tiny.hw, tiny.params, T=3, seed=-1)


def test_rng_seeds_must_follow_from_the_manifest_seed(saved, edit, refused):
    edit.set(seed=6, extra={**edit.manifest()["extra"], "seed": 6})
    line = edit.line_of(Reg.RNG_SEED, c=0, a=0)
    refused(saved, rf"line {line}: RNG_SEED \[layer 0, device 0\] writes "
                   rf"{as_data(device_seed(5, 0, 0, 2))}, the manifest's seed 6 gives "
                   rf"{as_data(device_seed(6, 0, 0, 2))}")


def test_save_refuses_what_load_would_refuse(tiny, tmp_path):
    bad = replace(tiny.program, T=2)              # the descriptor still writes PASSES = 3
    with pytest.raises(ValueError, match=r"T=2, but descriptor\.hex writes PASSES=3"):
        save_image(bad, tiny.params, tmp_path / "img")
    cells = tiny.program.cells.copy()
    cells[0, 30, 0] = 2                            # outside every layer
    with pytest.raises(ValueError, match=r"row 30, cell column 0: level 2 outside every"):
        save_image(replace(tiny.program, cells=cells), tiny.params, tmp_path / "img")
    assert not (tmp_path / "img").exists()
    assert np.count_nonzero(tiny.program.cells[0, 30]) == 0
