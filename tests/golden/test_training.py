"""BBB layers, comparator activation, training determinism and checkpoints."""

import json
import math

import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.checkpoint import (
    CHECKPOINT_MANIFEST,
    CHECKPOINT_WEIGHTS,
    CROSSBAR_MANIFEST,
    CROSSBAR_WEIGHTS,
    MANIFEST_CHECKSUM,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    load_crossbar_images,
    manifest_checksum,
    save_checkpoint,
    save_crossbar_images,
)
from spinbayes.golden.layers import BayesLinear, Comparator, quantize_input
from spinbayes.golden.networks import build_model
from spinbayes.golden.train import bbb_predict, random_shift, train_bbb


def test_kl_matches_closed_form_by_hand():
    layer = BayesLinear(1, 1, prior_sigma=0.5)
    with torch.no_grad():
        layer.weight_mu.fill_(0.3)
        layer.weight_rho.fill_(math.log(math.e ** 0.2 - 1))  # softplus(rho) = 0.2
    # KL(N(0.3, 0.2^2) || N(0, 0.5^2)) = log(0.5/0.2) + (0.04 + 0.09)/(2*0.25) - 1/2
    expected = math.log(2.5) + 0.13 / 0.5 - 0.5
    assert layer.kl().item() == pytest.approx(expected, rel=1e-5)


def test_sampling_statistics_match_the_posterior():
    layer = BayesLinear(50, 40)
    with torch.no_grad():
        layer.weight_rho.fill_(math.log(math.e ** 0.1 - 1))
    g = torch.Generator().manual_seed(0)
    w = torch.stack([layer.sample_weight(g) for _ in range(200)])
    z = (w - layer.weight_mu) / 0.1
    assert abs(z.mean().item()) < 0.01 and z.std().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("bits, z, expected", [
    (1, [-1.0, 0.49, 0.5, 2.0], [0.0, 0.0, 1.0, 1.0]),
    (2, [-0.1, 0.16, 0.17, 0.5, 0.84, 1.3], [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]),
])
def test_comparator_thermometer(bits, z, expected):
    act = Comparator(bits)
    assert act.levels == 2 ** bits - 1
    torch.testing.assert_close(act(torch.tensor(z)), torch.tensor(expected))


def test_comparator_straight_through_gradient():
    z = torch.tensor([-0.5, 0.2, 0.7, 1.5], requires_grad=True)
    Comparator(1)(z).sum().backward()
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_input_quantization():
    x = torch.tensor([0.0, 0.03, 0.04, 0.5, 1.0])
    torch.testing.assert_close(quantize_input(x, 4) * 15, torch.tensor([0., 0., 1., 8., 15.]))


def test_training_is_deterministic_and_learns(digits):
    cfg = Config(hidden=(16,), epochs=4, seed=7)
    models = []
    for _ in range(2):
        m = build_model(cfg, digits.image_shape, 10)
        hist = train_bbb(m, digits.x_train, digits.y_train, cfg, progress=False)
        models.append(m)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)
    assert hist[-1]["train_acc"] > 80.0
    assert hist[-1]["nll"] < hist[0]["nll"]


def test_random_shift_moves_each_image_within_the_bound():
    x = torch.rand(64, 2, 6, 5)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.equal(random_shift(x, 0, None), x)
    seen = set()
    for i in range(len(x)):       # each output is its input translated by some (dy, dx)
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.equal(y[i], _translate(x[i], dy, dx))]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 15         # the 25 offsets are drawn, not one
    assert torch.equal(y, random_shift(x, 2, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"random shifts need images \(B, C, H, W\), not "
                                         r"shape \(4, 30\)"):
        random_shift(torch.rand(4, 30), 1, torch.Generator())


def _translate(img, dy, dx):
    """img (C, H, W) moved down by dy and right by dx, zero fill (reference)."""
    out = torch.zeros_like(img)
    h, w = img.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_training_with_shifts_is_deterministic_and_differs(digits):
    x, y = digits.x_train[:256], digits.y_train[:256]
    runs = {}
    for shift in (0, 1, 1):
        cfg = Config(hidden=(8,), epochs=1, seed=3, augment_shift=shift)
        m = build_model(cfg, digits.image_shape, 10)
        train_bbb(m, x, y, cfg, progress=False)
        runs.setdefault(shift, []).append(m.state_dict())
    a, b = runs[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], runs[0][0][k]) for k in a)


