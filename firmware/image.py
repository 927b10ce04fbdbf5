"""The firmware image on disk: ``$readmemh`` hex files of every crossbar, the register writes
of the descriptor table, and a sealed JSON manifest (docs/FIRMWARE.md describes the format).

An image directory holds:

* ``crossbar_<k>.hex`` for k = 0 .. N-1: one line per crossbar row (``groups_total * R``
  lines), ``cols_max`` hex digits per line, each digit the 4-bit two's-complement level
  -4..4 of one cell, **column 0 in the least-significant (rightmost) digit**. A Verilog
  ``reg [4*cols_max-1:0] xbar [0:groups_total*R-1]`` loads it with ``$readmemh``.
* ``descriptor.hex``: the programming-port writes of :attr:`Program.descriptor`, in order,
  one per line as ``S_AAAA_BBBB_CC_DDDDDDDD`` (:data:`~spinbayes.rtl.regs.PROG_TEXT_FORM`:
  hex ``prog_sel``, ``prog_a``, ``prog_b``, ``prog_c``, ``prog_data`` as two's complement,
  the widths of :data:`~spinbayes.rtl.regs.PROG_FIELDS`). Without the underscores it is one
  76-bit programming word (:func:`~spinbayes.rtl.regs.pack_prog`), which ``$readmemh``
  loads into a ``reg [75:0]`` memory.
* ``manifest.json``: format name and ``format_version``, the design's
  :meth:`RtlParams.describe`, the shapes, T, the RNG seed, the layer table, the byte size and
  SHA-256 of every other file, creation information, the caller's ``meta``, and
  ``manifest_sha256``: the SHA-256 of all the rest (:func:`manifest_checksum`).

:func:`save_image` writes everything into a temporary sibling directory and renames it into
place, so an existing image is replaced only by a complete one; it refuses a program that
:func:`load_image` would refuse. :func:`load_image` refuses an image whose format, version,
seal, shapes, sizes, checksums, hex syntax or level range is wrong, or that does not fit its
design (:func:`~spinbayes.firmware.check.check_image`), with a :class:`FirmwareImageError` (a
``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..rtl.params import RtlParams
from ..rtl.regs import PROG_FIELDS, PROG_TEXT_FORM, Reg, parse_prog_text, prog_text
from .check import (
    DESCRIPTOR_FILE,
    MANIFEST_FILE,
    FirmwareImageError,
    check_image,
    crossbar_file,
    layer_table,
)
from .compiler import Program, Write

__all__ = ["DESCRIPTOR_FILE", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_FILE", "SEAL_KEY",
           "FirmwareImageError", "crossbar_file", "layer_table", "load_image",
           "manifest_checksum", "save_image", "seal_manifest"]

#: ``format`` of the manifest.
FORMAT_NAME = "spinbayes-firmware"
#: Bumped whenever the layout or the meaning of any file of the image changes incompatibly;
#: an image of another version is refused.
FORMAT_VERSION = 3
#: The manifest's key holding the SHA-256 of the rest of the manifest.
SEAL_KEY = "manifest_sha256"
#: Lowest and highest stored cell level (a differential pair of two 4-MTJ cells).
LEVEL_MIN, LEVEL_MAX = -4, 4
_HEX = np.array(list("0123456789abcdef"))
#: ASCII byte -> nibble value, -1 for a byte that is not a hex digit.
_NIBBLE = np.full(256, -1, dtype=np.int16)
for _i, _ch in enumerate("0123456789abcdef"):
    _NIBBLE[ord(_ch)] = _NIBBLE[ord(_ch.upper())] = _i


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _params_fields(params: RtlParams) -> dict:
    return {f: getattr(params, f) for f in RtlParams.__dataclass_fields__}


# --- encoding -----------------------------------------------------------------------------
def _encode_crossbar(levels: np.ndarray) -> bytes:
    """(rows, cols) levels -> hex text, one row per line, column 0 rightmost."""
    nib = (levels.astype(np.int16) & 0xF)[:, ::-1]
    chars = _HEX[nib]
    return ("\n".join("".join(row) for row in chars) + "\n").encode()


def _encode_write(w: Write) -> str:
    try:
        return prog_text(w.sel, w.a, w.b, w.c, w.data)
    except ValueError as e:
        raise ValueError(f"write {w}: {e}") from None


def _plain(v):
    """An integer (numpy's too) as a JSON int; anything else unchanged (and refused later)."""
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest without its seal: canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in manifest.items() if k != SEAL_KEY}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def seal_manifest(manifest: dict) -> dict:
    """The manifest with its seal (``SEAL_KEY``: :func:`manifest_checksum`) set."""
    return {**{k: v for k, v in manifest.items() if k != SEAL_KEY},
            SEAL_KEY: manifest_checksum(manifest)}


