"""Tests of spinbayes.golden.datasets; never downloads (IDX files are written to tmp_path)."""

import gzip
import re
import struct

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.datasets import (
    DIGITS28_NAME,
    OOD_NAMES,
    Dataset,
    DatasetError,
    calibration_images,
    fashion_ood_status,
    find_mnist_dir,
    hold_out,
    load_dataset,
    load_digits28,
    load_digits_split,
    load_mnist_dir,
    ood_sets,
    read_idx,
)

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
          np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
          "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data: bytes, gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _write_idx(path, array, gz=False):
    return _write(path, _idx_bytes(array), gz)


def _mnist_arrays(n_train=30, n_test=20, seed=0, size=28):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
            "y_train": (np.arange(n_train) % 10).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
            "y_test": (np.arange(n_test) % 10).astype(np.uint8)}


def _write_mnist(folder, gz=False, **kw):
    arrays = _mnist_arrays(**kw)
    for key, name in _NAMES.items():
        _write_idx(folder / (name + (".gz" if gz else "")), arrays[key], gz)
    return arrays


def _check_images(x, n=None, shape=None):
    assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] == 1
    assert n is None or len(x) == n
    assert shape is None or tuple(x.shape[1:]) == shape
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# --- digits ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def test_digits_shapes_and_range(digits):
    assert digits.name == "digits" and digits.num_classes == 10
    assert digits.image_shape == (1, 8, 8)
    _check_images(digits.x_train, 1437)
    _check_images(digits.x_test, 360)
    assert float(digits.x_train.max()) == 1.0
    for y in (digits.y_train, digits.y_test):
        assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_digits_split_is_deterministic_and_seeded(digits):
    again = load_digits_split(0.2, 0)
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_test, digits.y_test)
    other = load_digits_split(0.2, 1)
    assert not torch.equal(other.x_test, digits.x_test)
    assert len(load_digits_split(0.5, 0).x_test) == 899


def test_digits_split_is_stratified(digits):
    train = torch.bincount(digits.y_train, minlength=10).double()
    test = torch.bincount(digits.y_test, minlength=10).double()
    assert torch.all((test / (train + test) - 0.2).abs() < 0.01)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_digits_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
        load_digits_split(fraction)


def test_dataset_checks_shapes():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"x_train must have shape \(n, 1, H, W\), not \(4, 64\)"):
        Dataset("digits", x.reshape(4, 64), y, x, y)
    with pytest.raises(ValueError, match=r"y_test must have shape \(4,\), not \(3,\)"):
        Dataset("digits", x, y, x, y[:3])


# --- read_idx ----------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8),
    np.array([[-2, 300], [7, -32768]], dtype=np.int16),
    np.array([-1, 2**31 - 1], dtype=np.int32),
    np.array([0.5, -1.25], dtype=np.float32),
    np.array([[1e-300]], dtype=np.float64),
    np.array([-128, 127], dtype=np.int8),
], ids=["u8-3d", "u8-1d", "i16", "i32", "f32", "f64", "i8"])
def test_read_idx_round_trip(tmp_path, array, gz):
    path = _write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, gz)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_magic_without_suffix(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "plain", array, gz=True)), array)


_GOOD = _idx_bytes(np.zeros((2, 3, 3), np.uint8))


@pytest.mark.parametrize(("data", "gz", "problem"), [
    (b"\x00\x00\x08", False, "truncated header: expected 4 bytes, found 3"),
    (_GOOD[:10], False, "truncated header: expected 16 bytes for 3 dimensions, found 10"),
    (_GOOD[:-1], False, "truncated data: expected 18 bytes of data for shape (2, 3, 3), found 17"),
    (_GOOD + b"\x00\x00", False, "2 trailing bytes: expected 18 bytes of data"),
    (b"\x01" + _GOOD[1:], False, "wrong magic number: the first two bytes are 0x01 0x00"),
    (_GOOD[:2] + b"\x07" + _GOOD[3:], False, "wrong magic number: unknown IDX type code 0x07"),
    (b"not gzip at all", "name", "corrupt gzip data"),
    (gzip.compress(_GOOD)[:-12], "raw", "corrupt gzip data"),
    (b"\x1f\x8b" + b"\x00" * 20, "raw", "corrupt gzip data"),
], ids=["short-header", "short-dims", "short-data", "trailing", "magic", "type-code",
        "gz-not-gzip", "gz-truncated", "gz-garbage"])
def test_read_idx_errors_name_file_and_problem(tmp_path, data, gz, problem):
    path = _write(tmp_path / ("bad.gz" if gz == "name" else "bad"), data)
    with pytest.raises(DatasetError, match=re.escape(f"{path}: {problem}")):
        read_idx(path)


