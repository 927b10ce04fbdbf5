"""The layer-geometry record against the shapes the integer reference actually produces."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.approximation import approximate
from spinbayes.golden.geometry import LayerGeometry, activation_depth, geometry_of
from spinbayes.golden.hardware import HwLayer, HwNetwork, fold_network
from spinbayes.golden.inference import sample_choices
from spinbayes.golden.mapping import build_spinbayes
from spinbayes.golden.networks import build_model
from spinbayes.rtl.params import RtlParams
from spinbayes.sim.coverify import params_for


def folded(topology, image_shape, n_way=1, seed=0):
    """An untrained network of ``topology`` mapped and folded (BatchNorm re-calibrated on
    random images); returns (hw, those images)."""
    torch.manual_seed(seed)
    model = build_model(Config(topology=topology), image_shape, 10)
    images = approximate(model, 5, 4, seed=seed)
    x = torch.rand(32, *image_shape, generator=torch.Generator().manual_seed(seed))
    return fold_network(build_spinbayes(images, model, x, n_way, 1, seed=seed), images), x


def check_against_run(hw, geometry, x, T=2):
    """Every layer's n-way sums S have shape (outputs, H_out, W_out) (conv) or (outputs,)
    and its activations ``out_shape``; the input shape of each layer is the previous one's."""
    ch = sample_choices(len(hw.layers), len(x), T, hw.N, hw.n_way,
                        generator=torch.Generator().manual_seed(1))
    out = hw.run(x, ch)
    assert len(geometry) == len(out.layers) == len(out.activations)
    prev = None
    for i, (g, S, a) in enumerate(zip(geometry, out.layers, out.activations)):
        want_S = (g.outputs,) if g.kind == "linear" else (g.outputs, g.H_out, g.W_out)
        assert tuple(S.shape[2:]) == want_S, f"layer {i}: sums"
        assert tuple(a.shape[2:]) == g.out_shape, f"layer {i}: activations"
        assert int(np.prod(a.shape[2:])) == g.out_size
        assert g.rows == int(np.prod(hw.layers[i].codes.shape[2:])) == hw.layers[i].rows
        if prev is not None:
            assert g.in_size == prev.out_size
            assert g.in_bits == prev.out_bits
        prev = g
    return out


def test_mlp_geometry():
    """The digits MLP 64-64-10."""
    hw, x = folded("mlp", (1, 8, 8))
    geo = geometry_of(hw)
    assert [(g.kind, g.C_in, g.rows, g.outputs, g.positions) for g in geo] == \
        [("linear", 64, 64, 64, 1), ("linear", 64, 64, 10, 1)]
    assert geo == geometry_of(hw, (1, 8, 8))               # the image flattened first
    check_against_run(hw, geo, x[:3])
    assert activation_depth(geo) == 64


def test_lenet5_geometry():
    hw, x = folded("lenet5", (1, 28, 28))
    geo = geometry_of(hw, (1, 28, 28))
    assert geo == geometry_of(hw)                          # hw.image_shape is (1, 28, 28)
    got = [(g.kind, g.C_in, g.H, g.W, g.k, g.padding, g.pool, g.H_out, g.rows, g.outputs,
            g.positions, g.out_shape, g.in_bits, g.out_bits, g.is_output) for g in geo]
    assert got == [
        ("conv2d", 1, 28, 28, 5, 2, 2, 28, 25, 6, 784, (6, 14, 14), 4, 1, False),
        ("conv2d", 6, 14, 14, 5, 0, 2, 10, 150, 16, 100, (400,), 1, 1, False),
        ("linear", 400, 1, 1, 1, 0, 0, 1, 400, 120, 1, (120,), 1, 1, False),
        ("linear", 120, 1, 1, 1, 0, 0, 1, 120, 84, 1, (84,), 1, 1, False),
        ("linear", 84, 1, 1, 1, 0, 0, 1, 84, 10, 1, (10,), 1, 0, True)]
    check_against_run(hw, geo, x[:3])
    assert activation_depth(geo) == 6 * 14 * 14
    d = geo[0].as_dict()
    assert d["positions"] == 784 and d["out_size"] == 6 * 14 * 14 and d["kind"] == "conv2d"


