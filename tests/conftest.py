"""Shared fixtures: tiny fake data and a tiny trained model, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinbayes.config import Config
from spinbayes.golden.datasets import load_digits_split
from spinbayes.golden.networks import build_model
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


def _check_against_reference(hw, x, results):
    """Run the integer reference on the RTL's own arbiter choices (``results``: the
    ImageResults of CoreDriver.infer, one per image of ``x``) and assert every per-pass
    output, average and class equal; returns the reference output."""
    choices = torch.from_numpy(np.stack([r.choices for r in results], axis=1))
    ref = hw.run(x, choices)
    for b, r in enumerate(results):
        assert np.array_equal(r.per_pass, ref.per_pass[b].numpy()), f"image {b}: per-pass y"
        assert np.array_equal(r.averaged, ref.averaged[b].numpy()), f"image {b}: averaged"
        assert r.prediction == int(ref.prediction[b]), f"image {b}: class"
    return ref


@pytest.fixture(scope="session")
def check_reference():
    """The RTL-against-integer-reference check shared by the RTL tests."""
    return _check_against_reference
