"""A tiny trained network on a tiny design, shared by the firmware tests (built once), and
helpers that edit a saved image by hand."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from spinbayes.firmware.compiler import Program, compile_network
from spinbayes.firmware.image import (
    DESCRIPTOR_FILE,
    MANIFEST_FILE,
    FirmwareImageError,
    crossbar_file,
    load_image,
    save_image,
    seal_manifest,
)
from spinbayes.golden.hardware import HwNetwork
from spinbayes.golden.mapping import map_model
from spinbayes.rtl.params import RtlParams
from spinbayes.rtl.regs import Reg, parse_prog_text, prog_text

#: The tiny design of tests/rtl/test_network.py: 16 inputs (4x4 digits), 6 hidden, 10 classes.
TINY = RtlParams(N=3, n_max=1, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                 groups_total=8, T_max=4)


@dataclass
class Tiny:
    params: RtlParams
    hw: HwNetwork
    program: Program
    x_test: torch.Tensor      # (B, 1, 4, 4) in [0, 1]


@pytest.fixture(scope="session")
def tiny(tiny_model, tiny_digits) -> Tiny:
    """tests/conftest.py's tiny model on N = 3 crossbars, 1-way, compiled for T = 3."""
    hw = map_model(tiny_model, tiny_digits.x_train, N=3, Q=4, seed=0, recal_batches=2).hw(1)
    program = compile_network(hw, TINY, T=3, seed=5)
    return Tiny(TINY, hw, program, tiny_digits.x_test[:4])


class ImageEdit:
    """Hand edits of a saved image, as a user (or a corruption) would make them, with the
    checksums brought up to date so that only the semantic checks can refuse the result.

    Every edit re-seals the manifest (``manifest_sha256``) unless ``seal=False``.
    """

    def __init__(self, directory):
        self.dir = Path(directory)

    def manifest(self) -> dict:
        return json.loads((self.dir / MANIFEST_FILE).read_text())

    def save_manifest(self, manifest: dict, *, seal: bool = True) -> None:
        (self.dir / MANIFEST_FILE).write_text(json.dumps(seal_manifest(manifest) if seal
                                                         else manifest))

    def set(self, *, seal: bool = True, **changes) -> None:
        """Replace top-level manifest entries."""
        self.save_manifest({**self.manifest(), **changes}, seal=seal)

    def rehash(self, name: str) -> None:
        """Make the manifest's size and SHA-256 of ``name`` agree with the file (and seal)."""
        m = self.manifest()
        raw = (self.dir / name).read_bytes()
        m["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                            "lines": raw.count(b"\n")}
        self.save_manifest(m)

    def writes(self) -> list[tuple[int, int, int, int, int]]:
        """The descriptor's writes (sel, a, b, c, data), in file order."""
        return [parse_prog_text(x) for x in (self.dir / DESCRIPTOR_FILE).read_text().split()]

    def put_writes(self, writes) -> None:
        """Write the descriptor file, its checksum and its line count in the manifest."""
        (self.dir / DESCRIPTOR_FILE).write_text("".join(prog_text(*w) + "\n" for w in writes))
        m = self.manifest()
        m["shapes"]["descriptor_writes"] = len(writes)
        self.save_manifest(m)
        self.rehash(DESCRIPTOR_FILE)

    def line_of(self, reg: Reg, **index) -> int:
        """1-based line of the first write to ``reg`` whose fields a, b, c match ``index``."""
        for i, (sel, a, b, c, _) in enumerate(self.writes(), 1):
            if sel == reg and all({"a": a, "b": b, "c": c}[k] == v for k, v in index.items()):
                return i
        raise LookupError(f"no {reg.name} write with {index}")

    def set_write(self, reg: Reg, data: int, **index) -> int:
        """Change the data of the first matching write; returns its line."""
        line = self.line_of(reg, **index)
        ws = self.writes()
        ws[line - 1] = (*ws[line - 1][:4], data)
        self.put_writes(ws)
        return line

    def drop_write(self, reg: Reg, **index) -> None:
        line = self.line_of(reg, **index)
        ws = self.writes()
        del ws[line - 1]
        self.put_writes(ws)

    def set_cell(self, k: int, row: int, col: int, level: int) -> None:
        """Set one cell's level in crossbar_<k>.hex (column 0 is the rightmost digit)."""
        path = self.dir / crossbar_file(k)
        lines = path.read_text().split("\n")
        s = lines[row]
        i = len(s) - 1 - col
        lines[row] = s[:i] + f"{level & 0xF:x}" + s[i + 1:]
        path.write_text("\n".join(lines))
        self.rehash(crossbar_file(k))


@pytest.fixture
def saved(tiny, tmp_path):
    """The tiny program saved as an image."""
    return save_image(tiny.program, tiny.params, tmp_path / "img", meta={"note": "test"})


@pytest.fixture
def edit(saved) -> ImageEdit:
    return ImageEdit(saved)


@pytest.fixture
def editor():
    """The ImageEdit class, for images other than ``saved``."""
    return ImageEdit


@pytest.fixture
def refused():
    """``refused(directory, pattern)``: load_image and ``spinbayes firmware check`` both refuse
    the image with a message matching ``pattern``."""
    from spinbayes.cli import main

    def check(directory, pattern: str) -> str:
        with pytest.raises(FirmwareImageError, match=pattern) as e:
            load_image(directory)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["firmware", "check", str(directory)]) == 2
        assert re.search(pattern, err.getvalue()), err.getvalue()
        return str(e.value)

    return check
