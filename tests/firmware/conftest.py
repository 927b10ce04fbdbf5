"""A tiny trained network on a tiny design, shared by the firmware tests (built once)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from spinbayes.config import Config
from spinbayes.firmware.compiler import Program, compile_network
from spinbayes.golden.approximation import approximate
from spinbayes.golden.evaluate import build_spinbayes
from spinbayes.golden.hardware import HwNetwork, fold_network
from spinbayes.golden.networks import build_model
from spinbayes.golden.train import train_bbb
from spinbayes.rtl.params import RtlParams

#: The tiny design of tests/rtl/test_network.py: 16 inputs (4x4 digits), 6 hidden, 10 classes.
TINY = RtlParams(N=3, n_max=1, A_in=2, rows_max=16, outputs_max=10, layers_max=2,
                 groups_total=8, T_max=4)


@dataclass
class Tiny:
    params: RtlParams
    hw: HwNetwork
    program: Program
    x_test: torch.Tensor      # (B, 1, 4, 4) in [0, 1]


def pool(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x, 2)


@pytest.fixture(scope="session")
def tiny(digits) -> Tiny:
    torch.manual_seed(0)
    cfg = Config(hidden=(6,), epochs=2, input_bits=2)
    x_train = pool(digits.x_train)
    model = build_model(cfg, (1, 4, 4), 10)
    train_bbb(model, x_train, digits.y_train, cfg, progress=False)
    images = approximate(model, 3, 4, seed=0)
    hw = fold_network(build_spinbayes(images, model, x_train, 1, 2, seed=0), images)
    program = compile_network(hw, TINY, T=3, seed=5)
    return Tiny(TINY, hw, program, pool(digits.x_test[:4]))