# --- saving -------------------------------------------------------------------------------
def save_image(program: Program, params: RtlParams, out_dir, *, meta: dict | None = None
               ) -> Path:
    """Write ``program`` for a design of ``params`` as an image directory; returns its path.

    The files are written into a temporary sibling directory, flushed, and the directory is
    renamed to ``out_dir``. An existing image at ``out_dir`` is moved aside only after the
    new one is complete, and deleted after the rename. ``out_dir`` must not be a non-empty
    directory that is not a firmware image (so nothing else is ever overwritten).
    """
    if not isinstance(params, RtlParams):
        raise ValueError(f"params must be an RtlParams, not {params!r}")
    p = params
    cells = np.asarray(program.cells)
    shape = (p.N, p.groups_total * p.R, p.cols_max)
    if cells.shape != shape:
        raise ValueError(f"program cells have shape {cells.shape}, the design needs {shape} "
                         f"(N, groups_total*R, cols_max)")
    if cells.size and (cells.min() < LEVEL_MIN or cells.max() > LEVEL_MAX):
        raise ValueError(f"cell levels must lie in {LEVEL_MIN}..{LEVEL_MAX}, found "
                         f"{int(cells.min())}..{int(cells.max())}")
    desc_text = "".join(_encode_write(w) + "\n" for w in program.descriptor).encode()
    files = {crossbar_file(k): _encode_crossbar(cells[k]) for k in range(p.N)}
    files[DESCRIPTOR_FILE] = desc_text
    from .. import __version__ as version
    manifest = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "params": p.describe(),
        "shapes": {"cells": list(shape), "descriptor_writes": len(program.descriptor)},
        "T": _plain(program.T), "seed": _plain(program.extra.get("seed")),
        "n_outputs": _plain(program.n_outputs),
        "group_base": [_plain(g) for g in program.group_base],
        "layers": layer_table(program.descriptor),
        "extra": program.extra,
        "crossbar_layout": "one line per row, cols_max hex digits of 4-bit two's-complement "
                           "levels, column 0 in the least-significant digit",
        "descriptor_layout": f"one write per line: {PROG_TEXT_FORM} hex digits, fields "
                             + ", ".join(f"{n} ({w} bits)" for n, w in reversed(PROG_FIELDS))
                             + ", data two's complement",
        "files": {name: {"bytes": len(raw), "sha256": _sha256(raw),
                         "lines": raw.count(b"\n")} for name, raw in files.items()},
        "created": {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "spinbayes": version, "python": platform.python_version(),
                    "numpy": np.__version__},
        "meta": meta or {},
    }
    try:
        manifest = seal_manifest(json.loads(json.dumps(manifest)))     # as it will be read
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta and program.extra must be JSON-serialisable ({e})") from None
    check_image(program.descriptor, cells, manifest, p)      # never write an image load refuses
    manifest_raw = (json.dumps(manifest, indent=2) + "\n").encode()

    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
            raise ValueError(f"{out}: a non-empty directory that is not a firmware image; "
                             f"refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)        # mkdtemp's 0700 would become the image's mode
        for name, raw in [*files.items(), (MANIFEST_FILE, manifest_raw)]:
            _write_synced(tmp / name, raw)
        _fsync_dir(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)      # put the previous image back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_synced(path: Path, raw: bytes) -> None:
    with open(path, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:          # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- loading ------------------------------------------------------------------------------
def _fail(name: str, problem: str):
    raise FirmwareImageError(f"{name}: {problem}")


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise FirmwareImageError(f"{directory}: firmware image directory not found")
    if not path.is_file():
        _fail(MANIFEST_FILE, f"missing in {directory}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(MANIFEST_FILE, f"not valid JSON ({e})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        _fail(MANIFEST_FILE, f"not a {FORMAT_NAME} manifest (format={found!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        _fail(MANIFEST_FILE, f"format_version {version!r}, this code reads format_version "
                             f"{FORMAT_VERSION} only (compile the image again with `spinbayes "
                             f"firmware compile`)")
    seal = manifest.get(SEAL_KEY)
    if seal is None:
        _fail(MANIFEST_FILE, f"no {SEAL_KEY}: the manifest is not sealed")
    if seal != manifest_checksum(manifest):
        _fail(MANIFEST_FILE, f"{SEAL_KEY} mismatch: the manifest was edited or corrupted after "
                             f"it was written")
    return manifest


def _manifest_params(manifest: dict) -> RtlParams:
    d = manifest.get("params")
    if not isinstance(d, dict):
        _fail(MANIFEST_FILE, "no params object")
    missing = [f for f in RtlParams.__dataclass_fields__ if f not in d]
    if missing:
        _fail(MANIFEST_FILE, f"params lack {missing}")
    try:
        params = RtlParams(**{f: d[f] for f in RtlParams.__dataclass_fields__})
    except (TypeError, ValueError) as e:
        _fail(MANIFEST_FILE, f"params are not a valid design ({e})")
    derived = params.describe()
    wrong = [f"{k}={d.get(k)!r} (the fields give {derived.get(k)!r})"
             for k in sorted(set(d) | set(derived)) if d.get(k) != derived.get(k)]
    if wrong:
        _fail(MANIFEST_FILE, "params do not follow from their fields: " + ", ".join(wrong))
    return params


def _checked_bytes(directory: Path, name: str, entry) -> bytes:
    """The file's bytes; refuses a missing file. Sizes and checksums are checked later, so
    that a structural problem (truncation, bad syntax) gets the more specific message."""
    if not isinstance(entry, dict) or not {"bytes", "sha256"} <= set(entry):
        _fail(MANIFEST_FILE, f"no size and sha256 for {name}")
    path = directory / name
    if not path.is_file():
        _fail(name, f"missing (the manifest lists it) in {directory}")
    return path.read_bytes()


def _check_integrity(name: str, raw: bytes, entry: dict) -> None:
    if len(raw) != entry["bytes"]:
        _fail(name, f"{len(raw)} bytes, the manifest says {entry['bytes']} "
                    f"(truncated or edited)")
    if _sha256(raw) != entry["sha256"]:
        _fail(name, "sha256 mismatch (file corrupt or edited)")


def _split_lines(name: str, raw: bytes, expected: int) -> list[bytes]:
    if raw and not raw.endswith(b"\n"):
        _fail(name, "no newline at the end of the last line (truncated?)")
    lines = raw.split(b"\n")[:-1] if raw else []
    if len(lines) != expected:
        hint = " (truncated?)" if len(lines) < expected else ""
        _fail(name, f"{len(lines)} lines, expected {expected}{hint}")
    return lines


def _decode_crossbar(name: str, raw: bytes, rows: int, cols: int) -> np.ndarray:
    lines = _split_lines(name, raw, rows)
    for i, line in enumerate(lines):
        if len(line) != cols:
            _fail(name, f"line {i + 1}: {len(line)} characters, expected {cols} hex digits")
    buf = np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(rows, cols)
    nib = _NIBBLE[buf]
    bad = np.argwhere(nib < 0)
    if bad.size:
        r, c = bad[0]
        _fail(name, f"line {r + 1}, column {c + 1}: {chr(buf[r, c])!r} is not a hex digit")
    levels = np.where(nib >= 8, nib - 16, nib).astype(np.int8)[:, ::-1]
    out_of_range = np.argwhere((levels < LEVEL_MIN) | (levels > LEVEL_MAX))
    if out_of_range.size:
        r, c = out_of_range[0]
        _fail(name, f"line {r + 1} (row {r}), cell column {c}: level {int(levels[r, c])} "
                    f"outside {LEVEL_MIN}..{LEVEL_MAX}")
    return np.ascontiguousarray(levels)


def _decode_descriptor(name: str, raw: bytes, expected: int) -> list[Write]:
    writes = []
    for i, line in enumerate(_split_lines(name, raw, expected)):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            _fail(name, f"line {i + 1}: not ASCII")
        fields = parse_prog_text(text)
        if fields is None:
            _fail(name, f"line {i + 1}: {text[:40]!r} is not {PROG_TEXT_FORM} hex")
        sel, a, b, c, d = fields
        try:
            reg = Reg(sel)
        except ValueError:
            _fail(name, f"line {i + 1}: prog_sel {sel} is not a register (Reg)")
        writes.append(Write(reg, a, b, c, d))
    return writes


def load_image(directory, params: RtlParams | None = None) -> tuple[Program, dict]:
    """Read and verify an image written by :func:`save_image`: ``(program, manifest)``.

    ``params``: the design the image is meant for; the image's own parameters must equal
    them. Besides the format (version, manifest seal, shapes, sizes, checksums, hex syntax),
    the image must fit its design (:func:`~spinbayes.firmware.check.check_image`). Raises
    :class:`FirmwareImageError` naming the file and the problem.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    own = _manifest_params(manifest)
    if params is not None:
        if not isinstance(params, RtlParams):
            raise ValueError(f"params must be an RtlParams, not {params!r}")
        theirs, ours = _params_fields(own), _params_fields(params)
        diff = [f"{f}={theirs[f]} (design: {ours[f]})" for f in ours if theirs[f] != ours[f]]
        if diff:
            _fail(MANIFEST_FILE, "image built for another design: " + ", ".join(diff))
    p = own
    shape = [p.N, p.groups_total * p.R, p.cols_max]
    shapes = manifest.get("shapes") or {}
    if shapes.get("cells") != shape:
        _fail(MANIFEST_FILE, f"cells shape {shapes.get('cells')} does not match its params "
                             f"(N, groups_total*R, cols_max) = {shape}")
    n_desc = shapes.get("descriptor_writes")
    if not isinstance(n_desc, int) or isinstance(n_desc, bool) or n_desc < 0:
        _fail(MANIFEST_FILE, f"bad descriptor_writes {n_desc!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        _fail(MANIFEST_FILE, "no files table")
    names = [crossbar_file(k) for k in range(p.N)] + [DESCRIPTOR_FILE]
    for name in names:
        if name not in files:
            _fail(MANIFEST_FILE, f"files table lacks {name}")
    cells = np.zeros(shape, dtype=np.int8)
    for k in range(p.N):
        name = crossbar_file(k)
        raw = _checked_bytes(directory, name, files[name])
        cells[k] = _decode_crossbar(name, raw, shape[1], shape[2])
        _check_integrity(name, raw, files[name])
    raw = _checked_bytes(directory, DESCRIPTOR_FILE, files[DESCRIPTOR_FILE])
    descriptor = _decode_descriptor(DESCRIPTOR_FILE, raw, n_desc)
    _check_integrity(DESCRIPTOR_FILE, raw, files[DESCRIPTOR_FILE])
    check_image(descriptor, cells, manifest, p)
    program = Program(descriptor, cells, list(manifest["group_base"]), manifest["n_outputs"],
                      manifest["T"], dict(manifest["extra"]))
    return program, manifest
