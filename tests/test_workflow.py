"""The workflow layer: reproducible checkpoints, each mapped network built once."""

from __future__ import annotations

import json

import pytest
import torch

from spinbayes import workflow as wf
from spinbayes.cli import main
from spinbayes.config import Config
from spinbayes.golden import mapping

TINY = ["--hidden", "8", "--epochs", "2", "--seed", "3", "--quiet"]


def test_checkpoint_records_its_settings_and_reproduces_byte_for_byte(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        assert main(["train", *TINY, "--threads", "1", "--out", str(tmp_path / "a")]) == 0
        manifest = json.loads((tmp_path / "a/checkpoint/manifest.json").read_text())
        prov = manifest["provenance"]
        assert prov["threads"] == 1
        assert set(prov["versions"]) >= {"torch", "numpy", "python", "spinbayes"}
        assert len(prov["data_sha256"]) == 64 and manifest["config"]["seed"] == 3
        # started with another thread count: reproduce takes the manifest's
        torch.set_num_threads(2)
        capsys.readouterr()
        rc = main(["reproduce", str(tmp_path / "a/checkpoint"), "--out", str(tmp_path / "b"),
                   "--quiet"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "IDENTICAL" in out
        assert ((tmp_path / "a/checkpoint/model.safetensors").read_bytes()
                == (tmp_path / "b/checkpoint/model.safetensors").read_bytes())
    finally:
        torch.set_num_threads(before)


def test_reproduce_reports_different_weights(tmp_path, capsys):
    """The comparison can fail: weights trained with another seed are reported."""
    before = torch.get_num_threads()
    try:
        assert main(["train", *TINY, "--threads", "1", "--out", str(tmp_path / "a")]) == 0
        assert main(["train", "--hidden", "8", "--epochs", "2", "--seed", "4", "--quiet",
                     "--threads", "1", "--out", str(tmp_path / "c")]) == 0
        ckpt = tmp_path / "a/checkpoint"
        (ckpt / "model.safetensors").write_bytes(
            (tmp_path / "c/checkpoint/model.safetensors").read_bytes())
        capsys.readouterr()
        rc = main(["reproduce", str(ckpt), "--out", str(tmp_path / "b"), "--quiet"])
        assert rc == 1 and "DIFFERENT" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_reproduce_refuses_a_manifest_without_provenance(tmp_path, capsys):
    from spinbayes.golden.checkpoint import save_checkpoint
    from spinbayes.golden.networks import build_model

    cfg = Config(hidden=(4,), epochs=1)
    save_checkpoint(tmp_path / "old", build_model(cfg, (1, 8, 8), 10), cfg,
                    image_shape=(1, 8, 8), num_classes=10)
    assert main(["reproduce", str(tmp_path / "old"), "--out", str(tmp_path / "o")]) == 2
    assert "records no provenance" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_each_mapped_network_is_built_once(digits, small_model, small_cfg, monkeypatch):
    """Evaluation, the hardware-mode check and the design parameters share one
    re-calibrated network per (n, batches) and one integer network per n."""
    calls = []
    real = mapping.recalibrate_bn
    monkeypatch.setattr(mapping, "recalibrate_bn",
                        lambda net, x, batches, **kw: calls.append((net.n_way, batches))
                        or real(net, x, batches, **kw))
    cfg = small_cfg.replace(ood_samples=10, T=2)
    trained = wf.Trained(small_model, digits, cfg, {})
    mapped = wf.map_trained(trained)
    wf.evaluate(trained, mapped, wf.ood(trained), None, progress=False)
    from spinbayes.workflow_hw import hw_params

    hw_params(mapped, cfg)
    assert sorted(calls) == sorted(set(calls))
    assert set(calls) == {(1, cfg.recal_batches), (1, 0), (2, cfg.recal_batches), (2, 0)}
    assert mapped.hw(1) is mapped.hw(1)


def test_mapped_model_refuses_bad_n(digits, small_model, small_cfg):
    mapped = wf.map_trained(wf.Trained(small_model, digits, small_cfg, {}))
    with pytest.raises(ValueError, match=r"n_way must be an integer in 1..N=5, not 6"):
        mapped.net(6)
