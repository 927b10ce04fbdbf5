"""In-distribution data sets and out-of-distribution (OoD) sets of the golden model.

Nothing is ever downloaded: the digits set and the natural images ship with
scikit-learn, and MNIST / Fashion-MNIST are read from IDX files that the user
already has on disk (gzipped or not, flat or in torchvision's ``MNIST/raw`` layout).
Every image tensor is float32 of shape ``(n, 1, H, W)`` with values in ``[0, 1]``.
"""

from __future__ import annotations

import functools
import gzip
import operator
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spinbayes.config import Config

__all__ = ["OOD_NAMES", "Dataset", "DatasetError", "find_mnist_dir", "load_dataset",
           "load_digits_split", "load_mnist_dir", "ood_sets", "read_idx"]

OOD_NAMES = ("gaussian", "noisy", "fakedata", "natural", "fashion-mnist")

_KINDS = ("mnist", "fashion-mnist")
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# IDX type code -> big-endian numpy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NUM_CLASSES = 10
# Independent random streams of ood_sets (numpy SeedSequence entropy ends with the stream).
_STREAMS = {"gaussian": 1, "noisy": 2, "fakedata": 3, "natural": 4}


class DatasetError(ValueError):
    """A data file or directory is missing or malformed; the message names the path."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-distribution data set with a fixed train/test split.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
    x_train, x_test : torch.Tensor
        float32 images, shape ``(n, 1, H, W)``, values in ``[0, 1]``.
    y_train, y_test : torch.Tensor
        int64 class labels, shape ``(n,)``, values in ``0 .. num_classes - 1``.
    num_classes : int
        Number of classes (10).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = _NUM_CLASSES

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or x.shape[1] != 1:
                raise ValueError(f"x_{split} must have shape (n, 1, H, W), not {tuple(x.shape)}")
            if y.dim() != 1 or len(y) != len(x):
                raise ValueError(f"y_{split} must have shape ({len(x)},), not {tuple(y.shape)}")
            if len(x) == 0:
                raise ValueError(f"the {split} set of {self.name!r} is empty (0 images)")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train images {tuple(self.x_train.shape[1:])} and test images "
                             f"{tuple(self.x_test.shape[1:])} differ in shape")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(1, H, W)`` of one image."""
        return tuple(int(s) for s in self.x_train.shape[1:])


def _to_dataset(name, x_train, y_train, x_test, y_test, scale: float) -> Dataset:
    def images(x):
        x = np.asarray(x, dtype=np.float32) / np.float32(scale)
        return torch.from_numpy(np.ascontiguousarray(x[:, None]))

    def labels(y):
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return Dataset(name, images(x_train), labels(y_train), images(x_test), labels(y_test))


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits with a fixed, seeded, stratified split.

    Parameters
    ----------
    test_fraction : float
        Fraction of the 1797 images held out for testing, in ``(0, 1)``.
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        Images of shape ``(n, 1, 8, 8)`` scaled from ``0..16`` to ``[0, 1]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), not {test_fraction!r}")
    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(digits.images, digits.target,
                                              test_size=test_fraction, random_state=seed,
                                              stratify=digits.target)
    return _to_dataset("digits", x_tr, y_tr, x_te, y_te, 16.0)


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


def load_mnist_dir(data_dir, kind: str = "mnist") -> Dataset:
    """Load MNIST or Fashion-MNIST from the four standard IDX files (optionally ``.gz``).

    ``kind`` is ``"mnist"`` or ``"fashion-mnist"``; :func:`find_mnist_dir` gives the folders
    searched under ``data_dir``. Images of shape ``(n, 1, 28, 28)`` are scaled from ``0..255``
    to ``[0, 1]``, labels are int64 ``(n,)``.
    """
    _check_kind(kind)
    root = Path(data_dir).absolute()
    if not root.exists():
        raise DatasetError(f"{root}: data directory not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: data directory is not a directory")
    folder = find_mnist_dir(root, kind)
    if folder is None:
        tried = ", ".join(str(d) for d in _candidate_dirs(root, kind))
        raise DatasetError(f"{root}: no folder holds the {kind} IDX files "
                           f"({', '.join(_IDX_NAMES)}, each optionally .gz); tried: {tried}")
    x_train, y_train = _read_split(folder, "train")
    x_test, y_test = _read_split(folder, "t10k")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{folder}: train images are {x_train.shape[1:]} pixels but test "
                           f"images are {x_test.shape[1:]}")
    return _to_dataset(kind, x_train, y_train, x_test, y_test, 255.0)


