"""Tests of segmentation: metrics (hand-made cases), network and SpinBayes form, a short
training run on the synthetic set, and the ``segment`` command."""

import argparse
import json
import math

import pytest
import torch

from spinbayes.cli_segment import add_parser, main
from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.inference import recalibrate_bn
from spinbayes.golden.seg_data import synthetic_segmentation
from spinbayes.golden.seg_metrics import (
    boundary_band,
    class_accuracy,
    confidence_mask,
    confusion,
    evaluate_seg,
    iou,
)
from spinbayes.golden.seg_networks import (
    SpinBayesSegNet,
    bbb_seg_predict,
    build_seg_model,
    mc_seg_predict,
    seg_twin,
)
from spinbayes.golden.segment import SegSettings, evaluate_set


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the tests are small, and threads only contend on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- metrics ------------------------------------------------------------------------------


def test_confusion_iou_and_class_accuracy_by_hand():
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, -1, 0]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    conf = confusion(pred, labels, 4)
    assert conf.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    got = iou(conf)
    assert got[:3].tolist() == pytest.approx([50.0, 200 / 3, 50.0])
    assert math.isnan(got[3])  # class 3 neither occurs nor is predicted
    acc = class_accuracy(conf)
    assert acc[:3].tolist() == pytest.approx([200 / 3, 100.0, 50.0]) and math.isnan(acc[3])


def test_confidence_mask_normalisation():
    def probs(passes):  # passes: T lists of C probabilities for one pixel
        return torch.tensor(passes, dtype=torch.float64)[None, :, :, None, None]

    assert float(confidence_mask(probs([[0.7, 0.3]] * 5))) == 0.0
    # two passes (0.8, 0.2), (0.6, 0.4): Var = 0.01 per class, sum 0.02, / (1 - 1/2)
    assert float(confidence_mask(probs([[0.8, 0.2], [0.6, 0.4]]))) == pytest.approx(0.04)
    # the bound is reached: one-hot passes, classes equally frequent
    assert float(confidence_mask(probs([[1, 0], [0, 1]]))) == pytest.approx(1.0)
    eye = torch.eye(4).tolist()
    assert float(confidence_mask(probs(eye + eye))) == pytest.approx(1.0)
    # three one-hot passes over 4 classes: sum Var = 1 - 3/9, / (3/4)
    assert float(confidence_mask(probs(eye[:3]))) == pytest.approx((2 / 3) / 0.75)
    rand = torch.softmax(5 * torch.randn(50, 7, 5, 3, 3, generator=torch.Generator()
                                         .manual_seed(0)), dim=2)
    u = confidence_mask(rand)
    assert u.shape == (50, 3, 3) and float(u.min()) >= 0.0 and float(u.max()) <= 1.0


def test_boundary_band_by_hand():
    labels = torch.zeros(1, 5, 5, dtype=torch.int64)
    labels[0, 1:3, 1:3] = 1
    want = torch.zeros(1, 5, 5, dtype=torch.bool)
    want[0, :4, :4] = True
    assert torch.equal(boundary_band(labels), want)


def test_evaluate_seg_by_hand():
    # one image, 1x4 pixels, T = 2, C = 2
    passes = [[[0.9, 0.1], [0.9, 0.1]],      # pred 0, U 0
              [[0.8, 0.2], [0.6, 0.4]],      # pred 0, U 0.04
              [[1.0, 0.0], [0.0, 1.0]],      # mean (0.5, 0.5): pred 0 (first max), U 1
              [[0.2, 0.8], [0.2, 0.8]]]      # pred 1, U 0
    probs = torch.tensor(passes, dtype=torch.float64).permute(1, 2, 0)[None, :, :, None, :]
    labels = torch.tensor([[[0, 1, 0, 1]]])
    cfg = Config(uncertainty_measure="variance", uncertainty_threshold=0.2)
    r = evaluate_seg("hand", probs, labels, cfg)
    assert r.pixel_acc == pytest.approx(75.0)
    assert r.iou == pytest.approx([200 / 3, 50.0]) and r.mean_iou == pytest.approx(175 / 3)
    assert r.mean_acc == pytest.approx(75.0)
    assert r.u_correct == pytest.approx(1 / 3) and r.u_incorrect == pytest.approx(0.04)
    # threshold 0 + 0.2 (1 - 0): only the third pixel is uncertain
    assert (r.ratios.n_cc, r.ratios.n_cu, r.ratios.n_ic, r.ratios.n_iu) == (2, 1, 1, 0)
    assert r.ratios.R_cc == pytest.approx(200 / 3) and r.ratios.UA == pytest.approx(50.0)
    assert r.u_boundary == pytest.approx(1.04 / 4) and math.isnan(r.u_interior)
    assert r.errors_on_boundary == pytest.approx(100.0)


