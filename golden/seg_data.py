"""Segmentation data: folder loaders (Kvasir-SEG, CamVid layouts) and seeded synthetic sets.

Nothing is downloaded. Every set is a :class:`SegDataset`: float32 RGB images (n, 3, H, W)
in [0, 1] and int64 masks (n, H, W) of class indices, where -1 marks an ignored pixel
(left out of the loss and of every metric).

* :func:`load_kvasir_dir`: ``root/images`` and ``root/masks`` with matching file stems
  (Kvasir-SEG, the ISIC skin-lesion sets). A mask is binary: a grey or RGB image whose
  luminance is >= 128 for the object, or an index image holding only 0 and 1. The pairs are
  split into train and test with a seed.
* :func:`load_camvid_dir`: ``root/{train,test}`` with ``root/{train,test}annot`` (the SegNet
  CamVid layout; ``val``/``valannot`` join the training set when present), index masks
  (PIL mode L, P or I) and ``root/classes.txt`` (one class name per line).
* :func:`synthetic_segmentation`: procedurally drawn shapes on textured noise, binary
  (``synthetic-binary``: soft-edged blobs, a polyp-like task) or multi-class
  (``synthetic-multiclass``: background, disc, box, triangle with overlapping colours).

Images are resized to ``size`` = (H, W) (bilinear) and masks with nearest neighbour, after the
checks (an image and its mask must have the same size on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DatasetError

__all__ = ["IMAGE_SUFFIXES", "SEG_SOURCES", "SegDataError", "SegDataset", "load_camvid_dir",
           "load_kvasir_dir", "load_seg_dataset", "synthetic_segmentation"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SEG_SOURCES = ("synthetic-binary", "synthetic-multiclass", "kvasir", "camvid")
_MULTICLASS = ("background", "disc", "box", "triangle")


class SegDataError(DatasetError):
    """A segmentation file or folder is missing or malformed; the message names the path."""


@dataclass(frozen=True, eq=False)
class SegDataset:
    """Images (n, 3, H, W) float32 in [0, 1]; masks (n, H, W) int64 in -1 .. C-1 (-1 ignored)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    synthetic: bool = False

    def __post_init__(self):
        if len(self.class_names) < 2:
            raise ValueError(f"a segmentation set needs at least 2 classes, not "
                             f"{self.class_names!r}")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or y.dim() != 3 or x.shape[0] != y.shape[0] \
                    or x.shape[2:] != y.shape[1:]:
                raise ValueError(f"x_{split} (n, C, H, W) and y_{split} (n, H, W) disagree: "
                                 f"{tuple(x.shape)} and {tuple(y.shape)}")
            if len(x) == 0:
                raise ValueError(f"the {split} split is empty")
            if y.numel() and (int(y.min()) < -1 or int(y.max()) >= self.num_classes):
                raise ValueError(f"y_{split} must hold class indices in -1..{self.num_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train images {tuple(self.x_train.shape[1:])} and test images "
                             f"{tuple(self.x_test.shape[1:])} differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def label(self) -> str:
        """The name as printed in reports; synthetic sets say so."""
        return f"{self.name} (synthetic)" if self.synthetic else self.name


def _check_size(size) -> tuple[int, int]:
    if (not isinstance(size, tuple | list) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in size)):
        raise ValueError(f"size must be (H, W) with integers >= 8, not {size!r}")
    return int(size[0]), int(size[1])


# --- files ------------------------------------------------------------------------------------

def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise SegDataError(f"{path}: unreadable image ({e})") from None
    return img


def _read_rgb(path: Path) -> np.ndarray:
    return np.array(_open(path).convert("RGB"), dtype=np.uint8)  # a writable copy


def _read_binary_mask(path: Path) -> np.ndarray:
    img = _open(path)
    if img.mode in ("L", "P", "I", "I;16") and np.asarray(img).max(initial=0) <= 1:
        return np.asarray(img).astype(np.int64)
    return (np.asarray(img.convert("L")) >= 128).astype(np.int64)


def _read_index_mask(path: Path, num_classes: int, ignore_index: int | None) -> np.ndarray:
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16"):
        raise SegDataError(f"{path}: a class-index mask must be a single-channel image "
                           f"(PIL mode L, P or I), not mode {img.mode}")
    m = np.asarray(img).astype(np.int64)
    ignored = m == ignore_index if ignore_index is not None else np.zeros(m.shape, bool)
    bad = ((m < 0) | (m >= num_classes)) & ~ignored
    if bad.any():
        allowed = f"0..{num_classes - 1}" + (f" or {ignore_index} (ignored)"
                                             if ignore_index is not None else "")
        raise SegDataError(f"{path}: wrong class index {int(m[bad][0])} at "
                           f"{int(bad.sum())} pixels; masks must hold {allowed}")
    m[ignored] = -1
    return m


