"""The paper's MNIST rows, the engineering parts, on small data the tests write: LeNet-5 on
the bundled 28x28 digits, the tables written before the hardware check, the OoD sets named
and sized in the report, the operating point chosen on held-out training images, and the
training budget of every method of `compare`."""

import json
import struct

import numpy as np
import pytest

from spinbayes import workflow as wf
from spinbayes.cli import main
from spinbayes.config import Config
from spinbayes.golden import evaluate as golden_evaluate

TINY = ["--quiet", "--T", "2", "--ood-samples", "8", "--recal-batches", "1", "--N", "3"]


def _idx(path, array):
    arr = np.asarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">HBB", 0, 0x08, arr.ndim)
                     + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def test_lenet5_runs_on_the_bundled_28x28_digits(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--out", str(out), "--dataset", "digits28", "--topology", "lenet5",
               "--epochs", "1", "--holdout-fraction", "0.1", "--no-rtl", "--no-synth", *TINY])
    assert rc == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "Tables 1 and 3 (360 test images):" in stdout and "peak resident memory" in stdout
    report = json.loads((out / wf.EVAL_JSON).read_text())
    assert report["dataset"] == "digits28 (8x8 digits resized)"
    assert report["ood_sets"] == {"gaussian": 8, "noisy": 8, "fakedata": 8, "natural": 8}
    assert report["ood_samples_cap"] == 8 and report["hardware_mode_status"] == "done"
    assert report["operating_point_images"] == "144 training images held out before training"
    for r in report["results"]:
        op = r["operating_point"]
        assert op["images"] == 144 and op["target"] == 5.0 and op["rejection"] <= 5.0
        assert all(0 <= v["op_detection"] <= 100 for v in r["ood"].values())
    text = (out / wf.EVAL_MARKDOWN).read_text()
    assert "### Table 1: prediction error and uncertainty (digits28 (8x8 digits resized), " \
           "lenet5" in text
    assert "OoD sets (each holds at most --ood-samples = 8 images): gaussian 8" in text
    assert "### OoD detection (%) at a stated operating point: Table 3's rule, its threshold " \
           "chosen per method so that at most 5 % of 144 training images held out before " \
           "training are rejected" in text
    assert [s["stage"] for s in report["stages"]] == [
        "Tables 1 and 3 (360 test images)", "integer hardware mode (360 test images)"]


def test_tables_are_on_disk_when_the_hardware_check_fails(tmp_path, monkeypatch):
    cfg = Config(hidden=(8,), epochs=1, T=2, ood_samples=8, recal_batches=1, N=3)
    trained = wf.train(cfg, progress=False)
    mapped = wf.map_trained(trained)

    def broken(*args, **kwargs):
        raise RuntimeError("the integer check broke")

    monkeypatch.setattr(golden_evaluate, "evaluate_hardware", broken)
    with pytest.raises(RuntimeError, match="the integer check broke"):
        wf.evaluate(trained, mapped, wf.ood(trained), tmp_path, progress=False)
    report = json.loads((tmp_path / wf.EVAL_JSON).read_text())
    assert [r["name"] for r in report["results"]][:2] == ["BBB (float)", "SpinBayes n=1"]
    assert report["hardware_mode_status"] == "failed: RuntimeError: the integer check broke"
    text = (tmp_path / wf.EVAL_MARKDOWN).read_text()
    assert text.startswith("### Table 1") and "### Table 3" in text
    assert "Integer hardware mode: failed: RuntimeError: the integer check broke" in text