def test_read_idx_missing_file_and_directory(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'nope'}: file not found")):
        read_idx(tmp_path / "nope")
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path}: is not a file")):
        read_idx(tmp_path)


# --- MNIST / Fashion-MNIST folders -------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["", "mnist", "MNIST/raw"])
def test_load_mnist_layouts(tmp_path, sub, gz):
    arrays = _write_mnist(tmp_path / sub, gz=gz)
    assert find_mnist_dir(tmp_path, "mnist") == tmp_path / sub
    ds = load_mnist_dir(tmp_path)
    assert ds.name == "mnist" and ds.image_shape == (1, 28, 28) and ds.num_classes == 10
    _check_images(ds.x_train, 30)
    _check_images(ds.x_test, 20)
    np.testing.assert_array_equal(ds.x_test[:, 0].numpy() * 255, arrays["x_test"])
    assert ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["y_train"])


def test_torchvision_layout_wins_over_flat(tmp_path):
    _write_mnist(tmp_path, n_train=11)
    _write_mnist(tmp_path / "MNIST" / "raw", n_train=12)
    assert len(load_mnist_dir(tmp_path).x_train) == 12


@pytest.mark.parametrize("sub", ["FashionMNIST/raw", "fashion-mnist", "fashion_mnist"])
def test_fashion_folder_lookup(tmp_path, sub):
    _write_mnist(tmp_path, n_train=11)  # MNIST in the root must not be taken for Fashion-MNIST
    assert find_mnist_dir(tmp_path / "x", "fashion-mnist") is None
    assert find_mnist_dir(tmp_path, "fashion-mnist") is None
    _write_mnist(tmp_path / sub, n_train=13)
    ds = load_mnist_dir(tmp_path, "fashion-mnist")
    assert ds.name == "fashion-mnist" and len(ds.x_train) == 13
    assert len(load_mnist_dir(tmp_path, "mnist").x_train) == 11


def test_load_mnist_missing_or_file_dir(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'x'}: data directory not")):
        load_mnist_dir(tmp_path / "x")
    path = _write(tmp_path / "f", b"")
    with pytest.raises(DatasetError, match=re.escape(f"{path}: data directory is not a dir")):
        load_mnist_dir(path)
    with pytest.raises(ValueError, match=r"kind must be one of \('mnist', 'fashion-mnist'\)"):
        load_mnist_dir(tmp_path, "cifar")


def test_load_mnist_lists_folders_tried(tmp_path):
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()  # an incomplete folder
    tried = f"{tmp_path / 'FashionMNIST' / 'raw'}, {tmp_path / 'fashion-mnist'}, " \
            f"{tmp_path / 'fashion_mnist'}"
    with pytest.raises(DatasetError, match=re.escape(
            f"{tmp_path}: no folder holds the fashion-mnist IDX files")) as info:
        load_mnist_dir(tmp_path, "fashion-mnist")
    assert str(info.value).endswith(f"tried: {tried}")
    with pytest.raises(DatasetError, match=re.escape(
            f"tried: {tmp_path / 'MNIST' / 'raw'}, {tmp_path / 'mnist'}, {tmp_path}")):
        load_mnist_dir(tmp_path)


def test_load_mnist_count_mismatch(tmp_path):
    _write_mnist(tmp_path)
    labels = _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    images = tmp_path / "t10k-images-idx3-ubyte"
    with pytest.raises(DatasetError, match=re.escape(
            f"count mismatch: {images} holds 20 images but {labels} holds 19 labels")):
        load_mnist_dir(tmp_path)


def test_load_mnist_label_out_of_range(tmp_path):
    _write_mnist(tmp_path, gz=True)
    labels = _write_idx(tmp_path / "train-labels-idx1-ubyte.gz",
                        np.array([0] * 29 + [12], np.uint8), gz=True)
    with pytest.raises(DatasetError, match=re.escape(f"{labels}: labels must lie in 0..9, "
                                                     "found 12")):
        load_mnist_dir(tmp_path)


def test_load_mnist_images_not_3d(tmp_path):
    _write_mnist(tmp_path)
    images = _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((30, 784), np.uint8))
    with pytest.raises(DatasetError, match=re.escape(
            f"{images}: images must be 3-D (n, rows, cols), found shape (30, 784)")):
        load_mnist_dir(tmp_path)


def test_load_mnist_propagates_idx_errors(tmp_path):
    _write_mnist(tmp_path)
    images = _write(tmp_path / "t10k-images-idx3-ubyte", _GOOD[:-1])
    with pytest.raises(DatasetError, match=re.escape(f"{images}: truncated data")):
        load_mnist_dir(tmp_path)