def _images_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise SegDataError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise SegDataError(f"{folder}: two files with the stem {p.stem!r}: "
                               f"{out[p.stem].name} and {p.name}")
        out[p.stem] = p
    return out


def _pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    imgs, msks = _images_in(images), _images_in(masks)
    if not imgs:
        raise SegDataError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [s for s in imgs if s not in msks]
    if missing:
        raise SegDataError(f"{imgs[missing[0]]}: missing mask (no {masks}/{missing[0]}.*); "
                           f"{len(missing)} image(s) have no mask")
    orphans = [s for s in msks if s not in imgs]
    if orphans:
        raise SegDataError(f"{msks[orphans[0]]}: mask without an image in {images}")
    return [(imgs[s], msks[s]) for s in imgs]


def _load_pairs(pairs, size, read_mask) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = size
    xs, ys = [], []
    for img_path, mask_path in pairs:
        img, mask = _read_rgb(img_path), read_mask(mask_path)
        if img.shape[:2] != mask.shape:
            raise SegDataError(f"{mask_path}: size mismatch: mask is {mask.shape[1]}x"
                               f"{mask.shape[0]}, its image {img_path.name} is "
                               f"{img.shape[1]}x{img.shape[0]} (width x height)")
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        y = torch.from_numpy(mask)[None, None].float()
        if (img.shape[0], img.shape[1]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0.0, 1.0)
            y = F.interpolate(y, size=(h, w), mode="nearest")
        xs.append(x[0])
        ys.append(y[0, 0].long())
    return torch.stack(xs), torch.stack(ys)


