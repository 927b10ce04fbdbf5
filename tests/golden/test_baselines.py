"""Baselines on the same topology (MC-Dropout, MC-DropConnect, Deep Ensemble), n-way study."""

import pytest
import torch
from torch import nn

from spinbayes.config import Config
from spinbayes.golden import baselines as bl
from spinbayes.golden.approximation import approximate
from spinbayes.golden.datasets import ood_sets
from spinbayes.golden.evaluate import evaluate_probs
from spinbayes.golden.layers import Comparator
from spinbayes.golden.metrics import accuracy
from spinbayes.golden.networks import build_model

CFG = Config(hidden=(16,), epochs=3, seed=0, T=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is faster and immune to a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(digits):
    """The three single-network baselines trained for 3 epochs (about 0.1 s each)."""
    nets = {}
    for method in bl.METHODS:
        net = bl.build_deterministic(CFG, digits.image_shape, digits.num_classes, method)
        bl.train_baseline(net, digits.x_train, digits.y_train, CFG, progress=False)
        nets[method] = net
    return nets


@pytest.fixture(scope="module")
def ensemble(digits):
    return bl.train_ensemble(CFG.replace(epochs=2), digits, M=3, progress=False)


def _bn_stats(net):
    return [t.clone() for m in net.modules() if isinstance(m, nn.BatchNorm1d)
            for t in (m.running_mean, m.running_var)]


def test_twin_has_the_bayesian_topology_and_initial_means(digits):
    bayes = build_model(CFG, digits.image_shape, digits.num_classes)
    for method in bl.METHODS:
        twin = bl.build_deterministic(CFG, digits.image_shape, digits.num_classes, method)
        assert len(twin.stages) == len(bayes.stages) == 2
        assert isinstance(twin.stages[0].act, Comparator)
        assert isinstance(twin.stages[1].act, nn.Identity)
        assert twin.input_bits == CFG.input_bits
        for s_twin, s_bayes in zip(twin.stages, bayes.stages):
            w = getattr(s_twin.weight, "layer", s_twin.weight).weight
            torch.testing.assert_close(w, s_bayes.weight.weight_mu)
    kinds = [[type(s.weight).__name__ for s in bl.build_deterministic(
        CFG, digits.image_shape, digits.num_classes, m).stages] for m in bl.METHODS]
    assert kinds == [["Linear", "Linear"], ["Linear", "InputDropout"],
                     ["DropConnect", "DropConnect"]]


def test_relu_activation_is_mirrored(digits):
    twin = bl.build_deterministic(CFG.replace(activation="relu"), digits.image_shape, 10)
    assert isinstance(twin.stages[0].act, nn.ReLU)


def test_prediction_shapes(digits, trained, ensemble):
    x = digits.x_test[:37]
    g = torch.Generator().manual_seed(0)
    for method in ("mc_dropout", "mc_dropconnect"):
        p = bl.mc_predict(trained[method], x, 5, g, batch_size=16)
        assert p.shape == (37, 5, 10)
        torch.testing.assert_close(p.sum(-1), torch.ones(37, 5))
    assert bl.deterministic_predict(trained["deterministic"], x, 6).shape == (37, 6, 10)
    assert bl.ensemble_predict(ensemble, x).shape == (37, 3, 10)


@pytest.mark.parametrize("method", ["mc_dropout", "mc_dropconnect"])
def test_mc_passes_differ_while_batchnorm_stays_frozen(digits, trained, method):
    net = trained[method]
    before = _bn_stats(net)
    p = bl.mc_predict(net, digits.x_test[:50], 6, torch.Generator().manual_seed(1))
    assert not torch.equal(p[:, 0], p[:, 1])
    assert (p.std(dim=1).amax(-1) > 1e-4).float().mean() > 0.5  # most inputs vary
    for a, b in zip(before, _bn_stats(net)):
        assert torch.equal(a, b)
    assert not net.training and all(not m.mc for m in net.stochastic_layers())


def test_dropconnect_mask_rate_matches_p():
    # 200 masks of 1000 weights: the dropped fraction has std sqrt(p(1-p)/2e5) < 0.001.
    layer = bl.DropConnect(nn.Linear(100, 10, bias=False), 0.3)
    layer.generator = torch.Generator().manual_seed(0)
    rate = torch.stack([~layer.keep_mask(layer.layer.weight.shape) for _ in range(200)])
    assert rate.float().mean().item() == pytest.approx(0.3, abs=0.005)


def test_dropconnect_forward_masks_and_rescales_the_weights():
    layer = bl.DropConnect(nn.Linear(8, 6, bias=False), 0.25).train()
    layer.generator = torch.Generator().manual_seed(3)
    out = layer(torch.eye(8))  # row i = column i of the masked weight
    w = layer.layer.weight.detach()
    kept = out.T != 0
    assert 0 < kept.sum() < w.numel()
    torch.testing.assert_close(out.T[kept], w[kept] / 0.75)


def test_input_dropout_rescales_kept_inputs():
    layer = bl.InputDropout(nn.Linear(1000, 1, bias=False), 0.2).train()
    nn.init.ones_(layer.layer.weight)
    layer.generator = torch.Generator().manual_seed(0)
    s = layer(torch.ones(50, 1000))  # kept count / 0.8 per row
    assert s.mean().item() == pytest.approx(1000, rel=0.01)
    assert torch.allclose(s * 0.8, (s * 0.8).round(), atol=1e-3)


def test_masks_are_off_in_eval_and_in_the_deterministic_twin(digits, trained):
    x = digits.x_test[:40]
    assert not trained["deterministic"].stochastic_layers()
    p = bl.deterministic_predict(trained["deterministic"], x, 4)
    assert torch.equal(p[:, 0], p[:, 3])
    for method in ("mc_dropout", "mc_dropconnect"):
        net = trained[method].eval()  # eval without mc: masks off, the mean network
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


def test_training_and_mc_prediction_are_deterministic(digits, trained):
    for method in ("mc_dropout", "mc_dropconnect"):
        net = bl.build_deterministic(CFG, digits.image_shape, digits.num_classes, method)
        bl.train_baseline(net, digits.x_train, digits.y_train, CFG, progress=False)
        for a, b in zip(net.state_dict().values(), trained[method].state_dict().values()):
            assert torch.equal(a, b)
        x = digits.x_test[:30]
        p1 = bl.mc_predict(net, x, 3, torch.Generator().manual_seed(5))
        p2 = bl.mc_predict(trained[method], x, 3, torch.Generator().manual_seed(5))
        assert torch.equal(p1, p2)


def test_ensemble_members_differ_and_probs_are_their_softmax(digits, ensemble):
    w = [m.stages[0].weight.weight for m in ensemble]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    x = digits.x_test[:25]
    p = bl.ensemble_predict(ensemble, x)
    for m, net in enumerate(ensemble):
        torch.testing.assert_close(p[:, m], torch.softmax(net(x), -1))
    # member m is the deterministic twin of seed cfg.seed + m
    first = bl.build_deterministic(CFG.replace(epochs=2, seed=1), digits.image_shape, 10)
    bl.train_baseline(first, digits.x_train, digits.y_train, CFG.replace(epochs=2, seed=1),
                      progress=False)
    assert torch.equal(first.stages[0].weight.weight, ensemble[1].stages[0].weight.weight)


def test_baselines_reach_a_sane_accuracy(digits):
    # The default 64-comparator MLP for 10 epochs (about 0.4 s per network).
    cfg = Config(epochs=10, T=4)
    probs = bl.baseline_probs(cfg, digits, {}, methods=tuple(bl.BASELINES), M=3,
                              progress=False)
    accs = {name: accuracy(p["test"], digits.y_test) for name, p in probs.items()}
    assert len(accs) == 4 and min(accs.values()) > 85, accs


def test_baseline_probs_feed_evaluate_probs(digits):
    ood = ood_sets(digits, n=40, seed=0)
    cfg = CFG.replace(epochs=1)
    probs = bl.baseline_probs(cfg, digits, ood, methods=("deterministic", "mc_dropout",
                                                          "ensemble"), M=2, progress=False)
    assert list(probs) == ["Deterministic", "MC-Dropout", "Deep Ensemble (2)"]
    for name, sets in probs.items():
        assert list(sets) == ["test", *ood]
        T = 2 if name.startswith("Deep") else cfg.T
        assert sets["test"].shape == (len(digits.x_test), T, 10)
        assert sets["gaussian"].shape == (40, T, 10)
        r = evaluate_probs(name, sets["test"], digits.y_test,
                           {k: v for k, v in sets.items() if k != "test"}, cfg)
        assert set(r.ood) == set(ood)
    # a deterministic network has zero epistemic spread: identical passes
    det = probs["Deterministic"]["test"]
    assert torch.equal(det[:, 0], det[:, -1])


def test_nway_study(digits, small_model, small_cfg):
    cfg = small_cfg.replace(T=5)
    images = approximate(small_model, cfg.N, cfg.Q, cfg.seed)
    study = bl.nway_study(small_model, images, digits, ood_sets(digits, n=40, seed=0), cfg,
                          n_ways=(1, 2, 3), progress=False)
    assert list(study) == [1, 2, 3]
    assert [r.name for r in study.values()] == ["SpinBayes n=1", "SpinBayes n=2",
                                                "SpinBayes n=3"]
    table = bl.nway_markdown(study)
    assert table.count("\n| ") == 4 and "change vs n=1" in table
    assert "| 1 | " in table and "| 0.00 |" in table.splitlines()[4]
    with pytest.raises(ValueError, match=r"n_ways must be integers in 1..N=5, not \(1, 6\)"):
        bl.nway_study(small_model, images, digits, {}, cfg, n_ways=(1, 6))
    with pytest.raises(ValueError, match="the n-way study is empty"):
        bl.nway_markdown({})


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.2", True])
def test_bad_drop_rate(digits, p):
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\), not "):
        bl.build_deterministic(CFG, digits.image_shape, 10, "mc_dropout", p=p)