def test_bbb_predict_shapes_and_sampling(small_model, digits):
    p = bbb_predict(small_model, digits.x_test[:9], 5, generator=torch.Generator().manual_seed(0))
    assert p.shape == (9, 5, 10)
    torch.testing.assert_close(p.sum(-1), torch.ones(9, 5))
    assert not torch.equal(p[:, 0], p[:, 1])  # passes draw different weights


def test_relu_and_lenet_topologies_build():
    relu = build_model(Config(activation="relu", hidden=(8, 4)), (1, 8, 8), 10)
    assert relu(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    lenet = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    assert lenet(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="lenet5 expects 28x28 inputs"):
        build_model(Config(topology="lenet5"), (1, 8, 8), 10)


def test_checkpoint_round_trip(tmp_path, small_model, small_cfg):
    d = save_checkpoint(tmp_path / "ck", small_model, small_cfg, image_shape=(1, 8, 8),
                        num_classes=10, history=[{"epoch": 1}])
    model, cfg, manifest = load_checkpoint(d)
    assert cfg == small_cfg and manifest["history"] == [{"epoch": 1}]
    for a, b in zip(model.state_dict().values(), small_model.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(d.glob(".*.tmp"))  # no temporary files left behind


def _resigned(manifest):
    """A manifest changed on purpose, with a matching checksum (to reach the later checks)."""
    return {**manifest, MANIFEST_CHECKSUM: manifest_checksum(manifest)}


def test_checkpoint_refuses_corrupt_files(tmp_path, small_model, small_cfg):
    d = save_checkpoint(tmp_path / "ck", small_model, small_cfg, image_shape=(1, 8, 8),
                        num_classes=10)
    w = d / CHECKPOINT_WEIGHTS
    raw = w.read_bytes()
    w.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=f"{w}: checksum mismatch"):
        load_checkpoint(d)
    w.write_bytes(raw)
    m = d / CHECKPOINT_MANIFEST
    good = json.loads(m.read_text())
    m.write_text(json.dumps({**good, "version": 99}))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(d)
    m.write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{m}: manifest is not valid JSON"):
        load_checkpoint(d)
    m.write_text(json.dumps(_resigned({**good, "config": {**good["config"], "hidden": [17]}})))
    with pytest.raises(CheckpointError, match="tensors do not match the manifest's topology"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_checkpoint(tmp_path / "missing")
    w.unlink()
    m.write_text(json.dumps(good))
    with pytest.raises(CheckpointError, match=f"{w}: weights file not found"):
        load_checkpoint(d)


def test_crossbar_images_round_trip_and_corruption(tmp_path, small_model):
    images = approximate(small_model, 5, 4, seed=1)
    d = save_crossbar_images(tmp_path / "x", images)
    back = load_crossbar_images(d)
    assert back.N == 5 and back.Q == 4 and len(back) == len(images)
    for a, b in zip(images.layers, back.layers):
        assert torch.equal(a.weights, b.weights) and a.scale == b.scale
    m = d / CROSSBAR_MANIFEST
    good = json.loads(m.read_text())
    bad = dict(good, layers=[dict(good["layers"][0], shape=[5, 1, 1]), good["layers"][1]])
    m.write_text(json.dumps(_resigned(bad)))
    with pytest.raises(CheckpointError, match="layer 0 has shape"):
        load_crossbar_images(d)
    m.write_text(json.dumps(good))
    (d / CROSSBAR_WEIGHTS).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_crossbar_images(d)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, "new")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.json"]
