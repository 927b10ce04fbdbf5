"""The on-disk firmware image: round trip, $readmemh compatibility and every refusal."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spinbayes.firmware import image as fwimage
from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.image import (
    DESCRIPTOR_FILE,
    MANIFEST_FILE,
    FirmwareImageError,
    crossbar_file,
    load_image,
    save_image,
)
from spinbayes.rtl.regs import PROG_TEXT_FORM, PROG_WORD_BITS


def test_round_trip(tiny, saved):
    prog, manifest = load_image(saved, tiny.params)
    p0 = tiny.program
    assert prog.descriptor == p0.descriptor
    assert np.array_equal(prog.cells, p0.cells) and prog.cells.dtype == np.int8
    assert (prog.group_base, prog.n_outputs, prog.T) == (p0.group_base, p0.n_outputs, p0.T)
    assert prog.extra == p0.extra
    assert manifest["format_version"] == fwimage.FORMAT_VERSION
    assert manifest["params"] == tiny.params.describe()
    assert manifest["meta"] == {"note": "test"}
    assert manifest["seed"] == 5 and manifest["T"] == 3
    assert [row["rows"] for row in manifest["layers"]] == [16, 6]
    p = tiny.params
    assert sorted(manifest["files"]) == sorted([*map(crossbar_file, range(p.N)),
                                                DESCRIPTOR_FILE])
    lines = (saved / crossbar_file(0)).read_text().splitlines()
    assert len(lines) == p.groups_total * p.R and {len(x) for x in lines} == {p.cols_max}
    # also loads without naming the design (from the manifest's own params)
    prog2, _ = load_image(saved)
    assert np.array_equal(prog2.cells, p0.cells)


def test_column_zero_is_the_rightmost_digit(tiny, saved):
    cells = tiny.program.cells
    k, r, c = (int(v[0]) for v in np.nonzero(cells))
    line = (saved / crossbar_file(k)).read_text().splitlines()[r]
    assert int(line[-1 - c], 16) == int(cells[k, r, c]) & 0xF


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_verilog_readmemh_loads_the_files(tiny, saved, tmp_path):
    """A simulator memory loaded with $readmemh holds exactly the program's levels."""
    p = tiny.params
    rows, w, nd = p.groups_total * p.R, 4 * p.cols_max, len(tiny.program.descriptor)
    src = tmp_path / "load.v"
    src.write_text(f"""
module load;
  reg [{w - 1}:0] xb [0:{rows - 1}];
  reg [{PROG_WORD_BITS - 1}:0] d [0:{nd - 1}];
  integer r, c;
  initial begin
    $readmemh("{saved / crossbar_file(1)}", xb);
    $readmemh("{saved / DESCRIPTOR_FILE}", d);
    for (r = 0; r < {rows}; r = r + 1) begin
      for (c = 0; c < {p.cols_max}; c = c + 1) $write("%0d ", $signed(xb[r][c*4 +: 4]));
      $write("\\n");
    end
    for (r = 0; r < {nd}; r = r + 1)
      $display("D %0d %0d %0d %0d %0d", d[r][{PROG_WORD_BITS - 1}:72], d[r][71:56],
               d[r][55:40], d[r][39:32], $signed(d[r][31:0]));
  end
endmodule
""")
    subprocess.run(["iverilog", "-o", str(tmp_path / "load.vvp"), str(src)], check=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "load.vvp")], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    cell_lines = [x for x in out if x and not x.startswith("D ")]
    got = np.array([[int(v) for v in x.split()] for x in cell_lines])
    assert np.array_equal(got, tiny.program.cells[1])
    desc = [tuple(int(v) for v in x.split()[1:]) for x in out if x.startswith("D ")]
    assert desc == [(int(w.sel), w.a, w.b, w.c, w.data) for w in tiny.program.descriptor]


def _flip_digit(path: Path, line: int, col: int, new: str) -> None:
    lines = path.read_text().split("\n")
    s = lines[line]
    lines[line] = s[:col] + new + s[col + 1:]
    path.write_text("\n".join(lines))