def test_bad_arguments(digits, trained):
    with pytest.raises(ValueError, match=r"method must be one of \('deterministic', "
                                         r"'mc_dropout', 'mc_dropconnect'\), not 'bbb'"):
        bl.build_deterministic(CFG, digits.image_shape, 10, "bbb")
    with pytest.raises(ValueError, match="M must be a positive integer, not 0"):
        bl.train_ensemble(CFG, digits, M=0, progress=False)
    with pytest.raises(ValueError, match="an ensemble needs at least one member"):
        bl.ensemble_predict([], digits.x_test)
    with pytest.raises(ValueError, match="T must be a positive integer, not 0"):
        bl.mc_predict(trained["mc_dropout"], digits.x_test, 0)
    with pytest.raises(ValueError, match="mc_predict needs a network with dropout or "
                                         "DropConnect layers"):
        bl.mc_predict(trained["deterministic"], digits.x_test, 3)
    with pytest.raises(ValueError, match=r"unknown baseline methods \['bbb'\]; choose from"):
        bl.baseline_probs(CFG, digits, {}, methods=("mc_dropout", "bbb"), progress=False)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, not -1"):
        bl.train_baseline(trained["deterministic"], digits.x_train, digits.y_train, CFG,
                          weight_decay=-1, progress=False)
    with pytest.raises(ValueError, match="x and y differ in length: 5 != 4"):
        bl.train_baseline(trained["deterministic"], digits.x_train[:5], digits.y_train[:4],
                          CFG, progress=False)


@pytest.mark.parametrize("method", bl.METHODS)
def test_lenet5_twin(method):
    cfg = Config(topology="lenet5", activation="relu")  # untrained comparators output 0
    net = bl.build_deterministic(cfg, (1, 28, 28), 10, method, p=0.3)
    assert [type(s.weight.layer if hasattr(s.weight, "layer") else s.weight).__name__
            for s in net.stages] == ["Conv2d"] * 2 + ["Linear"] * 3
    x = torch.rand(3, 1, 28, 28)
    if method == "deterministic":
        p = bl.deterministic_predict(net, x, 2)
    else:
        p = bl.mc_predict(net, x, 2, torch.Generator().manual_seed(0))
        assert not torch.equal(p[:, 0], p[:, 1])
    assert p.shape == (3, 2, 10)
