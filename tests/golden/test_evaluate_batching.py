"""Every evaluation path gives the same numbers in batches as in one batch, and long stages
print plain progress lines when standard error is not a terminal."""

from __future__ import annotations

import pytest
import torch

from spinbayes.golden import baselines as bl
from spinbayes.golden import evaluate as ev
from spinbayes.golden import progress
from spinbayes.golden.datasets import Dataset, hold_out, ood_sets
from spinbayes.golden.hardware import compare_with_float
from spinbayes.golden.mapping import map_model
from spinbayes.golden.train import bbb_predict, train_bbb

ONE_BATCH = 10 ** 6


def _gen(seed=5):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def mapped(small_model, small_cfg, digits):
    return map_model(small_model, digits.x_train, N=small_cfg.N, Q=small_cfg.Q, seed=0,
                     recal_batches=2)


def test_bbb_batches_equal_one_batch(small_model, digits):
    x = digits.x_test[:150]
    one = bbb_predict(small_model, x, 6, generator=_gen(), batch_size=ONE_BATCH)
    assert torch.equal(bbb_predict(small_model, x, 6, generator=_gen(), batch_size=7), one)
    # and the passes differ: the weight samples are not all the same
    assert not torch.equal(one[:, 0], one[:, 1])


@pytest.mark.parametrize("n_way", [1, 2])
def test_spinbayes_batches_equal_one_batch(mapped, digits, n_way):
    net, x = mapped.net(n_way), digits.x_test[:150]
    one = ev.spinbayes_probs(net, x, 6, _gen(), batch_size=ONE_BATCH)
    assert torch.equal(ev.spinbayes_probs(net, x, 6, _gen(), batch_size=16), one)
    # one batch draws the choices exactly as the network's own forward pass does
    assert torch.equal(net(x, 6, generator=_gen()).probs, one)


@pytest.mark.parametrize("n_way", [1, 2])
def test_hardware_check_batches_equal_one_batch(mapped, digits, n_way):
    net, hw = mapped.net(n_way), mapped.hw(n_way)
    x, y = digits.x_test[:90], digits.y_test[:90]
    one = compare_with_float(net, hw, x, y, 4, _gen())
    assert compare_with_float(net, hw, x, y, 4, _gen(), batch_size=13) == one
    assert one.images == 90 and one.hw_agreement > 90


@pytest.mark.parametrize("method", ["mc_dropout", "mc_dropconnect"])
def test_mc_baselines_batches_equal_one_batch(small_cfg, digits, method):
    net = bl.build_deterministic(small_cfg, digits.image_shape, 10, method, p=0.3)
    x = digits.x_test[:300]   # more than two chunks of MC-Dropout masks
    one = bl.mc_predict(net, x, 3, _gen(), batch_size=ONE_BATCH)
    assert torch.equal(bl.mc_predict(net, x, 3, _gen(), batch_size=bl.MASK_CHUNK), one)
    assert torch.equal(bl.mc_predict(net, x, 3, _gen(), batch_size=50), one)
    assert not torch.equal(one[:, 0], one[:, 1])


def test_ensemble_batches_equal_one_batch(small_cfg, digits):
    members = [bl.build_deterministic(small_cfg.replace(seed=s), digits.image_shape, 10)
               for s in (0, 1)]
    x = digits.x_test[:100]
    assert torch.equal(bl.ensemble_predict(members, x, batch_size=9),
                       bl.ensemble_predict(members, x, batch_size=ONE_BATCH))


def test_evaluate_with_ood_sets_and_calibration_batches_equal_one_batch(
        mapped, small_cfg, digits, monkeypatch):
    data = hold_out(Dataset("digits", digits.x_train[:400], digits.y_train[:400],
                            digits.x_test[:60], digits.y_test[:60]), 0.1, 0)
    sets = ood_sets(data, n=20, seed=0)
    cfg = small_cfg.replace(T=4)

    def run(rows, images):
        monkeypatch.setattr(ev, "SPINBAYES_ROWS", rows)
        monkeypatch.setattr(ev, "BBB_BATCH", images)
        results = ev.evaluate(mapped, data, sets, cfg, n_ways=(1, 2), progress=False)
        return [r.to_dict() for r in results]

    one = run(ONE_BATCH, ONE_BATCH)
    assert run(4 * 7, 11) == one            # 7 images per SpinBayes batch, 11 per BBB batch
    assert all(r["operating_point"]["images"] == len(data.x_val) for r in one)
    assert set(one[0]["ood"]) == set(sets)


def test_evaluate_hardware_batches_equal_one_batch(mapped, small_cfg, digits):
    cfg = small_cfg.replace(T=3)
    digits = Dataset("digits", digits.x_train, digits.y_train, digits.x_test[:100],
                     digits.y_test[:100])
    kw = dict(n_ways=(1, 2))
    assert (ev.evaluate_hardware(mapped, digits, cfg, batch_size=17, **kw)
            == ev.evaluate_hardware(mapped, digits, cfg, batch_size=ONE_BATCH, **kw))


def test_progress_prints_plain_lines_when_not_a_terminal(small_cfg, digits, capsys,
                                                          monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    model = bl.build_model(small_cfg, digits.image_shape, 10)
    train_bbb(model, digits.x_train[:200], digits.y_train[:200], small_cfg.replace(epochs=2),
              progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "train BBB: 0/2 epoch, started"
    assert err[1].startswith("train BBB: 1/2 epoch, ") and "nll=" in err[1]
    assert err[-1].startswith("train BBB: done, 2/2 epoch, ")


def test_progress_is_silent_when_disabled_and_inner_bars_only_when_slow(capsys, monkeypatch):
    list(progress.progress(range(3), desc="quiet", enabled=False))
    list(progress.progress(range(3), desc="inner", leave=False))   # quicker than INTERVAL
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    list(progress.progress(range(2), desc="inner", unit="batch", leave=False))
    assert capsys.readouterr().err.splitlines()[-1].startswith("inner: done, 2/2 batch")
