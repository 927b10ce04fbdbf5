"""The IDX files of MNIST and Fashion-MNIST: reading, validating and finding them.

Files may be gzipped (named ``*.gz`` or starting with the gzip magic) and lie flat in a
folder or in torchvision's ``MNIST/raw`` layout; :func:`find_mnist_dir` lists the folders
tried. Every error is a :class:`DatasetError` whose message names the path.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "find_mnist_dir", "read_idx"]

_KINDS = ("mnist", "fashion-mnist")
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# IDX type code -> big-endian numpy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NUM_CLASSES = 10


class DatasetError(ValueError):
    """A data file or directory is missing or malformed; the message names the path."""


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped when named ``*.gz`` or starting with the gzip magic).

    Returns a native-endian numpy array of the shape and type the header gives, e.g.
    uint8 ``(n, rows, cols)`` for images and uint8 ``(n,)`` for labels.
    """
    path = Path(path).absolute()
    if not path.is_file():
        problem = "is not a file" if path.exists() else "file not found"
        raise DatasetError(f"{path}: {problem}")
    data = path.read_bytes()
    if path.name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated header: expected 4 bytes, found {len(data)}")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: wrong magic number: the first two bytes are "
                           f"0x{data[0]:02x} 0x{data[1]:02x}, expected 0x00 0x00 "
                           f"(not an IDX file)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise DatasetError(f"{path}: wrong magic number: unknown IDX type code 0x{code:02x} "
                           f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)})")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DatasetError(f"{path}: truncated header: expected {start} bytes for {ndim} "
                           f"dimensions, found {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected, found = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, len(data) - start
    if found < expected:
        raise DatasetError(f"{path}: truncated data: expected {expected} bytes of data for "
                           f"shape {shape}, found {found}")
    if found > expected:
        raise DatasetError(f"{path}: {found - expected} trailing bytes: expected {expected} "
                           f"bytes of data for shape {shape}, found {found}")
    array = np.frombuffer(data, dtype, offset=start).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")


def _candidate_dirs(data_dir: Path, kind: str) -> list[Path]:
    if kind == "mnist":
        return [data_dir / "MNIST" / "raw", data_dir / "mnist", data_dir]
    return [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist",
            data_dir / "fashion_mnist"]


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist_dir(data_dir, kind) -> Path | None:
    """The first candidate folder under ``data_dir`` that holds all four IDX files.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Root directory; searched in ``MNIST/raw``, ``mnist``, itself (for ``"mnist"``) or
        ``FashionMNIST/raw``, ``fashion-mnist``, ``fashion_mnist`` (for ``"fashion-mnist"``).
    kind : str
        ``"mnist"`` or ``"fashion-mnist"``.

    Returns
    -------
    pathlib.Path or None
        The folder (absolute), or None when no candidate holds the files.
    """
    _check_kind(kind)
    for folder in _candidate_dirs(Path(data_dir).absolute(), kind):
        if all(_idx_file(folder, name) is not None for name in _IDX_NAMES):
            return folder
    return None


def _read_images(folder: Path, name: str) -> np.ndarray:
    path = _idx_file(folder, name)
    images = read_idx(path)
    if images.ndim != 3:
        raise DatasetError(f"{path}: images must be 3-D (n, rows, cols), "
                           f"found shape {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DatasetError(f"{path}: holds no image data (shape {images.shape}); "
                           f"expected at least one image of at least 1x1 pixels")
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be uint8 (type code 0x08), "
                           f"found {images.dtype}")
    return images


def _read_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_images(folder, f"{prefix}-images-idx3-ubyte")
    path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DatasetError(f"{path}: labels must be 1-D, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"count mismatch: {_idx_file(folder, f'{prefix}-images-idx3-ubyte')} "
                           f"holds {len(images)} images but {path} holds {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= _NUM_CLASSES)]
    if bad.size:
        raise DatasetError(f"{path}: labels must lie in 0..{_NUM_CLASSES - 1}, "
                           f"found {bad[0].item()!r}")
    return images, labels