def test_load_dataset_dispatches(tmp_path, digits):
    assert torch.equal(load_dataset(Config()).x_test, digits.x_test)
    assert len(load_dataset(Config(test_fraction=0.5, split_seed=3)).x_test) == 899
    _write_mnist(tmp_path / "FashionMNIST" / "raw", n_train=14)
    ds = load_dataset(Config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert ds.name == "fashion-mnist" and len(ds.x_train) == 14


# --- OoD sets ----------------------------------------------------------------------------

def _neighbour_corr(x: torch.Tensor) -> float:
    x = x[:, 0].double()
    a, b = x[:, :, :-1].flatten(), x[:, :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_ood_sets_shapes_dtype_range(digits):
    sets = ood_sets(digits, n=50)
    assert tuple(sets) == OOD_NAMES[:4]
    for name, x in sets.items():
        _check_images(x, min(50, len(digits.x_test)) if name == "noisy" else 50, (1, 8, 8))
    assert len(ood_sets(digits, n=400)["noisy"]) == 360  # capped by the test set


def test_ood_sets_are_seeded(digits):
    a, b = ood_sets(digits, n=20, seed=5), ood_sets(digits, n=20, seed=5)
    c = ood_sets(digits, n=20, seed=6)
    d = ood_sets(digits, n=20, seed=-5)
    for name in a:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], c[name]) and not torch.equal(a[name], d[name])


def test_ood_sets_content(digits):
    sets = ood_sets(digits, n=300, noisy_sigma=0.0)
    assert torch.equal(sets["noisy"], digits.x_test[:300])
    noisy = ood_sets(digits, n=300, noisy_sigma=0.5)["noisy"]
    assert 0.2 < float((noisy - digits.x_test[:300]).abs().mean()) < 0.5
    assert abs(float(sets["fakedata"].mean()) - 0.5) < 0.02
    train_mean = float(digits.x_train.mean())
    assert abs(float(sets["gaussian"].mean()) - train_mean) < 0.1  # clipping shifts it a little
    natural = sets["natural"]
    assert torch.all(natural.flatten(1).std(dim=1) > 0)  # no constant patch
    assert _neighbour_corr(natural) > 0.8
    assert _neighbour_corr(sets["fakedata"]) < 0.1 and _neighbour_corr(sets["gaussian"]) < 0.1


def test_ood_natural_at_mnist_size():
    x = torch.rand(4, 1, 28, 28)
    y = torch.zeros(4, dtype=torch.long)
    sets = ood_sets(Dataset("mnist", x, y, x, y), n=40, data_dir=None)
    assert tuple(sets) == OOD_NAMES[:4]
    _check_images(sets["natural"], 40, (1, 28, 28))
    assert _neighbour_corr(sets["natural"]) > 0.8


