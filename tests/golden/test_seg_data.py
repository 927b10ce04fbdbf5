"""Tests of spinbayes.golden.seg_data; every file is written by the tests (no download)."""

import numpy as np
import pytest
import torch
from PIL import Image

from spinbayes.golden.seg_data import (
    SegDataError,
    SegDataset,
    load_camvid_dir,
    load_kvasir_dir,
    load_seg_dataset,
    synthetic_segmentation,
)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _square_mask(h, w, value=255):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 4: 3 * w // 4] = value
    return m


def _kvasir(root, names=("a", "b", "c"), h=12, w=16, mask_ext=".png"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, n in enumerate(names):
        Image.fromarray(_rgb(h, w, i)).save(root / "images" / f"{n}.png")
        Image.fromarray(_square_mask(h, w)).save(root / "masks" / f"{n}{mask_ext}")
    return root


def test_kvasir_valid(tmp_path):
    root = _kvasir(tmp_path / "kv")
    d = load_kvasir_dir(root, (12, 16), test_fraction=0.34, seed=0)
    assert isinstance(d, SegDataset) and not d.synthetic
    assert d.x_train.shape == (2, 3, 12, 16) and d.x_test.shape == (1, 3, 12, 16)
    assert d.y_train.dtype == torch.int64 and d.class_names == ("background", "object")
    want = torch.from_numpy(_square_mask(12, 16, 1).astype(np.int64))
    for y in (*d.y_train, *d.y_test):
        assert torch.equal(y, want)
    # pixel values are the file's bytes / 255 (no resize at the native size)
    imgs = {tuple(np.round(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8).ravel()[:6])
            for x in (*d.x_train, *d.x_test)}
    assert imgs == {tuple(_rgb(12, 16, i).ravel()[:6]) for i in range(3)}


def test_kvasir_jpeg_masks_and_resize(tmp_path):
    root = _kvasir(tmp_path / "kv", h=40, w=48, mask_ext=".jpg")
    d = load_kvasir_dir(root, (20, 24), test_fraction=0.34)
    assert d.x_train.shape[1:] == (3, 20, 24) and d.y_train.shape[1:] == (20, 24)
    assert set(torch.unique(d.y_train).tolist()) == {0, 1}
    # nearest-neighbour resize of the square: a quarter of the rows, half of the columns
    assert abs(float(d.y_train.float().mean()) - 0.125) < 0.02


def test_kvasir_index_mask_0_1(tmp_path):
    root = _kvasir(tmp_path / "kv")
    Image.fromarray(_square_mask(12, 16, 1)).save(root / "masks" / "a.png")
    d = load_kvasir_dir(root, (12, 16), test_fraction=0.34)
    assert float(torch.cat([d.y_train, d.y_test]).float().mean()) == pytest.approx(0.125)


def test_kvasir_missing_mask(tmp_path):
    root = _kvasir(tmp_path / "kv")
    (root / "masks" / "b.png").unlink()
    with pytest.raises(SegDataError, match=r"b\.png: missing mask"):
        load_kvasir_dir(root, (12, 16))


def test_kvasir_mask_without_image(tmp_path):
    root = _kvasir(tmp_path / "kv")
    Image.fromarray(_square_mask(12, 16)).save(root / "masks" / "z.png")
    with pytest.raises(SegDataError, match=r"z\.png: mask without an image"):
        load_kvasir_dir(root, (12, 16))


def test_kvasir_size_mismatch(tmp_path):
    root = _kvasir(tmp_path / "kv")
    Image.fromarray(_square_mask(10, 16)).save(root / "masks" / "c.png")
    with pytest.raises(SegDataError, match=r"c\.png: size mismatch: mask is 16x10, its image "
                                           r"c\.png is 16x12"):
        load_kvasir_dir(root, (12, 16))


def test_kvasir_unreadable_image(tmp_path):
    root = _kvasir(tmp_path / "kv")
    (root / "images" / "a.png").write_bytes(b"this is not a PNG")
    with pytest.raises(SegDataError, match=r"a\.png: unreadable image"):
        load_kvasir_dir(root, (12, 16))


def test_kvasir_missing_folders(tmp_path):
    with pytest.raises(SegDataError, match="data directory not found"):
        load_kvasir_dir(tmp_path / "nope")
    (tmp_path / "kv" / "images").mkdir(parents=True)
    with pytest.raises(SegDataError, match=r"masks: folder not found"):
        load_kvasir_dir(tmp_path / "kv")


def _camvid(root, classes=("sky", "road", "car"), h=8, w=10, bad=None):
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            Image.fromarray(_rgb(h, w, i)).save(root / split / f"{split}{i}.png")
            m = (np.arange(h * w).reshape(h, w) % len(classes)).astype(np.uint8)
            Image.fromarray(m).save(root / f"{split}annot" / f"{split}{i}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_camvid_valid(tmp_path):
    root = _camvid(tmp_path / "cv")
    d = load_camvid_dir(root, (8, 10))
    assert d.class_names == ("sky", "road", "car") and d.num_classes == 3
    assert d.x_train.shape == (4, 3, 8, 10)  # train + val
    assert d.x_test.shape == (2, 3, 8, 10)
    want = torch.arange(80).reshape(8, 10) % 3
    assert all(torch.equal(y, want) for y in d.y_test)


def test_camvid_wrong_class_index(tmp_path):
    root = _camvid(tmp_path / "cv")
    m = np.zeros((8, 10), np.uint8)
    m[0, :3] = 7
    Image.fromarray(m).save(root / "testannot" / "test1.png")
    with pytest.raises(SegDataError, match=r"test1\.png: wrong class index 7 at 3 pixels; "
                                           r"masks must hold 0\.\.2"):
        load_camvid_dir(root, (8, 10))


def test_camvid_ignore_index(tmp_path):
    root = _camvid(tmp_path / "cv")
    m = np.full((8, 10), 2, np.uint8)
    m[0, :3] = 255
    Image.fromarray(m).save(root / "testannot" / "test1.png")
    d = load_camvid_dir(root, (8, 10), ignore_index=255)
    y = d.y_test[1]
    assert (y[0, :3] == -1).all() and int((y == -1).sum()) == 3 and (y[y >= 0] == 2).all()


def test_camvid_rgb_mask_and_missing_class_list(tmp_path):
    root = _camvid(tmp_path / "cv")
    Image.fromarray(_rgb(8, 10)).save(root / "trainannot" / "train0.png")
    with pytest.raises(SegDataError, match=r"train0\.png: a class-index mask must be a "
                                           r"single-channel image"):
        load_camvid_dir(root, (8, 10))
    (root / "classes.txt").unlink()
    with pytest.raises(SegDataError, match=r"classes\.txt: class list not found"):
        load_camvid_dir(root, (8, 10))


def test_camvid_unreadable_mask(tmp_path):
    root = _camvid(tmp_path / "cv")
    (root / "testannot" / "test0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SegDataError, match=r"test0\.png: unreadable image"):
        load_camvid_dir(root, (8, 10))


@pytest.mark.parametrize("kind, classes", [("binary", 2), ("multiclass", 4)])
def test_synthetic_is_seeded_and_valid(kind, classes):
    a = synthetic_segmentation(kind, n_train=6, n_test=3, size=(24, 32), seed=3)
    b = synthetic_segmentation(kind, n_train=6, n_test=3, size=(24, 32), seed=3)
    c = synthetic_segmentation(kind, n_train=6, n_test=3, size=(24, 32), seed=4)
    assert a.synthetic and a.label.endswith("(synthetic)") and a.num_classes == classes
    assert a.x_train.shape == (6, 3, 24, 32) and a.y_test.shape == (3, 24, 32)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0
    # every image holds an object; train and test are different draws
    assert all((y > 0).any() for y in a.y_train)
    assert not torch.equal(a.x_train[:3], a.x_test)


def test_synthetic_multiclass_uses_every_class():
    d = synthetic_segmentation("multiclass", n_train=40, n_test=2, size=(32, 32))
    assert set(torch.unique(d.y_train).tolist()) == {0, 1, 2, 3}


def test_load_seg_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="give a data directory"):
        load_seg_dataset("kvasir")
    with pytest.raises(ValueError, match="source must be one of"):
        load_seg_dataset("cityscapes", tmp_path)
    with pytest.raises(ValueError, match=r"size must be \(H, W\)"):
        synthetic_segmentation("binary", size=(4, 4))
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        synthetic_segmentation("binary", n_train=0)
