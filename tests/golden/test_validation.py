"""Bad input is refused at the boundary: empty data sets, wrong input batches, edited
manifests. Every test checks that the error names the problem (and the file, where there is
one)."""

import copy
import json
import re
import struct

import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.checkpoint import (
    CHECKPOINT_MANIFEST,
    CROSSBAR_MANIFEST,
    MANIFEST_CHECKSUM,
    CheckpointError,
    load_checkpoint,
    load_crossbar_images,
    read_manifest,
    save_checkpoint,
    save_crossbar_images,
)
from spinbayes.golden.datasets import Dataset, DatasetError, load_dataset, load_mnist_dir
from spinbayes.golden.hardware import fold_network
from spinbayes.golden.inference import SpinBayesNet, sample_choices
from spinbayes.golden.layers import input_codes
from spinbayes.golden.networks import BayesNet, build_model
from spinbayes.golden.train import bbb_predict, train_bbb

# --- loaders --------------------------------------------------------------------------------


def _images_file(path, n, size=28):
    """An IDX image file written by hand: magic 0x00000803, three big-endian dimensions."""
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", n, size, size)
                     + bytes(n * size * size))


def _labels_file(path, n):
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", n) + bytes(range(n)))


@pytest.mark.parametrize("empty", ["train", "t10k"])
def test_idx_files_with_zero_images_are_refused(tmp_path, empty):
    for prefix in ("train", "t10k"):
        n = 0 if prefix == empty else 3
        _images_file(tmp_path / f"{prefix}-images-idx3-ubyte", n)
        _labels_file(tmp_path / f"{prefix}-labels-idx1-ubyte", n)
    path = tmp_path.absolute() / f"{empty}-images-idx3-ubyte"
    msg = re.escape(f"{path}: holds no image data (shape (0, 28, 28))")
    with pytest.raises(DatasetError, match=msg):
        load_mnist_dir(tmp_path)
    with pytest.raises(DatasetError, match=msg):
        load_dataset(Config(dataset="mnist", data_dir=str(tmp_path)))


def test_idx_images_of_zero_pixels_are_refused(tmp_path):
    for prefix in ("train", "t10k"):
        _images_file(tmp_path / f"{prefix}-images-idx3-ubyte", 2, size=0)
        _labels_file(tmp_path / f"{prefix}-labels-idx1-ubyte", 2)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: holds no image data"):
        load_mnist_dir(tmp_path)


def test_a_dataset_with_an_empty_split_is_refused():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="the test set of 'digits' is empty"):
        Dataset("digits", x, y, x[:0], y[:0])
    with pytest.raises(ValueError, match="the train set of 'digits' is empty"):
        Dataset("digits", x[:0], y[:0], x, y)


