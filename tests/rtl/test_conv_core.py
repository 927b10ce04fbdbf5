"""Convolution networks through the core in Amaranth's simulator against the integer reference.

Random integer networks (golden/hardware.py ``HwLayer``; kernel 1-3, stride 1-2, padding 0-1,
C_in 1-2, pooling on and off, one or two convolutions, a dense hidden layer or not, a dense
output layer) are compiled (firmware/compiler.py), run through the core by the firmware
driver, and checked against ``HwNetwork.run`` on the core's own arbiter choices: every
per-pass output, average and class.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from spinbayes.firmware.compiler import compile_network
from spinbayes.firmware.driver import AmaranthBus, CoreDriver
from spinbayes.golden.geometry import geometry_of
from spinbayes.golden.hardware import HwLayer, HwNetwork
from spinbayes.rtl.network import SpinBayesCore
from spinbayes.sim.coverify import params_for


def _hidden(rng, kind, codes, in_bits, A, **geo):
    """A hidden layer with sorted thresholds spread over its sums' likely range."""
    out = codes.shape[1]
    rows = int(np.prod(codes.shape[2:]))
    spread = max(2, int(3 * np.sqrt(rows) * 2 ** in_bits))
    theta = np.sort(rng.integers(-spread, spread + 1, (out, 2 ** A - 1)), axis=1)
    sign = rng.choice([-1, 1], out)
    return HwLayer(kind, torch.from_numpy(codes), in_bits, thresholds=torch.from_numpy(theta),
                   sign=torch.from_numpy(sign), out_bits=A, **geo)


def random_conv_network(rng, *, N=3, n_way=1, Q=3, A_in=2, A=1, dense_hidden=None):
    """An integer network: 1-2 convolutions (kernel 1-3, stride 1-2, padding 0-1, pooling
    0 or 2), a dense hidden layer (``dense_hidden`` None: at random) and a dense output
    layer; returns (hw, image_shape)."""
    C, H, W = int(rng.integers(1, 3)), int(rng.integers(3, 8)), int(rng.integers(3, 8))
    q = 2 ** (Q - 1) - 1
    image_shape, shape = (C, H, W), (C, H, W)
    layers, in_bits = [], A_in
    for _ in range(int(rng.integers(1, 3))):
        c, h, w = shape
        p = int(rng.integers(0, 2))
        s = int(rng.integers(1, 3))
        k = int(rng.integers(1, min(3, min(h, w) + 2 * p) + 1))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        pool = int(rng.choice([0, 2])) if min(ho, wo) >= 2 else 0
        out = int(rng.integers(1, 4))
        codes = rng.integers(-q, q + 1, (N, out, c, k, k))
        layers.append(_hidden(rng, "conv2d", codes, in_bits, A, stride=s, padding=p,
                              pool=pool))
        shape, in_bits = ((out, ho // pool, wo // pool) if pool else (out, ho, wo)), A
    layers[-1].flatten = True
    fan_in = int(np.prod(shape))
    if dense_hidden is None:
        dense_hidden = bool(rng.integers(0, 2))
    if dense_hidden:
        out = int(rng.integers(2, 6))
        layers.append(_hidden(rng, "linear", rng.integers(-q, q + 1, (N, out, fan_in)), A, A))
        fan_in = out
    ncls = int(rng.integers(2, 5))
    layers.append(HwLayer("linear", torch.from_numpy(rng.integers(-q, q + 1, (N, ncls, fan_in))),
                          A, scale=torch.from_numpy(rng.integers(-40, 41, ncls)),
                          offset=torch.from_numpy(rng.integers(-500, 501, ncls))))
    return HwNetwork(layers, A_in, False, N, Q, n_way, image_shape=image_shape), image_shape


def run_conv_core(hw, x, T, seed, params):
    """Program the core (cells by the back door) and run the images ``x`` (integer codes
    (B, C, H, W)) in one simulation; returns (program, results)."""
    program = compile_network(hw, params, T=T, seed=seed)
    dut = SpinBayesCore(params, program.cells)
    results = []

    async def testbench(ctx):
        drv = CoreDriver(AmaranthBus(ctx, dut), max_wait=200_000)
        await drv.program(program, cells=False)
        for img in x.flatten(1).numpy():
            results.append(await drv.infer(img, program, len(hw.layers), hw.n_way))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return program, results


def _case(seed, n_way=1, B=2, T=2, **kw):
    rng = np.random.default_rng(seed)
    hw, image_shape = random_conv_network(rng, n_way=n_way, **kw)
    x = torch.from_numpy(rng.integers(0, 2 ** hw.input_bits, (B, *image_shape)))
    return hw, x, T


@pytest.mark.parametrize("seed, n_way", [(1, 1), (2, 2), (3, 1)])
def test_random_conv_network_equals_reference(seed, n_way, check_reference):
    hw, x, T = _case(seed, n_way)
    print([g for g in geometry_of(hw)])
    params = params_for(hw, T)
    _, results = run_conv_core(hw, x, T, seed, params)
    check_reference(hw, x, results)