def test_fashion_ood_with_only_its_test_images_and_a_missing_one_asked_for(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split, n in (("train", 40), ("t10k", 12)):
        _idx(data / "mnist" / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(data / "mnist" / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    args = ["--dataset", "mnist", "--data-dir", str(data), "--hidden", "8", "--epochs", "1",
            "--no-rtl", "--no-synth", *TINY]
    rc = main(["run", "--out", str(tmp_path / "a"), "--ood-fashion", "yes", *args])
    assert rc == 2
    captured = capsys.readouterr()
    assert "trained" not in captured.out                   # refused before training
    err = captured.err
    assert "the fashion-mnist OoD set was asked for (--ood-fashion yes)" in err
    assert f"looked in: {data / 'FashionMNIST' / 'raw'}, {data / 'fashion-mnist'}, " \
           f"{data / 'fashion_mnist'}" in err
    _idx(data / "fashion-mnist" / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))
    assert main(["run", "--out", str(tmp_path / "b"), "--ood-fashion", "yes", *args]) == 0
    report = json.loads((tmp_path / "b" / wf.EVAL_JSON).read_text())
    assert report["ood_sets"]["fashion-mnist"] == 5            # fewer than the cap of 8
    assert report["ood_notes"] == [f"fashion-mnist: the test images of "
                                   f"{data / 'fashion-mnist' / 't10k-images-idx3-ubyte'}"]
    assert report["operating_point_images"].startswith("the first 12 training images")


def test_mnist_lenet5_training_takes_its_recipe(tmp_path, capsys):
    from spinbayes.config import RECIPES, flag_of

    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for split, n in (("train", 120), ("t10k", 12)):   # 10 % held out: one image a class
        _idx(data / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(data / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    out = tmp_path / "train"
    assert main(["train", "--out", str(out), "--quiet", "--dataset", "mnist", "--data-dir",
                 str(data), "--topology", "lenet5", "--epochs", "1"]) == 0
    cfg = json.loads((out / "checkpoint" / "manifest.json").read_text())["config"]
    lenet = RECIPES[("mnist", "lenet5")]
    assert cfg["epochs"] == 1
    assert all(cfg[k] == v for k, v in lenet.items() if k != "epochs")
    said = capsys.readouterr().out
    assert "defaults of the mnist lenet5 recipe (docs/METRICS.md): " in said
    assert all(flag_of(k) in said for k in lenet if k != "epochs")
    assert "--epochs" not in said.split("recipe")[1].splitlines()[0]


def test_compare_states_each_methods_budget(tmp_path, capsys):
    ckpt = tmp_path / "train"
    assert main(["train", "--out", str(ckpt), "--quiet", "--epochs", "2", "--hidden", "8"]) == 0
    out = tmp_path / "cmp"
    rc = main(["compare", "--checkpoint", str(ckpt / "checkpoint"), "--out", str(out),
               "--epochs", "1", *TINY])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / wf.COMPARE_JSON).read_text())
    b = report["budgets"]
    assert b["BBB (float)"]["epochs"] == b["SpinBayes n=1"]["epochs"] == 2
    assert b["MC-Dropout"]["epochs"] == b["Deep Ensemble (5)"]["epochs"] == 1
    assert b["Deep Ensemble (5)"]["networks"] == 5
    text = (out / wf.COMPARE_MARKDOWN).read_text()
    assert "| BBB (float) | 2 | 0.003 | 64 | 1 |" in text
    assert "| MC-Dropout | 1 | 0.003 | 64 | 1 |" in text
    assert "this is not a same-budget comparison" in text
    same = {"A": wf._budget(Config()), "B": wf._budget(Config(), 5)}
    assert "Every method trains with the same epochs" in wf.budget_markdown(same)


@pytest.mark.slow
def test_lenet5_main_job_through_the_rtl(tmp_path, capsys):
    """`spinbayes run --topology lenet5 --quick`: the bundled 28x28 digits, 2 images through
    the core on Verilator with every hidden layer traced, the firmware image on disk, energy
    from the RTL's counters equal to the analytic count, Table 5's measured LeNet-5 row."""
    from spinbayes.sim.runner import simulator_available

    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    out = tmp_path / "run"
    rc = main(["run", "--quick", "--out", str(out), "--dataset", "digits28", "--topology",
               "lenet5", "--epochs", "1", "--no-synth", *TINY])
    assert rc == 0, capsys.readouterr().err
    cov = json.loads((out / "coverify.json").read_text())
    assert cov["images"] == 2 and cov["mismatches"] == 0 and cov["passed"]
    assert cov["simulator"] == "verilator" and cov["layer_vectors"] == 2 * 2 * (196 + 25 + 2)
    assert (out / "firmware" / "manifest.json").is_file()
    energy = json.loads((out / "energy.json").read_text())
    assert energy["measured"]["all_counters_equal"]
    assert [r for r in energy["table5"] if r["source"] == "measured"]


def test_eval_without_the_hardware_mode_says_so(tmp_path, monkeypatch):
    cfg = Config(hidden=(8,), epochs=1, T=2, ood_samples=8, recal_batches=1, N=3)
    trained = wf.train(cfg, progress=False)

    def never(*args, **kwargs):
        raise AssertionError("the hardware mode ran")

    monkeypatch.setattr(golden_evaluate, "evaluate_hardware", never)
    ev = wf.evaluate(trained, wf.map_trained(trained), wf.ood(trained), tmp_path,
                     progress=False, hardware_mode=False)
    report = json.loads((tmp_path / wf.EVAL_JSON).read_text())
    assert report["hardware_mode_status"] == "skipped" and report["hardware_mode"] == []
    assert ev.hardware == []
    assert "Integer hardware mode: skipped (--no-hardware-mode)." in \
        (tmp_path / wf.EVAL_MARKDOWN).read_text()
    assert [s["stage"] for s in report["stages"]] == ["Tables 1 and 3 (360 test images)"]