def load_dataset(cfg: Config) -> Dataset:
    """The in-distribution data set named by ``cfg.dataset`` (see :class:`Config`)."""
    if cfg.dataset == "digits":
        return load_digits_split(cfg.test_fraction, cfg.split_seed)
    return load_mnist_dir(cfg.data_dir, cfg.dataset)


@functools.lru_cache(maxsize=1)
def _grey_sample_images() -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled photos (china.jpg, flower.jpg) as float64 ITU-R 601 luma."""
    from sklearn.datasets import load_sample_images

    luma = np.array([0.299, 0.587, 0.114])
    return tuple(np.asarray(img, np.float64) @ luma for img in load_sample_images().images)


def _natural_patches(n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` random patches of ``k*H x k*W`` pixels, area-averaged to ``(n, H, W)``, in [0, 1]."""
    h, w = shape
    photos = _grey_sample_images()
    k_max = min(8, *(min(p.shape[0] // h, p.shape[1] // w) for p in photos))
    if k_max < 1:
        raise ValueError(f"images of {h}x{w} pixels are larger than the natural photos")
    out = np.empty((n, h, w))
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        k = int(rng.integers(min(4, k_max), k_max + 1))
        top = rng.integers(photo.shape[0] - k * h + 1)
        left = rng.integers(photo.shape[1] - k * w + 1)
        patch = photo[top:top + k * h, left:left + k * w]
        out[i] = patch.reshape(h, k, w, k).mean(axis=(1, 3))
    return out / 255.0


def ood_sets(dataset: Dataset, *, n: int = 500, noisy_sigma: float = 0.5, seed: int = 0,
             data_dir=None) -> dict[str, torch.Tensor]:
    """Out-of-distribution sets at the image shape and value range of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        The in-distribution set; its images have shape ``(1, H, W)``.
    n : int
        Images per set (``noisy`` and ``fashion-mnist`` hold at most as many as their source).
    noisy_sigma : float
        Standard deviation of the noise added to the test images of ``noisy``.
    seed : int
        Seed of all random draws; the global RNG state is never used.
    data_dir : str or os.PathLike, optional
        Where to look for Fashion-MNIST (see :func:`find_mnist_dir`) when ``dataset`` is MNIST.

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors of shape ``(m, 1, H, W)`` in ``[0, 1]``, keyed in the order of
        :data:`OOD_NAMES`: ``gaussian``, ``noisy``, ``fakedata``, ``natural`` and, for MNIST
        with Fashion-MNIST files under ``data_dir``, ``fashion-mnist``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, not {n!r}")
    if not noisy_sigma >= 0:
        raise ValueError(f"noisy_sigma must be >= 0, not {noisy_sigma!r}")
    seed = operator.index(seed)

    def rng(name):  # SeedSequence entropy must be non-negative: encode the sign separately
        return np.random.default_rng([abs(seed), int(seed < 0), _STREAMS[name]])

    shape = dataset.image_shape
    std, mean = (v.item() for v in torch.std_mean(dataset.x_train.detach().cpu()))
    test = dataset.x_test[:n].detach().cpu().numpy().astype(np.float64)
    sets = {
        "gaussian": rng("gaussian").normal(mean, std, (n, *shape)),
        "noisy": test + rng("noisy").normal(0.0, noisy_sigma, test.shape),
        "fakedata": rng("fakedata").random((n, *shape)),
        "natural": _natural_patches(n, shape[1:], rng("natural"))[:, None],
    }
    out = {k: torch.from_numpy(np.clip(v, 0.0, 1.0).astype(np.float32)) for k, v in sets.items()}
    if dataset.name == "mnist" and data_dir is not None:
        folder = find_mnist_dir(data_dir, "fashion-mnist")
        if folder is not None:
            images = _read_images(folder, "t10k-images-idx3-ubyte")[:n]
            if (1, *images.shape[1:]) != shape:
                raise DatasetError(f"{_idx_file(folder, 't10k-images-idx3-ubyte')}: images "
                                   f"are {images.shape[1:]} pixels, expected {shape[1:]}")
            out["fashion-mnist"] = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    return out