def test_training_refuses_empty_and_mismatched_sets(digits):
    cfg = Config(hidden=(4,), epochs=1)
    model = build_model(cfg, digits.image_shape, digits.num_classes)
    x, y = digits.x_train[:10], digits.y_train[:10]
    with pytest.raises(ValueError, match="the training set must hold at least 2 images .*not 0"):
        train_bbb(model, x[:0], y[:0], cfg, progress=False)  # was a ZeroDivisionError
    with pytest.raises(ValueError, match="x and y differ in length: 10 images but 9 labels"):
        train_bbb(model, x, y[:9], cfg, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in 0..9 \(the network has 10 "
                                         r"outputs\), got \d+..10"):
        train_bbb(model, x, torch.where(y == y[0], 10, y), cfg, progress=False)
    with pytest.raises(ValueError, match="y must hold integer class labels, not torch.float32"):
        train_bbb(model, x, y.float(), cfg, progress=False)
    with pytest.raises(ValueError, match=re.escape("x must have shape (B, 1, 8, 8) for this "
                                                   "network, not (10, 64)")):
        train_bbb(model, x.flatten(1), y, cfg, progress=False)
    nan = x.clone()
    nan[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        train_bbb(model, nan, y, cfg, progress=False)


# --- inference entry points -----------------------------------------------------------------


@pytest.fixture(scope="module")
def nets(small_model):
    images = approximate(small_model, 5, 4, seed=0)
    net = SpinBayesNet(images, small_model, 1)
    return small_model, net, fold_network(net, images)


def _refusals():
    """(input, message) pairs every entry point of the digits MLP refuses."""
    good = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25

    def with_value(v):
        x = good.clone()
        x[1, 0, 4, 4] = v
        return x

    return [
        (torch.rand(3, 64), "x must have shape (B, 1, 8, 8) for this network, not (3, 64)"),
        (torch.rand(3, 1, 28, 28), "x must have shape (B, 1, 8, 8) for this network, "
                                   "not (3, 1, 28, 28)"),
        (torch.rand(1, 8, 8), "x must have shape (B, 1, 8, 8) for this network, not (1, 8, 8)"),
        (good[:0], "x holds no images (shape (0, 1, 8, 8))"),
        (with_value(float("nan")), "x contains NaN"),
        (with_value(1.5), "x: inputs must lie in [0, 1], got range [0.25"),
        (with_value(-0.5), "x: inputs must lie in [0, 1], got range [-0.5, 0.7"),
        (good > 0.5, "x must hold real numbers, not torch.bool"),
        (good.tolist(), "x must be a torch.Tensor, not list"),
    ]


@pytest.mark.parametrize("entry", ["BayesNet.forward", "bbb_predict", "SpinBayesNet.forward",
                                   "SpinBayesNet.predict", "HwNetwork.run"])
def test_inference_entry_points_refuse_bad_batches(nets, entry):
    model, net, hw = nets

    def call(x):
        B = len(x) if isinstance(x, torch.Tensor) else 3
        return {
            "BayesNet.forward": lambda: model(x),
            "bbb_predict": lambda: bbb_predict(model, x, 2),
            "SpinBayesNet.forward": lambda: net(x, 2),
            "SpinBayesNet.predict": lambda: net.predict(x, 2),
            "HwNetwork.run": lambda: hw.run(x, sample_choices(2, B, 2, 5, 1)),
        }[entry]()

    call(torch.rand(3, 1, 8, 8))  # a good batch runs
    for x, msg in _refusals():
        with pytest.raises(ValueError, match=re.escape(msg)):
            call(x)
    if entry != "HwNetwork.run":  # the integer network takes codes; the others do not
        with pytest.raises(ValueError, match="x must be float images in .*not torch.int64"):
            call(torch.zeros(3, 1, 8, 8, dtype=torch.long))


def test_lenet_names_its_own_shape():
    model = build_model(Config(topology="lenet5"), (1, 28, 28), 10).eval()
    with pytest.raises(ValueError, match=re.escape("x must have shape (B, 1, 28, 28) for this "
                                                   "network, not (2, 1, 8, 8)")):
        model(torch.rand(2, 1, 8, 8))


def test_a_network_without_image_shape_checks_its_fan_in(small_model):
    bare = BayesNet(copy.deepcopy(list(small_model.stages)), 4, True).eval()
    assert bare(torch.rand(2, 64)).shape == (2, 10)  # any layout of 64 values per image
    with pytest.raises(ValueError, match=re.escape("x must have shape (B, ...) with 64 values "
                                                   "per image for this network, not (2, 65)")):
        bare(torch.rand(2, 65))


def test_integer_codes_must_lie_in_the_input_range(nets, digits):
    _, _, hw = nets  # A_in = 4: codes 0..15
    x = digits.x_test[:4]
    choices = sample_choices(2, 4, 3, 5, 1, torch.Generator().manual_seed(0))
    codes = input_codes(x, hw.input_bits)
    assert torch.equal(hw.run(codes, choices).per_pass, hw.run(x, choices).per_pass)
    for bad, shown in ((100, "0..100"), (-3, "-3..")):
        wrong = codes.clone()
        wrong[1, 0, 3, 3] = bad
        with pytest.raises(ValueError, match=re.escape(
                "x: integer input codes must lie in 0..15 (A_in = 4 bits), got ") + shown):
            hw.run(wrong, choices)
    with pytest.raises(ValueError, match=re.escape("x must have shape (B, 1, 8, 8)")):
        hw.run(codes.flatten(1), choices)


def test_crossbar_choices_are_checked(nets, digits):
    _, _, hw = nets
    x = digits.x_test[:2]
    good = sample_choices(2, 2, 3, 5, 1)
    for bad, msg in ((good + 5, "choices must lie in 0..4, got "),
                     (good.float(), "choices must be integer crossbar indices, not torch.float32"),
                     (good[0], "choices must have shape (L=2, B=2, T, n=1) with T >= 1, got"),
                     (good[:, :, :0], "with T >= 1, got (2, 2, 0, 1)")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            hw.run(x, bad)


def test_predict_and_bbb_predict_check_their_counts(nets, digits):
    model, net, _ = nets
    x = digits.x_test[:2]
    with pytest.raises(ValueError, match="T must be a positive integer, not 0"):
        bbb_predict(model, x, 0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, not 0"):
        net.predict(x, 2, batch_size=0)
    with pytest.raises(ValueError, match="T must be a positive integer, not 2.0"):
        net(x, 2.0)


# --- manifests ------------------------------------------------------------------------------


@pytest.fixture()
def checkpoint(tmp_path, small_model, small_cfg):
    return save_checkpoint(tmp_path / "ck", small_model, small_cfg, image_shape=(1, 8, 8),
                           num_classes=10, history=[{"epoch": 1, "nll": 0.5}])


def test_manifest_round_trip_carries_its_checksum(checkpoint, small_model, small_cfg):
    manifest = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", manifest[MANIFEST_CHECKSUM])
    model, cfg, _ = load_checkpoint(checkpoint)
    assert cfg == small_cfg and model.image_shape == (1, 8, 8)
    for a, b in zip(model.state_dict().values(), small_model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("edit", [
    {"config": {"activation": "relu"}}, {"config": {"act_bits": 2}},
    {"config": {"input_bits": 8}}, {"config": {"T": 20}}, {"image_shape": [1, 8, 9]},
    {"num_classes": 9}, {"history": []}, {"version": 2, MANIFEST_CHECKSUM: "0" * 64},
])
def test_a_hand_edited_checkpoint_manifest_is_refused(checkpoint, edit):
    path = checkpoint / CHECKPOINT_MANIFEST
    manifest = json.loads(path.read_text())
    for key, value in edit.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(manifest, indent=2))
    msg = f"{path}: the manifest does not match its checksum ({MANIFEST_CHECKSUM})"
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=re.escape(msg)):
        read_manifest(checkpoint)


def test_a_manifest_without_checksum_is_refused(checkpoint):
    path = checkpoint / CHECKPOINT_MANIFEST
    manifest = json.loads(path.read_text())
    del manifest[MANIFEST_CHECKSUM]
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(checkpoint)
    path.write_text(json.dumps({**manifest, "version": 1}))  # written by the older format
    with pytest.raises(CheckpointError, match="format version 1 is not supported"):
        load_checkpoint(checkpoint)


def test_reformatting_a_manifest_keeps_it_valid(checkpoint, small_cfg):
    """The checksum covers the content, not the layout: key order and spaces may change."""
    path = checkpoint / CHECKPOINT_MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(manifest.items())))))
    assert load_checkpoint(checkpoint)[1] == small_cfg


def test_a_hand_edited_crossbar_manifest_is_refused(tmp_path, small_model):
    d = save_crossbar_images(tmp_path / "x", approximate(small_model, 5, 4, seed=1))
    assert load_crossbar_images(d).N == 5
    path = d / CROSSBAR_MANIFEST
    manifest = json.loads(path.read_text())
    manifest["layers"][0]["scale"] *= 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="the manifest does not match its checksum"):
        load_crossbar_images(d)

