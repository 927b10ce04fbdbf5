"""The command line, end to end on a tiny budget."""

import json

import pytest

from spinbayes.cli import build_parser, main
from spinbayes.workflow import EVAL_JSON, EVAL_MARKDOWN


def test_every_subcommand_has_useful_help(capsys):
    for cmd in ("train", "eval", "run"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "--out" in out
    # eval only offers what evaluation uses
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--checkpoint", "x", "--out", "y", "--epochs", "3"])


def test_run_then_eval(tmp_path, capsys):
    """The golden stages of the main job, then `eval` on its checkpoint (the RTL stages are
    in tests/report's `run --quick` test and the slow full-job test)."""
    out = tmp_path / "run"
    rc = main(["run", "--out", str(out), "--quiet", "--epochs", "3", "--hidden", "16",
               "--ood-samples", "50", "--recal-batches", "2", "--no-rtl", "--no-synth"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Table 1" in text and "Table 3" in text and "SpinBayes n=2" in text
    report = json.loads((out / EVAL_JSON).read_text())
    names = [r["name"] for r in report["results"]]
    assert names[0] == "BBB (float)" and "SpinBayes n=1" in names
    assert set(report["results"][0]["ood"]) == {"gaussian", "noisy", "fakedata", "natural"}
    assert (out / EVAL_MARKDOWN).read_text().startswith("### Table 1")
    rc = main(["eval", "--checkpoint", str(out / "checkpoint"), "--out", str(tmp_path / "e"),
               "--quiet", "--T", "4", "--ood-samples", "20", "--recal-batches", "1"])
    assert rc == 0
    assert json.loads((tmp_path / "e" / EVAL_JSON).read_text())["config"]["T"] == 4


def test_errors_are_reported_not_raised(tmp_path, capsys):
    rc = main(["eval", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
    rc = main(["run", "--out", str(tmp_path / "o"), "--dataset", "mnist", "--data-dir",
               str(tmp_path / "nodata"), "--quiet"])
    assert rc == 2
    assert "data directory not found" in capsys.readouterr().err


def _write_idx(path, array):
    import struct

    import numpy as np

    arr = np.asarray(array, dtype=np.uint8)
    path.write_bytes(struct.pack(">HBB", 0, 0x08, arr.ndim)
                     + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def _fake_mnist(folder, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", 64), ("t10k", 16)):
        _write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.slow
def test_run_lenet5_on_mnist_files_with_fashion_ood(tmp_path, capsys):
    """MNIST in, LeNet-5, Fashion-MNIST found beside it and added to the OoD sets (the default
    run covers LeNet-5 through the main job in tests/cli/test_mnist_rows.py, on the bundled
    28x28 digits, and the Fashion-MNIST OoD set there on small IDX files)."""
    data = tmp_path / "data"
    _fake_mnist(data / "MNIST" / "raw", 0)
    _fake_mnist(data / "FashionMNIST" / "raw", 1)
    out = tmp_path / "run"
    rc = main(["run", "--out", str(out), "--quiet", "--dataset", "mnist", "--data-dir",
               str(data), "--topology", "lenet5", "--epochs", "1", "--T", "2",
               "--ood-samples", "8", "--recal-batches", "1", "--N", "3", "--no-synth"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / EVAL_JSON).read_text())
    assert report["dataset"] == "mnist"
    assert "fashion-mnist" in report["results"][0]["ood"]
    assert report["ood_sets"]["fashion-mnist"] == 8


def test_plot_mtj(tmp_path, capsys):
    out = tmp_path / "fig" / "mtj.png"
    assert main(["plot", "mtj", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "p_sw(230 uA) = 0.5000" in capsys.readouterr().out


def test_compare_tiny_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--out", str(out), "--quiet", "--epochs", "1", "--hidden", "8",
               "--ood-samples", "10", "--recal-batches", "1", "--T", "2", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "compare.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert names == ["BBB (float)", "SpinBayes n=1", "SpinBayes n=2", "SpinBayes n=3",
                     "MC-Dropout", "MC-DropConnect", "Deep Ensemble (5)"]
    assert set(report["nway"]) == {"1", "2", "3"}
    assert any(r["topology"].startswith("ResNet-34") for r in report["memory"])
    assert (out / "memory.png").read_bytes()[:4] == b"\x89PNG"
    assert "n-way study" in (out / "compare.md").read_text()


def test_rtl_export_is_reproducible(tmp_path):
    for d in ("a", "b"):
        assert main(["rtl", "export", "--out", str(tmp_path / d), "--top", "aac"]) == 0
    assert (tmp_path / "a" / "aac.v").read_text() == (tmp_path / "b" / "aac.v").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"bogus": 1}')
    assert main(["rtl", "export", "--config", str(bad), "--out", str(tmp_path / "c")]) == 2


@pytest.mark.slow
def test_main_job_with_its_defaults(tmp_path):
    """`spinbayes run` exactly as the README runs it (about 7 min: 200 images on Verilator,
    the periphery placed and routed on the ECP5)."""
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert all(s["status"] == "ok" for s in doc["stages"].values()), doc["stages"]
    assert doc["coverify"]["images"] == 200 and doc["coverify"]["mismatches"] == 0
    assert doc["energy"]["measured"]["all_counters_equal"]


def test_simulator_choices_agree_with_the_runner():
    from spinbayes.cli_args import SIMULATOR_CHOICES
    from spinbayes.sim.runner import SIMULATORS

    assert tuple(SIMULATORS) == SIMULATOR_CHOICES


def test_simulator_choice_falls_back_and_says_so(monkeypatch):
    from spinbayes import workflow_hw as wh
    from spinbayes.sim import runner

    monkeypatch.delenv("SPINBAYES_SIM", raising=False)
    monkeypatch.setattr(runner, "simulator_available", lambda s: s == "verilator")
    assert wh.choose_simulator(None, prefer="icarus") == ("verilator",
                                                          "icarus is not installed")
    assert wh.choose_simulator("icarus", prefer="verilator") == ("icarus", "asked for")
    monkeypatch.setenv("SPINBAYES_SIM", "icarus")
    assert wh.choose_simulator(None, prefer="verilator") == ("icarus", "$SPINBAYES_SIM")
    monkeypatch.delenv("SPINBAYES_SIM")
    monkeypatch.setattr(runner, "simulator_available", lambda s: False)
    with pytest.raises(runner.SimulatorMissing, match="neither icarus nor verilator"):
        wh.choose_simulator(None, prefer="icarus")


@pytest.mark.parametrize("argv, message", [
    (["--stall", "1.5"], "--stall must be a probability in [0, 1), not 1.5"),
    (["--images", "0"], "--images must be at least 1, not 0"),
    (["--driver-images", "3", "--images", "2"], "--driver-images must lie in 0..--images"),
])
def test_sim_checks_its_flags_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "sim"
    assert main(["sim", *argv, "--quiet", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_run_options_default_images_and_simulator_per_topology():
    from spinbayes.pipeline import RunOptions

    full, quick = RunOptions(), RunOptions(quick=True)
    assert (full.k_images("mlp"), full.k_images("lenet5")) == (200, 20)
    assert (quick.k_images("mlp"), quick.k_images("lenet5")) == (4, 2)
    assert RunOptions(images_sim=7).k_images("lenet5") == 7
    assert full.prefer_simulator("mlp") == full.prefer_simulator("lenet5") == "verilator"
    assert (quick.prefer_simulator("mlp"), quick.prefer_simulator("lenet5")) == (
        "icarus", "verilator")


@pytest.mark.parametrize("bits", [7, 65])
def test_health_alpha_bits_out_of_range_is_refused_before_any_work(tmp_path, capsys, bits):
    from spinbayes.cli import main

    for cmd in ("sim", "run"):
        out = tmp_path / cmd
        assert main([cmd, "--health-alpha-bits", str(bits), "--quiet", "--out",
                     str(out)]) == 2
        assert f"--health-alpha-bits must be an integer in 8..64, not {bits}" in \
            capsys.readouterr().err
        assert not out.exists()


def test_health_alpha_bits_sets_the_cutoffs_the_core_is_programmed_with():
    from spinbayes.cli_args import health_cutoffs
    from spinbayes.golden.health import Cutoffs

    assert health_cutoffs(20) == Cutoffs.derive()
    strict = health_cutoffs(30)
    assert strict.rct == 31 and strict.apt > Cutoffs.derive().apt