def test_ood_fashion_only_with_files(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw", n_test=20)
    mnist = load_mnist_dir(tmp_path)
    assert "fashion-mnist" not in ood_sets(mnist, n=5, data_dir=tmp_path)
    fashion = _write_mnist(tmp_path / "fashion-mnist", seed=1)
    sets = ood_sets(mnist, n=5, data_dir=tmp_path)
    assert tuple(sets) == OOD_NAMES
    _check_images(sets["fashion-mnist"], 5, (1, 28, 28))
    np.testing.assert_allclose(sets["fashion-mnist"][:, 0].numpy() * 255,
                               fashion["x_test"][:5], atol=1e-4)
    assert len(ood_sets(mnist, n=50, data_dir=tmp_path)["fashion-mnist"]) == 20
    assert "fashion-mnist" not in ood_sets(mnist, n=5)  # no data_dir
    fashion_ds = load_mnist_dir(tmp_path, "fashion-mnist")
    assert "fashion-mnist" not in ood_sets(fashion_ds, n=5, data_dir=tmp_path)


def test_ood_fashion_shape_mismatch(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw")
    _write_mnist(tmp_path / "fashion_mnist", size=20)
    images = tmp_path / "fashion_mnist" / "t10k-images-idx3-ubyte"
    with pytest.raises(DatasetError, match=re.escape(f"{images}: images are (20, 20) pixels, "
                                                     "expected (28, 28)")):
        ood_sets(load_mnist_dir(tmp_path), n=5, data_dir=tmp_path)


@pytest.mark.parametrize(("kw", "message"), [
    ({"n": 0}, "n must be a positive integer, not 0"),
    ({"n": 2.5}, "n must be a positive integer, not 2.5"),
    ({"noisy_sigma": -0.1}, "noisy_sigma must be >= 0, not -0.1"),
    ({"noisy_sigma": float("nan")}, "noisy_sigma must be >= 0, not nan"),
])
def test_ood_sets_reject_bad_arguments(digits, kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ood_sets(digits, **kw)


def test_fashion_ood_needs_only_its_test_images(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw", n_test=20)
    mnist = load_mnist_dir(tmp_path)
    images = np.random.default_rng(3).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = _write_idx(tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz", images,
                      gz=True)
    for fashion in ("auto", "yes"):
        sets = ood_sets(mnist, n=5, data_dir=tmp_path, fashion=fashion)
        np.testing.assert_allclose(sets["fashion-mnist"][:, 0].numpy() * 255, images[:5],
                                   atol=1e-4)
    assert "fashion-mnist" not in ood_sets(mnist, n=5, data_dir=tmp_path, fashion="no")
    assert fashion_ood_status(mnist, tmp_path) == f"fashion-mnist: the test images of {path}"
    assert fashion_ood_status(mnist, tmp_path, "no") == "fashion-mnist: left out " \
                                                        "(--ood-fashion no)"
    assert fashion_ood_status(mnist, None) is None


def test_a_requested_fashion_set_that_is_missing_names_where_it_looked(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw")
    mnist = load_mnist_dir(tmp_path)
    _write_idx(tmp_path / "fashion" / "t10k-images-idx3-ubyte", _mnist_arrays()["x_test"])
    tried = ", ".join(str(tmp_path / d) for d in ("FashionMNIST/raw", "fashion-mnist",
                                                  "fashion_mnist"))
    with pytest.raises(DatasetError, match=re.escape(
            f"the fashion-mnist OoD set was asked for (--ood-fashion yes) but no folder holds "
            f"t10k-images-idx3-ubyte (optionally .gz); looked in: {tried}")):
        ood_sets(mnist, n=5, data_dir=tmp_path, fashion="yes")
    assert "fashion-mnist" not in ood_sets(mnist, n=5, data_dir=tmp_path)   # auto: left out
    assert fashion_ood_status(mnist, tmp_path) == (
        f"fashion-mnist: not used, no t10k-images-idx3-ubyte[.gz] in {tried}")
    with pytest.raises(DatasetError, match="needs --data-dir and 28x28 images"):
        ood_sets(mnist, n=5, fashion="yes")
    with pytest.raises(ValueError, match=re.escape("ood_fashion (--ood-fashion) must be auto "
                                                   "or no without --data-dir")):
        Config(ood_fashion="yes")


def test_digits28_is_the_digits_split_resized(digits):
    d28 = load_digits28()
    assert d28.name == DIGITS28_NAME == "digits28 (8x8 digits resized)"
    assert d28.image_shape == (1, 28, 28) and d28.x_train.dtype == torch.float32
    assert torch.equal(d28.y_train, digits.y_train) and torch.equal(d28.y_test, digits.y_test)
    assert float(d28.x_train.min()) >= 0 and float(d28.x_train.max()) <= 1
    assert torch.equal(load_digits28().x_test, d28.x_test)                 # deterministic
    # bilinear, half-pixel centres: out = A x A^T with A (28, 8) the 1-D interpolation
    A = np.zeros((28, 8))
    for j in range(28):
        src = max((j + 0.5) * 8 / 28 - 0.5, 0.0)
        i0 = int(np.floor(src))
        A[j, i0] += 1 - (src - i0)
        A[j, min(i0 + 1, 7)] += src - i0
    want = A @ digits.x_test[:, 0].double().numpy() @ A.T
    np.testing.assert_allclose(d28.x_test[:, 0].numpy(), want, atol=1e-5)
    cfg = Config(dataset="digits28")                                      # no --data-dir
    assert torch.equal(load_dataset(cfg).x_test, d28.x_test)


def test_hold_out_is_stratified_seeded_and_disjoint(digits):
    assert hold_out(digits, 0.0) is digits
    data = hold_out(digits, 0.1, seed=0)
    assert len(data.x_val) + len(data.x_train) == len(digits.x_train)
    assert len(data.x_val) == round(0.1 * len(digits.x_train))
    assert set(data.y_val.tolist()) == set(range(10))                     # every class
    assert torch.equal(data.x_test, digits.x_test)
    rows = {r.numpy().tobytes() for r in digits.x_train}
    assert all(r.numpy().tobytes() in rows for r in data.x_val)
    counts = torch.bincount(torch.cat([data.y_train, data.y_val]), minlength=10)
    assert torch.equal(counts, torch.bincount(digits.y_train, minlength=10))
    assert torch.equal(hold_out(digits, 0.1, seed=0).x_val, data.x_val)
    assert not torch.equal(hold_out(digits, 0.1, seed=1).y_val, data.y_val)
    cfg = Config(holdout_fraction=0.1)
    assert torch.equal(load_dataset(cfg).x_val, data.x_val)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 0.5\], not 0.7"):
        hold_out(digits, 0.7)


def test_calibration_images_say_what_they_are(digits):
    x, what = calibration_images(hold_out(digits, 0.2))
    assert len(x) == 288 and what == "288 training images held out before training"
    x, what = calibration_images(digits)
    assert torch.equal(x, digits.x_train[:360])
    assert what.startswith("the first 360 training images (not held out")
