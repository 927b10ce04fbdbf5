"""In-distribution data sets and out-of-distribution (OoD) sets of the golden model.

Nothing is ever downloaded: the digits set (8x8, and resized to 28x28 as ``digits28``) and
the natural images ship with scikit-learn, and MNIST / Fashion-MNIST are read from IDX files
that the user already has on disk (gzipped or not, flat or in torchvision's ``MNIST/raw``
layout; :mod:`spinbayes.golden.idx`, whose :class:`DatasetError`, :func:`read_idx` and
:func:`find_mnist_dir` are re-exported here). Every image tensor is float32 of shape
``(n, 1, H, W)`` with values in ``[0, 1]``.

A fraction of the training set can be held out before training (``Config.holdout_fraction``,
:func:`hold_out`): the OoD operating point is chosen on it (:func:`calibration_images`).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spinbayes.config import Config

from .idx import (
    _IDX_NAMES,
    _NUM_CLASSES,
    DatasetError,
    _candidate_dirs,
    _check_kind,
    _idx_file,
    _read_images,
    _read_split,
    find_mnist_dir,
    read_idx,
)

__all__ = ["DIGITS28_NAME", "OOD_NAMES", "Dataset", "DatasetError", "calibration_images",
           "fashion_ood_file", "fashion_ood_status", "find_fashion_test", "find_mnist_dir",
           "hold_out", "load_dataset", "load_digits28", "load_digits_split", "load_mnist_dir",
           "ood_sets", "read_idx"]

OOD_NAMES = ("gaussian", "noisy", "fakedata", "natural", "fashion-mnist")
#: The name of the digits resized to 28x28 in every report (it is not MNIST).
DIGITS28_NAME = "digits28 (8x8 digits resized)"

# Independent random streams of ood_sets (numpy SeedSequence entropy ends with the stream).
_STREAMS = {"gaussian": 1, "noisy": 2, "fakedata": 3, "natural": 4}


@dataclass(frozen=True, eq=False)
class Dataset:
    """An in-distribution data set with a fixed train/test split.

    Attributes
    ----------
    name : str
        ``"digits"``, :data:`DIGITS28_NAME`, ``"mnist"`` or ``"fashion-mnist"``.
    x_train, x_test : torch.Tensor
        float32 images, shape ``(n, 1, H, W)``, values in ``[0, 1]``.
    y_train, y_test : torch.Tensor
        int64 class labels, shape ``(n,)``, values in ``0 .. num_classes - 1``.
    num_classes : int
        Number of classes (10).
    x_val, y_val : torch.Tensor or None
        Training images held out before training (:func:`hold_out`), or None.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = _NUM_CLASSES
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self):
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("x_val and y_val must be given together")
        for split in ("train", "test") + (("val",) if self.x_val is not None else ()):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or x.shape[1] != 1:
                raise ValueError(f"x_{split} must have shape (n, 1, H, W), not {tuple(x.shape)}")
            if y.dim() != 1 or len(y) != len(x):
                raise ValueError(f"y_{split} must have shape ({len(x)},), not {tuple(y.shape)}")
            if len(x) == 0:
                raise ValueError(f"the {split} set of {self.name!r} is empty (0 images)")
        for split in ("test", "val"):
            x = getattr(self, f"x_{split}")
            if x is not None and self.x_train.shape[1:] != x.shape[1:]:
                raise ValueError(f"train images {tuple(self.x_train.shape[1:])} and {split} "
                                 f"images {tuple(x.shape[1:])} differ in shape")

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


