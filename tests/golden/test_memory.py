"""Memory overhead (section 4.3.2, Fig. 7): real topologies, parameter counts, size model."""

import json
import math

import pytest
import torch
from torch import nn

from spinbayes.config import Config
from spinbayes.golden import memory as mem
from spinbayes.golden import zoo
from spinbayes.golden.layers import bayes_layers
from spinbayes.golden.networks import build_model

# Published totals (torchvision model cards; CIFAR ResNet-18: kuangliu/pytorch-cifar).
PUBLISHED = [
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("vgg11", {}, 132_863_336),
    ("vgg16", {}, 138_357_544),
    ("mobilenet_v2", {}, 3_504_872),
    ("vgg11_bn", {}, 132_868_840),
    ("vgg16_bn", {}, 138_365_992),
    ("resnet18", dict(num_classes=10, stem="cifar"), 11_173_962),
]


@pytest.fixture(scope="module")
def models():
    return mem.paper_models()


@pytest.fixture(scope="module")
def rows(models):
    return mem.memory_table(models)


def _by(rows):
    return {(r.topology, r.method): r for r in rows}


@pytest.mark.parametrize(("name", "kw", "total"), PUBLISHED)
def test_zoo_matches_published_parameter_totals(name, kw, total):
    model = zoo.build(name, **kw)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == total
    c = mem.count_parameters(model)
    assert c["weights"] + c["other"] == total


def test_vgg_small_counted_by_hand():
    convs = [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    weights = sum(9 * a * b for a, b in convs) + 8192 * 10
    bn = 2 * sum(b for _, b in convs)
    assert mem.count_parameters(zoo.build("vgg_small")) == dict(
        weights=weights, other=bn + 10, bn=bn)
    assert weights == 4_656_512


@pytest.mark.parametrize(("name", "kw", "shape", "out"), [
    ("vgg_small", {}, (2, 3, 32, 32), (2, 10)),
    ("resnet18", dict(num_classes=100, stem="cifar"), (2, 3, 32, 32), (2, 100)),
    ("mobilenet_v2", dict(num_classes=10), (2, 3, 32, 32), (2, 10)),
])
def test_zoo_modules_run_on_cpu(name, kw, shape, out):
    model = zoo.build(name, device="cpu", **kw).eval()
    with torch.no_grad():
        assert model(torch.rand(shape)).shape == out


def test_project_models_count_weight_mu_only():
    mlp = build_model(Config(), (1, 8, 8), 10)
    assert mem.count_parameters(mlp) == dict(weights=64 * 64 + 64 * 10, other=2 * 74, bn=2 * 74)
    lenet = build_model(Config(topology="lenet5"), (1, 28, 28), 10)
    mu = sum(layer.weight_mu.numel() for layer in bayes_layers(lenet))
    assert mu == 150 + 2400 + 48000 + 10080 + 840
    assert mem.count_parameters(lenet)["weights"] == mu


def test_shared_parameters_count_once():
    lin = nn.Linear(4, 3)
    assert mem.count_parameters(nn.Sequential(lin, lin)) == dict(weights=12, other=3, bn=0)
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, not int"):
        mem.count_parameters(3)


@pytest.mark.parametrize(("N", "Q"), [(5, 4), (3, 2), (8, 6)])
def test_spinbayes_bits_per_weight_is_n_times_q(N, Q):
    rows = mem.memory_table({"lin": nn.Linear(10, 10)}, N=N, Q=Q)
    assert _by(rows)[("lin", "SpinBayes")].bits_per_weight == N * Q


def test_paper_ratios_per_weight(rows, models):
    assert len(rows) == len(models) * len(mem.METHODS)
    by = _by(rows)
    for name in models:
        assert by[(name, "SpinBayes")].bits_per_weight == 20
        assert by[(name, "MC-Dropout")].bits_ratio == 1.6
        assert by[(name, "MC-DropConnect")].bits_ratio == 1.6
        assert by[(name, "Deep Ensemble")].bits_ratio == 8.0
        assert by[(name, "BBB")].bits_ratio == 3.2  # mu and sigma at 32 bits, not 6.39
        # Whole models: the 32-bit BatchNorm/bias values pull every ratio slightly down.
        for method, bound in (("MC-Dropout", 1.6), ("BBB", 3.2), ("Deep Ensemble", 8.0)):
            assert 0.9 * bound < by[(name, method)].ratio <= bound


def test_sizes_by_hand_for_the_mlp(rows):
    by = _by(rows)
    w, r = 4736, 296
    expect = {"SpinBayes": 20 * w + 32 * r, "MC-Dropout": 32 * (w + r),
              "BBB": 64 * w + 32 * r, "Deep Ensemble": 5 * 32 * (w + r)}
    for method, bits in expect.items():
        assert math.isclose(by[("MLP (digits)", method)].size_mb, bits / 8e6)
    assert by[("VGG-16 (ImageNet)", "MC-Dropout")].size_mb == pytest.approx(553.4, abs=0.1)


def test_bbb_candidates_explain_6_39(models):
    cands = mem.bbb_candidates(models)
    assert [c["per_weight"] for c in cands] == [3.2, 6.4, 8.0]
    four = cands[1]["per_topology"]
    for name in ("VGG-Small (CIFAR-10)", "ResNet-18 (CIFAR-100)", "ResNet-34 (CIFAR-10)"):
        assert round(four[name], 2) == 6.39
    json.dumps(cands)


def test_markdown_and_json(rows, models):
    text = mem.memory_markdown(rows)
    assert "| topology | crossbar weights | other + BN | SpinBayes |" in text
    assert "| VGG-16 (ImageNet) | 138,344,128 | 13,416 |" in text
    assert len([ln for ln in text.splitlines() if ln.startswith("| ")]) == len(models) + 1
    back = json.loads(json.dumps(mem.rows_as_dicts(rows)))
    assert back[0]["method"] == "SpinBayes" and back[0]["topology"] == "MLP (digits)"


def test_plot_is_an_atomic_png(rows, tmp_path):
    path = tmp_path / "out" / "fig7.png"
    assert mem.plot_memory(rows, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mem.plot_memory(rows[:5], path)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["fig7.png"]
    with pytest.raises(ValueError, match=r"path must end in \.png"):
        mem.plot_memory(rows, tmp_path / "fig7.pdf")
    with pytest.raises(ValueError, match="rows must be a non-empty list of MemoryRow"):
        mem.plot_memory([], path)


@pytest.mark.parametrize(("kw", "message"), [
    (dict(N=0), "N must be an integer >= 1, not 0"),
    (dict(Q=1), r"Q must be an integer >= 2 \(eq. 3 needs a sign bit\), not 1"),
    (dict(ensemble=0), "ensemble must be an integer >= 1, not 0"),
    (dict(float_bits=0), "float_bits must be an integer >= 1, not 0"),
    (dict(N=2.5), "N must be an integer >= 1, not 2.5"),
])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        mem.memory_table({"lin": nn.Linear(2, 2)}, **kw)


def test_bad_models_and_topologies():
    with pytest.raises(ValueError, match="models must be a non-empty dict"):
        mem.memory_table({})
    with pytest.raises(ValueError, match="topology 'relu' has no Conv/Linear weights"):
        mem.memory_table({"relu": nn.ReLU()})
    with pytest.raises(ValueError, match="unknown topology 'resnet50'"):
        zoo.build("resnet50")
    with pytest.raises(ValueError, match="stem must be one of"):
        zoo.build("resnet18", stem="tiny")
    with pytest.raises(ValueError, match="num_classes must be a positive integer, not 0"):
        zoo.build("vgg11", num_classes=0)
