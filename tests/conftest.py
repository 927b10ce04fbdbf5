"""Shared fixtures: tiny fake data and a tiny trained model, built once per session."""

from __future__ import annotations

import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.datasets import load_digits_split
from spinbayes.golden.models import build_model
from spinbayes.golden.train import train_bbb


@pytest.fixture(scope="session")
def digits():
    return load_digits_split(0.2, 0)


@pytest.fixture(scope="session")
def small_cfg():
    return Config(hidden=(16,), epochs=3, seed=0, recal_batches=2)


@pytest.fixture(scope="session")
def small_model(digits, small_cfg):
    """A 64-16-10 comparator MLP trained for 3 epochs on the digits (about a second)."""
    torch.set_num_threads(2)
    model = build_model(small_cfg, digits.image_shape, digits.num_classes)
    train_bbb(model, digits.x_train, digits.y_train, small_cfg, progress=False)
    return model
