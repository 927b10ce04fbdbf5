"""The configuration object and the flags generated from it."""

import argparse

import pytest

from spinbayes.config import Config, add_config_arguments, config_from_args


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.N, cfg.Q, cfg.T, cfg.n_way) == (5, 4, 10, 1)
    assert cfg.q_max == 7


@pytest.mark.parametrize("kw, msg", [
    ({"N": 0}, "N must be a positive integer, not 0"),
    ({"Q": 1}, "Q must be at least 2"),
    ({"n_way": 6}, r"n_way must not exceed N \(5\), not 6"),
    ({"T": 2.5}, "T must be a positive integer, not 2.5"),
    ({"dataset": "cifar"}, "dataset must be one of"),
    ({"dataset": "mnist"}, "give --data-dir"),
    ({"hidden": ()}, "hidden must be a non-empty tuple"),
    ({"prior_sigma": 0.0}, "prior_sigma must be positive"),
    ({"ood_threshold": 1.5}, r"ood_threshold must lie in \(0, 1\]"),
    ({"uncertainty_measure": "x"}, "uncertainty_measure must be one of"),
])
def test_bad_values_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Config(**kw)


def test_flags_round_trip_and_override():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--N", "7", "--hidden", "32,16", "--n-way", "2", "--T", "20"])
    cfg = config_from_args(args)
    assert (cfg.N, cfg.hidden, cfg.n_way, cfg.T) == (7, (32, 16), 2, 20)
    assert Config.from_dict(cfg.to_dict()) == cfg
    base = Config(T=3, Q=3)
    assert config_from_args(p.parse_args([]), base) == base
    with pytest.raises(ValueError, match="unknown configuration keys"):
        Config.from_dict({"bogus": 1})