def random_network(rng):
    """An integer network of 1-2 random conv layers (kernel 1-5, stride 1-2, padding 0-2,
    pooling off or 2-3, bits 1-3) and a dense output layer; returns (hw, image_shape)."""
    C, H, W = int(rng.integers(1, 5)), int(rng.integers(5, 13)), int(rng.integers(5, 13))
    image_shape, shape = (C, H, W), (C, H, W)
    layers, bits, N = [], int(rng.integers(1, 5)), 2
    in_bits = bits
    for _ in range(int(rng.integers(1, 3))):
        c, h, w = shape
        s, p = int(rng.integers(1, 3)), int(rng.integers(0, 3))
        k = int(rng.integers(1, min(5, min(h, w) + 2 * p) + 1))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        pool = int(rng.choice([0, 2, 3]))
        pool = pool if pool <= min(ho, wo) else 0
        out, ob = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        L = 2 ** ob - 1
        layers.append(HwLayer("conv2d", torch.from_numpy(rng.integers(-3, 4, (N, out, c, k, k))),
                              in_bits, stride=s, padding=p, pool=pool, out_bits=ob,
                              thresholds=torch.from_numpy(np.sort(rng.integers(-20, 20,
                                                                               (out, L)), 1)),
                              sign=torch.ones(out, dtype=torch.long)))
        ho, wo = (ho // pool, wo // pool) if pool else (ho, wo)
        shape, in_bits = (out, ho, wo), ob
    layers[-1].flatten = True
    fan_in = int(np.prod(shape))
    ncls = int(rng.integers(2, 5))
    layers.append(HwLayer("linear", torch.from_numpy(rng.integers(-3, 4, (N, ncls, fan_in))),
                          in_bits, scale=torch.ones(ncls, dtype=torch.long),
                          offset=torch.zeros(ncls, dtype=torch.long)))
    return HwNetwork(layers, bits, False, N, 3, 1, image_shape=image_shape), image_shape


def test_random_conv_networks_against_the_reference():
    rng = np.random.default_rng(14)
    for _ in range(40):
        hw, image_shape = random_network(rng)
        geo = geometry_of(hw, image_shape)
        x = torch.from_numpy(rng.integers(0, 2 ** hw.input_bits, (2, *image_shape)))
        check_against_run(hw, geo, x)


def test_params_for_reads_rows_from_the_geometry():
    """Dense: the same RtlParams as the codes' (out, rows) give; LeNet-5: C_in*k*k rows."""
    hw, _ = folded("mlp", (1, 8, 8), n_way=2)
    rows = [int(lay.codes.shape[2]) for lay in hw.layers]
    outs = [int(lay.codes.shape[1]) for lay in hw.layers]
    assert params_for(hw, 10) == RtlParams(
        N=5, n_max=2, Q=4, R=4, A_in=4, A=1, rows_max=max(rows), outputs_max=max(outs),
        classes_max=outs[-1], layers_max=2, groups_total=sum(-(-r // 4) for r in rows),
        T_max=16)
    lenet, _ = folded("lenet5", (1, 28, 28))
    p = params_for(lenet, 10)
    assert (p.rows_max, p.outputs_max, p.classes_max, p.layers_max) == (400, 120, 10, 5)
    assert p.groups_total == 7 + 38 + 100 + 30 + 21


@pytest.mark.parametrize("kw, match", [
    (dict(kind="conv"), r"kind must be one of \('linear', 'conv2d'\), not 'conv'"),
    (dict(C_in=0), "C_in must be a positive integer, not 0"),
    (dict(k=2.0), "k must be a positive integer, not 2.0"),
    (dict(padding=-1), "padding must be a non-negative integer, not -1"),
    (dict(flatten=1), "flatten must be a bool, not 1"),
    (dict(k=9), "kernel 9 does not fit the 6x6 input padded by 1"),
    (dict(pool=7), "pool 7 does not fit the 6x6 outputs"),
    (dict(is_output=True, out_bits=0), "the output layer does not pool, not pool = 2"),
    (dict(out_bits=0), "out_bits of a hidden layer must be a positive integer, not 0"),
    (dict(kind="linear"), r"a linear layer has H = W = k = stride = 1 and padding = pool = "
                          r"0, not \{'H': 6, 'W': 6, 'k': 3, 'padding': 1, 'pool': 2\}"),
])
def test_geometry_validation(kw, match):
    base = dict(kind="conv2d", C_in=2, H=6, W=6, k=3, stride=1, padding=1, pool=2,
                outputs=4, in_bits=4, out_bits=1, is_output=False, flatten=False)
    LayerGeometry(**base)
    with pytest.raises(ValueError, match=match):
        LayerGeometry(**{**base, **kw})


def test_geometry_of_refuses_networks_that_do_not_chain():
    hw, _ = folded("lenet5", (1, 28, 28))
    with pytest.raises(ValueError, match=r"layer 0: a conv layer of 1 input channels cannot "
                                         r"read activations of shape \(3, 28, 28\)"):
        geometry_of(hw, (3, 28, 28))
    with pytest.raises(ValueError, match="layer 1: kernel 5 does not fit the 1x1 input padded"):
        geometry_of(hw, (1, 2, 2))
    with pytest.raises(ValueError, match=r"layer 2: a linear layer of fan-in 400 cannot read "
                                         r"activations of shape \(576,\)"):
        geometry_of(hw, (1, 32, 32))
    hw.image_shape = None
    with pytest.raises(ValueError, match="image_shape is needed"):
        geometry_of(hw)
    hw.layers[1].flatten = False
    with pytest.raises(ValueError, match=r"layer 2: a linear layer of fan-in 400 cannot read "
                                         r"activations of shape \(16, 5, 5\) \(flatten"):
        geometry_of(hw, (1, 28, 28))
    hw.layers[1].flatten = True
    hw.layers[3].in_bits = 2
    with pytest.raises(ValueError, match=r"layer 3: in_bits 2 differs from the output bits "
                                         r"of layer 2 \(1\)"):
        geometry_of(hw, (1, 28, 28))
    with pytest.raises(ValueError, match="no layers"):
        geometry_of(HwNetwork([], 4, True, 5, 4, 1))


def test_loads_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from spinbayes.golden.geometry import LayerGeometry\n"
            "print(LayerGeometry('linear', 8, 1, 1, 1, 1, 0, 0, 3, 4, 1, False).rows)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "8"