def test_evaluate_seg_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"probs must have shape \(B, T, C, H, W\)"):
        evaluate_seg("x", torch.rand(2, 3, 4), torch.zeros(2, 4, 4, dtype=torch.long),
                     Config())
    with pytest.raises(ValueError, match=r"labels must lie in -1\.\.1"):
        evaluate_seg("x", torch.rand(1, 2, 2, 3, 3), torch.full((1, 3, 3), 2), Config())


# --- network --------------------------------------------------------------------------------

def _net(activation="comparator", **kw):
    cfg = Config(activation=activation, seed=0)
    return build_seg_model(cfg, 3, 3, width=4, pyramid=8, **kw), cfg


def test_spinbayes_equals_the_model_with_the_chosen_crossbars():
    model, _ = _net("relu")
    model.eval()
    images = approximate(model, 4, 4, seed=1)
    assert len(images) == len(model.stages) == 11
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    L = len(images)
    w = [layer.dequantized() for layer in images.layers]
    # n = 1, every layer on crossbar 2: the model with those weights
    net = SpinBayesSegNet(images, model, 1)
    out = net(x, choices=torch.full((L, 2, 1, 1), 2)).logits[:, 0]
    torch.testing.assert_close(out, model(x, [wl[2] for wl in w]), atol=1e-5, rtol=1e-5)
    # n = 2 on crossbars (0, 3): the mean of two convolutions = the mean weight (linearity)
    net2 = SpinBayesSegNet(images, model, 2)
    choices = torch.tensor([0, 3]).expand(L, 2, 1, 2)
    out2 = net2(x, choices=choices).logits[:, 0]
    torch.testing.assert_close(out2, model(x, [(wl[0] + wl[3]) / 2 for wl in w]),
                               atol=1e-5, rtol=1e-5)