def load_kvasir_dir(root, size=(64, 64), *, test_fraction: float = 0.2,
                    seed: int = 0) -> SegDataset:
    """Binary segmentation from ``root/images`` and ``root/masks`` (matching stems).

    The pairs are shuffled with ``seed`` and the last ``test_fraction`` held out.
    """
    root = Path(root).absolute()
    size = _check_size(size)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), not {test_fraction!r}")
    if not root.is_dir():
        raise SegDataError(f"{root}: data directory not found")
    pairs = _pairs(root / "images", root / "masks")
    if len(pairs) < 2:
        raise SegDataError(f"{root}: needs at least 2 image/mask pairs, found {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = min(len(pairs) - 1, max(1, round(test_fraction * len(pairs))))
    train = [pairs[i] for i in order[:-n_test]]
    test = [pairs[i] for i in order[-n_test:]]
    x_tr, y_tr = _load_pairs(train, size, _read_binary_mask)
    x_te, y_te = _load_pairs(test, size, _read_binary_mask)
    return SegDataset(root.name, x_tr, y_tr, x_te, y_te, ("background", "object"))


def load_camvid_dir(root, size=(64, 64), *, ignore_index: int | None = None) -> SegDataset:
    """Multi-class segmentation in the CamVid layout (module docstring).

    ``ignore_index``: a mask value that marks unlabelled pixels (stored as -1); any other
    value outside 0 .. C-1 is an error.
    """
    root = Path(root).absolute()
    size = _check_size(size)
    if not root.is_dir():
        raise SegDataError(f"{root}: data directory not found")
    names_file = root / "classes.txt"
    if not names_file.is_file():
        raise SegDataError(f"{names_file}: class list not found (one class name per line)")
    names = tuple(s.strip() for s in names_file.read_text().splitlines() if s.strip())
    if len(names) < 2:
        raise SegDataError(f"{names_file}: needs at least 2 class names, found {len(names)}")

    def read(p):
        return _read_index_mask(p, len(names), ignore_index)

    train = _pairs(root / "train", root / "trainannot")
    if (root / "val").is_dir():
        train += _pairs(root / "val", root / "valannot")
    x_tr, y_tr = _load_pairs(train, size, read)
    x_te, y_te = _load_pairs(_pairs(root / "test", root / "testannot"), size, read)
    return SegDataset(root.name, x_tr, y_tr, x_te, y_te, names)


# --- synthetic --------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, n: int, channels: int, size, cell: int
                  ) -> np.ndarray:
    """Smooth random fields (n, channels, H, W) in about [-1, 1]: a coarse grid, bilinear."""
    h, w = size
    coarse = torch.from_numpy(rng.standard_normal((n, channels, max(2, h // cell),
                                                   max(2, w // cell))).astype(np.float32))
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).numpy()


def _shape_field(kind: str, yy, xx, cy, cx, r, angle) -> np.ndarray:
    """Signed 'radius' of a shape: < 1 inside, 1 on the edge (so edges can be softened)."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = ((xx - cx) * c + (yy - cy) * s) / r, (-(xx - cx) * s + (yy - cy) * c) / r
    if kind == "disc":
        return np.sqrt(u ** 2 + (1.6 * v) ** 2)
    if kind == "box":
        return np.maximum(np.abs(u), 1.4 * np.abs(v))
    # triangle: the largest of three half-plane distances of an equilateral triangle
    normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3,
                                                 np.pi / 2 + 4 * np.pi / 3)]
    return np.max([2.0 * (u * nx + v * ny) for nx, ny in normals], axis=0)


def _draw(rng, n: int, size, multiclass: bool) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.25, 0.65, (n, 3, 1, 1)).astype(np.float32)
    x = base + 0.08 * _smooth_noise(rng, n, 3, size, 8) + 0.04 * _smooth_noise(rng, n, 3, size, 2)
    y = np.zeros((n, h, w), np.int64)
    texture = _smooth_noise(rng, n, 1, size, 2)[:, 0]
    kinds = ("disc", "box", "triangle") if multiclass else ("disc",)
    # Class colour offsets (multi-class colours overlap; binary blobs are redder and brighter).
    offsets = (np.array([[0.22, -0.06, -0.12], [-0.12, 0.2, -0.06], [-0.06, -0.12, 0.22]])
               if multiclass else np.array([[0.22, 0.04, -0.08]]))
    scale = min(h, w)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            k = int(rng.integers(len(kinds)))
            r = rng.uniform(0.09, 0.22) * scale
            cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
            field = _shape_field(kinds[k], yy, xx, cy, cx, r, rng.uniform(0, np.pi))
            soft = rng.uniform(0.04, 0.15)
            alpha = 1.0 / (1.0 + np.exp(np.clip((field - 1.0) / soft, -30, 30)))
            colour = base[i, :, 0, 0] + offsets[k] + rng.normal(0.0, 0.05, 3)
            fill = colour[:, None, None] + 0.1 * texture[i]
            x[i] = (1 - alpha) * x[i] + alpha * fill
            y[i][field < 1.0] = k + 1
    x += rng.normal(0.0, 0.04, x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


def synthetic_segmentation(kind: str = "binary", *, n_train: int = 256, n_test: int = 64,
                           size=(64, 64), seed: int = 0) -> SegDataset:
    """A seeded synthetic set (module docstring); same arguments, same tensors."""
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"kind must be 'binary' or 'multiclass', not {kind!r}")
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    size = _check_size(size)
    multiclass = kind == "multiclass"
    train_seq, test_seq = np.random.SeedSequence([seed, 1 + multiclass]).spawn(2)
    x_tr, y_tr = _draw(np.random.default_rng(train_seq), n_train, size, multiclass)
    x_te, y_te = _draw(np.random.default_rng(test_seq), n_test, size, multiclass)
    names = _MULTICLASS if multiclass else ("background", "blob")
    return SegDataset(f"synthetic-{kind}", *(torch.from_numpy(a) for a in (x_tr, y_tr, x_te,
                                                                          y_te)),
                      class_names=names, synthetic=True)


def load_seg_dataset(source: str, data_dir=None, *, size=(64, 64), n_train: int = 256,
                     n_test: int = 64, seed: int = 0, test_fraction: float = 0.2,
                     ignore_index: int | None = None) -> SegDataset:
    """The set of ``source`` (one of :data:`SEG_SOURCES`); folders need ``data_dir``."""
    if source not in SEG_SOURCES:
        raise ValueError(f"source must be one of {SEG_SOURCES}, not {source!r}")
    if source.startswith("synthetic-"):
        return synthetic_segmentation(source.split("-", 1)[1], n_train=n_train, n_test=n_test,
                                      size=size, seed=seed)
    if data_dir is None:
        raise ValueError(f"data source {source!r} is read from a folder: give a data directory")
    if source == "kvasir":
        return load_kvasir_dir(data_dir, size, test_fraction=test_fraction, seed=seed)
    return load_camvid_dir(data_dir, size, ignore_index=ignore_index)
