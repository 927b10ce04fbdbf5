"""Fixtures of the CLI tests."""

import pytest


@pytest.fixture
def seen_run_images(monkeypatch):
    """run_images replaced by a fake that records its keyword arguments (and ``hw``) in the
    returned dict and returns "result"."""
    from spinbayes.sim import coverify

    seen = {}

    def fake_run_images(hw, x, **kw):
        seen.update(kw, hw=hw)
        return "result"

    monkeypatch.setattr(coverify, "run_images", fake_run_images)
    return seen