def test_spinbayes_passes_are_reproducible_and_recalibrate():
    model, _ = _net()
    images = approximate(model, 3, 4, seed=0)
    net = SpinBayesSegNet(images, model, 1)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = net(x, 4, generator=torch.Generator().manual_seed(5))
    b = net(x, choices=a.choices)
    assert a.logits.shape == (3, 4, 3, 16, 16) and torch.equal(a.logits, b.logits)
    before = net.body.stages[0].bn.running_mean.clone()
    recalibrate_bn(net, x, 2, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(before, net.body.stages[0].bn.running_mean)
    with pytest.raises(ValueError, match=r"n_way must be an integer in 1\.\.N=3"):
        SpinBayesSegNet(images, model, 4)
    with pytest.raises(ValueError, match=r"choices must lie in 0\.\.2"):
        net(x, choices=torch.full((len(images), 3, 1, 1), 3))


def test_resnet18_encoder_maps_and_runs():
    model, _ = _net(encoder="resnet18")
    # stem + 8 blocks x 2 + 3 projections, 4 laterals, 4 smoothing, the head
    assert len(model.stages) == 1 + 16 + 3 + 4 + 4 + 1
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    assert model(x).shape == (2, 3, 32, 32)
    net = SpinBayesSegNet(approximate(model, 2, 4), model, 2)
    assert net(x, 2).probs.shape == (2, 2, 3, 32, 32)
    with pytest.raises(ValueError, match="encoder must be one of"):
        _net(encoder="vgg")


def test_gaussian_and_mask_passes_differ():
    model, _ = _net("relu")  # an untrained comparator net outputs 0 everywhere
    x = torch.rand(2, 3, 16, 16)
    p = bbb_seg_predict(model, x, 3, generator=torch.Generator().manual_seed(0))
    assert p.shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(p.sum(dim=2), torch.ones(2, 3, 16, 16, dtype=p.dtype))
    assert not torch.equal(p[:, 0], p[:, 1])
    for method in ("mc_dropout", "mc_dropconnect"):
        twin = seg_twin(model, method, 0.3)
        q = mc_seg_predict(twin, x, 3, generator=torch.Generator().manual_seed(0))
        assert not torch.equal(q[:, 0], q[:, 1])
    assert seg_twin(model, "mc_dropout", 0.3).stages[0].weight.p == 0.0  # image not dropped
    with pytest.raises(ValueError, match="needs a twin with dropout"):
        mc_seg_predict(model, x, 2)


# --- a short run ----------------------------------------------------------------------------

def test_short_training_segments_and_errors_are_uncertain():
    """Five epochs on 96 synthetic binary images: mean IoU well above that of the
    all-background prediction, and incorrect pixels more uncertain than correct ones."""
    data = synthetic_segmentation("binary", n_train=96, n_test=12, size=(32, 32), seed=0)
    cfg = Config(epochs=5, batch_size=8, lr=5e-3, N=4, T=6, recal_batches=4, seed=0)
    settings = SegSettings(size=(32, 32), width=6, pyramid=12, n_ways=(2,), figure_images=0,
                           baselines=False)
    res = evaluate_set(data, cfg, settings, progress=False)
    by = {r.name: r for r in res["results"]}
    assert set(by) == {"BBB (float)", "SpinBayes n=2"}
    background = 100.0 * float((data.y_test == 0).float().mean())
    chance = background / 2  # IoU background = its share, IoU object = 0
    for r in by.values():
        assert r.mean_iou > chance + 10.0, (r.name, r.mean_iou, chance)
        assert r.pixel_acc > background, (r.name, r.pixel_acc, background)
        assert r.u_incorrect > 1.2 * r.u_correct, (r.name, r.u_incorrect, r.u_correct)


# --- command line ---------------------------------------------------------------------------

def _parse(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    return p.parse_args(["segment", *argv])


def test_cli_quick_writes_tables_and_figures(tmp_path, capsys):
    out = tmp_path / "seg"
    args = _parse(["--quick", "--quiet", "--data", "synthetic-binary", "--no-baselines",
                   "--out", str(out), "--T", "3"])
    assert main(args) == 0
    report = json.loads((out / "segment.json").read_text())
    assert report["config"]["T"] == 3 and report["sets"][0]["synthetic"] is True
    names = [r["name"] for r in report["sets"][0]["results"]]
    assert names == ["BBB (float)", "SpinBayes n=1", "SpinBayes n=2"]
    assert sorted(p.name for p in out.glob("*.png")) == [
        "fig6_synthetic-binary_bbb.png", "fig6_synthetic-binary_spinbayes_n1.png",
        "fig6_synthetic-binary_spinbayes_n2.png"]
    md = (out / "segment.md").read_text()
    assert "### Table 2: synthetic-binary (synthetic)" in md and "| SpinBayes n=2 |" in md
    assert "Table 2" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--data", "kvasir"], "--data kvasir reads a folder: give --data-dir"),
    (["--data", "camvid", "--data-dir", "/nonexistent/camvid"], "data directory not found"),
    (["--threads", "0"], "threads (--threads) must be a positive integer, not 0"),
    (["--width", "0"], "width must be a positive integer, not 0"),
    (["--n-ways", "1,4"], "n_ways must not exceed N=3, not (1, 4)"),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    assert main(_parse(["--quick", "--quiet", "--out", str(tmp_path), *argv])) == 2
    assert message in capsys.readouterr().err