def load_digits28(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The split of :func:`load_digits_split` with every image resized from 8x8 to 28x28
    (bilinear, ``torch.nn.functional.interpolate``, deterministic), so that LeNet-5 runs
    without a download. Named :data:`DIGITS28_NAME`: these are not MNIST digits."""
    import torch.nn.functional as F

    d = load_digits_split(test_fraction, seed)

    def up(x):
        return F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)

    return Dataset(DIGITS28_NAME, up(d.x_train), d.y_train, up(d.x_test), d.y_test)


def hold_out(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """``data`` with a stratified, seeded ``fraction`` of its training set moved to
    ``x_val`` / ``y_val`` (0: ``data`` unchanged). Both parts keep their original order."""
    from sklearn.model_selection import train_test_split

    if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
            or not 0.0 <= fraction <= 0.5:
        raise ValueError(f"fraction must lie in [0, 0.5], not {fraction!r}")
    if fraction == 0:
        return data
    n = len(data.y_train)
    labels = data.y_train.numpy()
    try:
        keep, held = train_test_split(np.arange(n), test_size=fraction, random_state=seed,
                                      stratify=labels)
    except ValueError as e:
        raise ValueError(f"cannot hold out {fraction} of {n} training images with every "
                         f"class on both sides: {e}") from None
    keep, held = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
    return Dataset(data.name, data.x_train[keep], data.y_train[keep], data.x_test,
                   data.y_test, data.num_classes, data.x_train[held], data.y_train[held])


def calibration_images(data: Dataset) -> tuple[torch.Tensor, str]:
    """The in-distribution images on which the OoD operating point is chosen, and what they
    are: the held-out training images when there are any (:func:`hold_out`), else the first
    ``len(x_test)`` training images, which the network has been trained on."""
    if data.x_val is not None:
        return data.x_val, f"{len(data.x_val)} training images held out before training"
    x = data.x_train[:len(data.x_test)]
    return x, (f"the first {len(x)} training images (not held out: the network was trained "
               f"on them; --holdout-fraction holds some out)")


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
    """The in-distribution data set named by ``cfg.dataset`` (see :class:`Config`), with
    ``cfg.holdout_fraction`` of its training set held out (:func:`hold_out`)."""
    if cfg.dataset == "digits":
        data = load_digits_split(cfg.test_fraction, cfg.split_seed)
    elif cfg.dataset == "digits28":
        data = load_digits28(cfg.test_fraction, cfg.split_seed)
    else:
        data = load_mnist_dir(cfg.data_dir, cfg.dataset)
    return hold_out(data, cfg.holdout_fraction, cfg.split_seed)


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


_FASHION_TEST = "t10k-images-idx3-ubyte"


def find_fashion_test(data_dir) -> tuple[Path | None, list[Path]]:
    """Fashion-MNIST's test images (``t10k-images-idx3-ubyte``, optionally ``.gz``; the other
    three IDX files are not needed) in the Fashion-MNIST folders of :func:`find_mnist_dir`
    under ``data_dir``: (the file or None, the folders searched)."""
    folders = _candidate_dirs(Path(data_dir).absolute(), "fashion-mnist")
    for folder in folders:
        path = _idx_file(folder, _FASHION_TEST)
        if path is not None:
            return path, folders
    return None, folders


def _fashion_applies(dataset: Dataset, data_dir) -> bool:
    return (data_dir is not None and dataset.name != "fashion-mnist"
            and dataset.image_shape == (1, 28, 28))


def fashion_ood_status(dataset: Dataset, data_dir, fashion: str = "auto") -> str | None:
    """One sentence on the Fashion-MNIST OoD set for the report: where it was read, or where
    :func:`ood_sets` looked for it; None when it does not apply (no ``data_dir``, images
    that are not 28x28, Fashion-MNIST in distribution)."""
    if not _fashion_applies(dataset, data_dir):
        return None
    if fashion == "no":
        return "fashion-mnist: left out (--ood-fashion no)"
    path, folders = find_fashion_test(data_dir)
    if path is not None:
        return f"fashion-mnist: the test images of {path}"
    return (f"fashion-mnist: not used, no {_FASHION_TEST}[.gz] in "
            + ", ".join(str(f) for f in folders))


def fashion_ood_file(dataset: Dataset, data_dir, fashion: str = "auto") -> Path | None:
    """The Fashion-MNIST test images :func:`ood_sets` reads (None: left out); with
    ``fashion="yes"`` a :class:`DatasetError` names the folders searched when there are
    none, so a run can check this before it trains."""
    if fashion not in ("auto", "yes", "no"):
        raise ValueError(f"fashion must be 'auto', 'yes' or 'no', not {fashion!r}")
    if fashion == "no":
        return None
    if not _fashion_applies(dataset, data_dir):
        if fashion == "yes":
            h, w = dataset.image_shape[1:]
            raise DatasetError(f"the fashion-mnist OoD set needs --data-dir and 28x28 images "
                               f"that are not Fashion-MNIST; the in-distribution set is "
                               f"{dataset.name!r} of {h}x{w} pixels, data directory "
                               f"{data_dir}")
        return None
    path, folders = find_fashion_test(data_dir)
    if path is None and fashion == "yes":
        raise DatasetError(f"the fashion-mnist OoD set was asked for (--ood-fashion yes) but "
                           f"no folder holds {_FASHION_TEST} (optionally .gz); looked in: "
                           f"{', '.join(str(f) for f in folders)}")
    return path


def ood_sets(dataset: Dataset, *, n: int = 500, noisy_sigma: float = 0.5, seed: int = 0,
             data_dir=None, fashion: str = "auto") -> dict[str, torch.Tensor]:
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
        Where to look for Fashion-MNIST's test images (:func:`find_fashion_test`) when
        ``dataset`` holds 28x28 images and is not Fashion-MNIST itself.
    fashion : str
        ``"auto"``: add ``fashion-mnist`` when its test images are found; ``"yes"``: raise
        :class:`DatasetError`, naming the folders searched, when they are not (or when the
        set does not apply); ``"no"``: leave it out.

    Returns
    -------
    dict of str to torch.Tensor
        float32 tensors of shape ``(m, 1, H, W)`` in ``[0, 1]``, keyed in the order of
        :data:`OOD_NAMES`: ``gaussian``, ``noisy``, ``fakedata``, ``natural`` and
        ``fashion-mnist`` (see ``fashion``).
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
    path = fashion_ood_file(dataset, data_dir, fashion)
    if path is not None:
        images = _read_images(path.parent, _FASHION_TEST)[:n]
        if (1, *images.shape[1:]) != shape:
            raise DatasetError(f"{path}: images are {images.shape[1:]} pixels, "
                               f"expected {shape[1:]}")
        out["fashion-mnist"] = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    return out