def test_corrupt_byte_is_refused(saved):
    path = saved / crossbar_file(2)
    line = path.read_text().split("\n")[3]
    _flip_digit(path, 3, 0, "1" if line[0] != "1" else "2")     # still valid hex and range
    with pytest.raises(FirmwareImageError, match=r"crossbar_2\.hex: sha256 mismatch"):
        load_image(saved)


def test_truncated_file_is_refused(tiny, saved):
    path = saved / crossbar_file(2)
    raw = path.read_bytes()
    n = tiny.params.groups_total * tiny.params.R
    path.write_bytes(raw[:raw.rindex(b"\n", 0, len(raw) - 1) + 1])   # drop the last line
    with pytest.raises(FirmwareImageError,
                       match=rf"crossbar_2\.hex: {n - 1} lines, expected {n} \(truncated\?\)"):
        load_image(saved)
    path.write_bytes(raw[:len(raw) // 2 + 3])                       # cut mid-line
    with pytest.raises(FirmwareImageError, match=r"crossbar_2\.hex: no newline at the end"):
        load_image(saved)


def test_truncated_descriptor_is_refused(saved):
    path = saved / DESCRIPTOR_FILE
    path.write_bytes(path.read_bytes()[:-(len(PROG_TEXT_FORM) + 1)])     # the last line
    with pytest.raises(FirmwareImageError, match=r"descriptor\.hex: \d+ lines, expected"):
        load_image(saved)


def test_wrong_format_version_is_refused(saved, edit, refused):
    assert fwimage.FORMAT_VERSION == 3
    edit.set(format_version=2)                       # an image of the previous format
    refused(saved, r"manifest\.json: format_version 2, this code reads format_version 3 only")
    edit.set(format_version=4, seal=False)           # refused before the seal is looked at
    refused(saved, r"manifest\.json: format_version 4, this code reads format_version 3 only")
    edit.set(format="spinbayes-checkpoint", format_version=3)
    refused(saved, r"manifest\.json: not a spinbayes-firmware")


def test_wrong_shape_against_params_is_refused(tiny, saved):
    other = replace(tiny.params, N=4, rows_max=32)
    with pytest.raises(FirmwareImageError, match=r"manifest\.json: image built for another "
                       r"design: N=3 \(design: 4\), rows_max=16 \(design: 32\)"):
        load_image(saved, other)


def test_wrong_shape_in_manifest_is_refused(saved, edit):
    edit.set(shapes={**edit.manifest()["shapes"], "cells": [3, 32, 40]})
    with pytest.raises(FirmwareImageError, match=r"manifest\.json: cells shape \[3, 32, 40\] "
                       r"does not match its params"):
        load_image(saved)


def test_line_of_wrong_width_is_refused(saved):
    path = saved / crossbar_file(0)
    lines = path.read_text().split("\n")
    lines[5] = lines[5][1:]
    path.write_text("\n".join(lines))
    with pytest.raises(FirmwareImageError, match=r"crossbar_0\.hex: line 6: 19 characters, "
                       r"expected 20 hex digits"):
        load_image(saved)


def test_level_out_of_range_is_refused(saved, edit):
    _flip_digit(saved / crossbar_file(1), 7, 19, "5")     # row 7, cell column 0: level 5
    edit.rehash(crossbar_file(1))
    with pytest.raises(FirmwareImageError, match=r"crossbar_1\.hex: line 8 \(row 7\), cell "
                       r"column 0: level 5 outside -4\.\.4"):
        load_image(saved)
    _flip_digit(saved / crossbar_file(1), 7, 19, "b")     # -5
    edit.rehash(crossbar_file(1))
    with pytest.raises(FirmwareImageError, match=r"level -5 outside -4\.\.4"):
        load_image(saved)


def test_non_hex_characters_are_refused(saved):
    _flip_digit(saved / crossbar_file(0), 2, 4, "g")
    with pytest.raises(FirmwareImageError, match=r"crossbar_0\.hex: line 3, column 5: 'g' is "
                       r"not a hex digit"):
        load_image(saved)


def test_bad_descriptor_lines_are_refused(saved, edit):
    path = saved / DESCRIPTOR_FILE
    good = path.read_text()
    path.write_text(good.replace("_", "-", 1))
    with pytest.raises(FirmwareImageError, match=r"descriptor\.hex: line 1: .* is not "
                       r"SS_AAAA_BBBB_CC_DDDDDDDD hex"):
        load_image(saved)
    path.write_text("1f" + good[2:])       # REUSE (every 5-bit select is a register)
    edit.rehash(DESCRIPTOR_FILE)
    with pytest.raises(FirmwareImageError, match=r"descriptor\.hex: line 1: REUSE: reuse "
                       r"flag=16 outside 0\.\.0 \(reuse_positions=0\)"):
        load_image(saved)
    path.write_text("20" + good[2:])                  # 6 bits: wider than the sel field
    edit.rehash(DESCRIPTOR_FILE)
    with pytest.raises(FirmwareImageError, match=r"descriptor\.hex: line 1: .* is not "
                       r"SS_AAAA_BBBB_CC_DDDDDDDD hex"):
        load_image(saved)


def test_missing_files_are_refused(saved, tmp_path):
    (saved / crossbar_file(1)).unlink()
    with pytest.raises(FirmwareImageError, match=r"crossbar_1\.hex: missing"):
        load_image(saved)
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(FirmwareImageError, match=r"manifest\.json: missing"):
        load_image(saved)
    with pytest.raises(FirmwareImageError, match="firmware image directory not found"):
        load_image(tmp_path / "nowhere")


def test_save_refuses_bad_programs(tiny, tmp_path):
    bad = replace(tiny.program, cells=tiny.program.cells.copy())
    bad.cells[0, 0, 0] = 5
    with pytest.raises(ValueError, match=r"cell levels must lie in -4\.\.4, found .*5"):
        save_image(bad, tiny.params, tmp_path / "a")
    with pytest.raises(ValueError, match=r"program cells have shape \(3, 32, 20\), the design "
                       r"needs \(4, 32, 20\)"):
        save_image(tiny.program, replace(tiny.params, N=4), tmp_path / "b")
    other = tmp_path / "not_an_image"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a firmware image; refusing to replace it"):
        save_image(tiny.program, tiny.params, other)
    assert (other / "precious.txt").read_text() == "keep me"


def test_existing_image_survives_a_failed_save(tiny, saved, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    changed = compile_network(tiny.hw, tiny.params, T=2, seed=5)
    calls = []

    def failing_write(path, raw):
        calls.append(path.name)
        if len(calls) == 3:                           # half-way through the files
            raise OSError("disk full (simulated)")
        real_write(path, raw)

    real_write = fwimage._write_synced
    monkeypatch.setattr(fwimage, "_write_synced", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_image(changed, tiny.params, saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]   # no temp left behind
    monkeypatch.setattr(fwimage, "_write_synced", real_write)
    save_image(changed, tiny.params, saved)                # a complete save replaces it
    assert load_image(saved)[0].T == 2
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_params_lacking_a_field_are_refused(saved, edit):
    params = dict(edit.manifest()["params"])
    del params["classes_max"]
    edit.set(params=params)
    with pytest.raises(FirmwareImageError, match=r"manifest\.json: params lack \['classes_max'\]"):
        load_image(saved)


def test_derived_params_must_follow_from_the_fields(saved, edit):
    params = edit.manifest()["params"]
    edit.set(params={**params, "adc_bits": params["adc_bits"] + 1})
    with pytest.raises(FirmwareImageError, match=r"manifest\.json: params do not follow from "
                       rf"their fields: adc_bits={params['adc_bits'] + 1} \(the fields give "
                       rf"{params['adc_bits']}\)"):
        load_image(saved)
