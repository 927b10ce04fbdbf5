"""The configuration object, its checks and the flags generated from it."""

import argparse
import json
import math
import re
from dataclasses import fields

import pytest

from spinbayes.config import Config, add_config_arguments, config_from_args, flag_of

_RANGED = [f for f in fields(Config) if "range" in f.metadata]
_FLOATS = [f.name for f in _RANGED if not f.metadata["range"].integer]
_INTS = [f.name for f in _RANGED if f.metadata["range"].integer]


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.N, cfg.Q, cfg.T, cfg.n_way) == (5, 4, 10, 1)
    assert cfg.q_max == 7


def test_every_float_field_is_ranged():
    """No float field escapes the finiteness check (a new field must declare a Range)."""
    floats = {f.name for f in fields(Config) if isinstance(f.default, float)}
    assert floats == set(_FLOATS)
    assert {"lr", "kl_weight", "rho_init", "prior_sigma", "noisy_sigma"} <= floats


@pytest.mark.parametrize("name", _FLOATS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_for_every_float(name, value):
    msg = f"{name} ({flag_of(name)}) must be a finite "
    with pytest.raises(ValueError, match=re.escape(msg)) as e:
        Config(**{name: value})
    assert str(e.value).endswith(f"not {value!r}")


@pytest.mark.parametrize("name", _INTS)
def test_integer_bounds_are_inclusive_and_named(name):
    rng = dict(fields(Config)[[f.name for f in fields(Config)].index(name)].metadata)["range"]
    extra = {"n_way": 1} if name == "N" else {}
    assert getattr(Config(**{name: rng.lo, **extra}), name) == rng.lo
    with pytest.raises(ValueError, match=re.escape(f"{name} ({flag_of(name)}) must be an "
                                                   f"integer in {rng.lo}..{rng.hi}")):
        Config(**{name: rng.lo - 1})
    assert getattr(Config(**{name: rng.hi}), name) == rng.hi
    with pytest.raises(ValueError, match=re.escape(f"not {rng.hi + 1}")):
        Config(**{name: rng.hi + 1})
    for wrong in (2.0, True, "3"):
        with pytest.raises(ValueError, match=re.escape(f"({flag_of(name)})")):
            Config(**{name: wrong})


@pytest.mark.parametrize("kw, msg", [
    # the inputs of issue 13 that used to get through
    ({"lr": math.inf}, r"lr \(--lr\) must be a finite number in \(0, 1\] .*not inf"),
    ({"kl_weight": math.nan}, r"kl_weight \(--kl-weight\) must be a finite number .*not nan"),
    ({"rho_init": math.nan}, r"rho_init \(--rho-init\) must be a finite number .*not nan"),
    ({"prior_sigma": math.inf}, r"prior_sigma \(--prior-sigma\) must be .*not inf"),
    ({"Q": 9}, r"Q \(--Q\) must be an integer in 2..8 \(eq. 3 needs a sign bit; crossbar "
               r"images and the RTL hold int8 codes\), not 9"),
    ({"kl_weight": -5}, r"kl_weight \(--kl-weight\) must be a finite number in \[0, 1000\]"),
    ({"act_bits": 20}, r"act_bits \(--act-bits\) must be an integer in 1..8 \(2\^A - 1 "
                       r"comparators per neuron.*\), not 20"),
    ({"noisy_sigma": -1}, r"noisy_sigma \(--noisy-sigma\) must be a finite positive number"),
    ({"noisy_sigma": 0.0}, r"0 leaves the test images unchanged"),
    # and the rest
    ({"N": 0}, r"N \(--N\) must be an integer in 1..64 .*, not 0"),
    ({"Q": 1}, r"Q \(--Q\) must be an integer in 2..8"),
    ({"n_way": 6}, r"n_way \(--n-way\) must be an integer in 1..N=5, not 6"),
    ({"n_way": 0}, r"n_way \(--n-way\) must be an integer in 1..N=5, not 0"),
    ({"T": 2.5}, r"T \(--T\) must be an integer in 1..1000 .*not 2.5"),
    ({"lr": 0.0}, r"lr \(--lr\) must be a finite number in \(0, 1\]"),
    ({"lr": True}, r"lr \(--lr\) .*not True"),
    ({"lr": "0.1"}, r"lr \(--lr\) .*not '0.1'"),
    ({"batch_size": 1}, r"batch_size \(--batch-size\) .*BatchNorm needs two examples"),
    ({"dataset": "cifar"}, r"dataset \(--dataset\) must be one of"),
    ({"topology": "resnet"}, r"topology \(--topology\) must be one of"),
    ({"dataset": "mnist"}, "give --data-dir"),
    ({"data_dir": ""}, r"data_dir \(--data-dir\) must be a directory path"),
    ({"hidden": ()}, r"hidden \(--hidden\) must be a tuple of 1 to 8 layer widths, not \(\)"),
    ({"hidden": (8,) * 9}, r"hidden \(--hidden\) must be a tuple of 1 to 8 layer widths"),
    ({"hidden": (64, 0)}, r"hidden \(--hidden\) must be a tuple of widths, each an integer in "
                          r"1..4096"),
    ({"hidden": (4097,)}, r"hidden \(--hidden\) .*not \(4097,\)"),
    ({"hidden": [64]}, r"hidden \(--hidden\) must be a tuple"),
    ({"prior_sigma": 0.0}, r"prior_sigma \(--prior-sigma\) must be a finite number in "
                           r"\[1e-06, 100\]"),
    ({"test_fraction": 0.0}, r"test_fraction \(--test-fraction\) .*every class"),
    ({"test_fraction": 1.0}, r"test_fraction \(--test-fraction\)"),
    ({"ood_threshold": 1.5}, r"ood_threshold \(--ood-threshold\) must be a finite number in "
                             r"\(0, 1\]"),
    ({"ood_quantile": -0.1}, r"ood_quantile \(--ood-quantile\)"),
    ({"uncertainty_threshold": 1.5}, r"uncertainty_threshold \(--uncertainty-threshold\) must "
                                     r"be in \[0, 1\] with --threshold-mode relative"),
    ({"uncertainty_threshold": -1.0, "threshold_mode": "absolute"},
     r"uncertainty_threshold \(--uncertainty-threshold\) must be a finite number >= 0"),
    ({"uncertainty_measure": "x"}, r"uncertainty_measure \(--uncertainty-measure\) must be "
                                   r"one of"),
    ({"seed": -1}, r"seed \(--seed\) must be an integer in 0..4294967295"),
    ({"split_seed": 2 ** 32}, r"split_seed \(--split-seed\) must be an integer in 0..4294967295"),
])
def test_bad_values_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Config(**kw)


def test_values_at_the_edges_are_accepted():
    cfg = Config(act_bits=8, input_bits=8, Q=8, kl_weight=0, lr=1, N=64, n_way=64, T=1000,
                 hidden=(4096,) * 8, noisy_sigma=10.0, threshold_mode="absolute",
                 uncertainty_threshold=3.5, test_fraction=0.01, rho_init=-80, recal_batches=0)
    assert (cfg.Q, cfg.act_bits, cfg.n_way) == (8, 8, 64)
    # ints given for float fields are stored as floats, so the manifest's JSON is stable
    assert isinstance(cfg.lr, float) and isinstance(cfg.kl_weight, float)
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_replace_and_from_dict_check_too():
    with pytest.raises(ValueError, match=r"lr \(--lr\)"):
        Config().replace(lr=math.nan)
    d = Config().to_dict()
    d["act_bits"] = 20
    with pytest.raises(ValueError, match=r"act_bits \(--act-bits\)"):
        Config.from_dict(d)


def test_help_shows_every_range_and_its_reason():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    text = " ".join(p.format_help().split())
    assert "(1..8: 2^A - 1 comparators per neuron" in text
    assert "(2..8: eq. 3 needs a sign bit" in text
    assert "((0, 1]: Adam moves a weight" in text


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
    with pytest.raises(ValueError, match=r"lr \(--lr\) must be a finite number .*not inf"):
        config_from_args(p.parse_args(["--lr", "inf"]))


def test_the_recipe_gives_the_defaults_of_its_dataset_and_topology():
    from spinbayes.cli import build_parser
    from spinbayes.config import RECIPES, config_with_recipe, recipe

    lenet = RECIPES[("mnist", "lenet5")]
    assert lenet and recipe("mnist", "lenet5") == lenet and recipe("digits", "mlp") == {}
    cfg = config_with_recipe({"dataset": "mnist", "data_dir": "d", "topology": "lenet5"})
    assert all(getattr(cfg, k) == v for k, v in lenet.items())
    # a flag given wins over the recipe; other pairs keep Config's defaults
    name, value = next(iter(lenet.items()))
    cfg = config_with_recipe({"dataset": "mnist", "data_dir": "d", "topology": "lenet5",
                              name: getattr(Config(), name)})
    assert getattr(cfg, name) == getattr(Config(), name) != value
    for ds, topo in (("mnist", "mlp"), ("digits", "mlp"), ("digits28", "lenet5")):
        changes = {"dataset": ds, "topology": topo, **({"data_dir": "d"} if ds == "mnist"
                                                        else {})}
        assert config_with_recipe(changes) == Config().replace(**changes)
    # the command line takes the recipe, and a checkpoint's values stay as they are
    args = build_parser().parse_args(["train", "--dataset", "mnist", "--data-dir", "d",
                                      "--topology", "lenet5", "--epochs", "3"])
    cfg = config_from_args(args)
    assert cfg.epochs == 3 and all(getattr(cfg, k) == v for k, v in lenet.items()
                                   if k != "epochs")
    assert config_from_args(args, Config()).holdout_fraction == Config().holdout_fraction
