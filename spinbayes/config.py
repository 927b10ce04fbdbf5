"""One frozen configuration object that flows from the command line down.

Every parameter of the paper that the golden model, the RTL, the firmware and the
testbenches share lives here, under the paper's names (N, n_way, Q, T, ...). The
command line is generated from this dataclass (:func:`add_config_arguments`), so a
flag, its default and its help text are defined in exactly one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Config", "add_config_arguments", "config_from_args"]

_DATASETS = ("digits", "mnist", "fashion-mnist")
_TOPOLOGIES = ("mlp", "lenet5")
_ACTIVATIONS = ("comparator", "relu")
_MEASURES = ("mutual_information", "entropy", "variance")
_THRESHOLD_MODES = ("relative", "absolute")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class Config:
    """Parameters of one SpinBayes experiment (training, mapping, inference, evaluation)."""

    # --- data ---------------------------------------------------------------------------
    dataset: str = _f("digits", "in-distribution data set: digits (scikit-learn, bundled), "
                      "mnist or fashion-mnist (IDX files in --data-dir)", choices=_DATASETS)
    data_dir: str | None = _f(None, "directory holding the MNIST / Fashion-MNIST IDX files "
                              "(gzipped or not); never downloaded")
    split_seed: int = _f(0, "seed of the fixed train/test split of the digits set")
    test_fraction: float = _f(0.2, "fraction of the digits set held out for testing")

    # --- topology -------------------------------------------------------------------------
    topology: str = _f("mlp", "network: mlp (default for digits) or lenet5 (28x28 inputs)",
                       choices=_TOPOLOGIES)
    hidden: tuple[int, ...] = _f((64,), "hidden layer widths of the MLP, e.g. 64 or 128,64")
    activation: str = _f("comparator", "hidden activation: comparator (the hardware's "
                         "step / A-bit thermometer, trained with a straight-through "
                         "estimator) or relu (float reference)", choices=_ACTIVATIONS)
    act_bits: int = _f(1, "A: output bits of a comparator activation (2^A-1 comparators; "
                       "A=1 is a step)")
    input_bits: int = _f(4, "A_in: bits of the unsigned input code applied to the first "
                         "crossbar (inputs in [0,1] are rounded to 2^A_in-1 levels)")

    # --- Bayes by Backprop ----------------------------------------------------------------
    prior_sigma: float = _f(0.1, "sigma of the zero-mean Gaussian prior; small so that "
                            "posterior samples stay inside the clip range of eq. 3")
    rho_init: float = _f(-4.0, "initial rho of the posterior (sigma = softplus(rho))")
    epochs: int = _f(100, "training epochs")
    batch_size: int = _f(64, "training mini-batch size")
    lr: float = _f(3e-3, "Adam learning rate")
    kl_weight: float = _f(0.1, "multiplier of the KL term (the ELBO uses KL / n_train); "
                       "below 1 it tempers the posterior, which keeps the comparator "
                       "network accurate (see docs/ARCHITECTURE.md)")
    seed: int = _f(0, "seed of training, sampling and evaluation")

    # --- in-memory approximation (section 3.2) --------------------------------------------
    N: int = _f(5, "N: posterior samples, hence crossbars, per layer")
    Q: int = _f(4, "Q: bits of each quantized weight (eq. 3 gives -(2^(Q-1)-1)..2^(Q-1)-1)")
    recal_batches: int = _f(20, "mini-batches used to re-calibrate BatchNorm under the "
                            "quantized samples (0 disables re-calibration)")

    # --- SpinBayes inference (sections 3.3, 4.4) ------------------------------------------
    T: int = _f(10, "T: stochastic forward passes averaged by eq. 4")
    n_way: int = _f(1, "n: crossbars chosen (and averaged) per layer and pass")

    # --- evaluation (section 4.1) ---------------------------------------------------------
    uncertainty_measure: str = _f("mutual_information", "uncertainty score that splits "
                                  "certain from uncertain predictions for R_cc, R_iu, UA",
                                  choices=_MEASURES)
    threshold_mode: str = _f("relative", "relative: threshold = u_min + t*(u_max-u_min) over "
                             "the evaluated set, as in Mobiny et al.'s code; absolute: t itself",
                             choices=_THRESHOLD_MODES)
    uncertainty_threshold: float = _f(0.2, "t: a prediction is uncertain when its score "
                                      "exceeds the threshold (see --threshold-mode)")
    ood_quantile: float = _f(0.99, "quantile of the T per-pass probabilities used by the "
                             "OoD rule")
    ood_threshold: float = _f(0.9, "an input is rejected when that quantile is below this")
    noisy_sigma: float = _f(0.5, "sigma of the Gaussian noise added for the noisy-in-"
                            "distribution OoD set (inputs lie in [0,1])")
    ood_samples: int = _f(500, "images per synthetic OoD set")

    def __post_init__(self):
        def positive_int(name):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")

        for name in ("act_bits", "input_bits", "epochs", "batch_size", "N", "Q", "T",
                     "n_way", "ood_samples"):
            positive_int(name)
        if self.dataset not in _DATASETS:
            raise ValueError(f"dataset must be one of {_DATASETS}, not {self.dataset!r}")
        if self.topology not in _TOPOLOGIES:
            raise ValueError(f"topology must be one of {_TOPOLOGIES}, not {self.topology!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, "
                             f"not {self.activation!r}")
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive integers, "
                             f"not {self.hidden!r}")
        if self.Q < 2:
            raise ValueError(f"Q must be at least 2 (eq. 3 needs a sign bit), not {self.Q!r}")
        if self.n_way > self.N:
            raise ValueError(f"n_way must not exceed N ({self.N}), not {self.n_way!r}")
        if self.uncertainty_measure not in _MEASURES:
            raise ValueError(f"uncertainty_measure must be one of {_MEASURES}, "
                             f"not {self.uncertainty_measure!r}")
        if self.threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {_THRESHOLD_MODES}, "
                             f"not {self.threshold_mode!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), not {self.test_fraction!r}")
        if not self.prior_sigma > 0:
            raise ValueError(f"prior_sigma must be positive, not {self.prior_sigma!r}")
        if not 0.0 <= self.ood_quantile <= 1.0:
            raise ValueError(f"ood_quantile must lie in [0, 1], not {self.ood_quantile!r}")
        if not 0.0 < self.ood_threshold <= 1.0:
            raise ValueError(f"ood_threshold must lie in (0, 1], not {self.ood_threshold!r}")
        if self.threshold_mode == "relative" and not 0.0 <= self.uncertainty_threshold <= 1.0:
            raise ValueError(f"a relative uncertainty_threshold must lie in [0, 1], "
                             f"not {self.uncertainty_threshold!r}")
        if self.recal_batches < 0:
            raise ValueError(f"recal_batches must be >= 0, not {self.recal_batches!r}")
        if self.dataset != "digits" and self.data_dir is None:
            raise ValueError(f"dataset {self.dataset!r} is read from IDX files: "
                             f"give --data-dir")

    @property
    def q_max(self) -> int:
        """Largest quantized weight magnitude of eq. 3: 2^(Q-1) - 1 (7 for Q = 4)."""
        return 2 ** (self.Q - 1) - 1

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _parse_hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"hidden must be comma-separated integers such as 128,64, not {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """Add one ``--flag`` per :class:`Config` field (or per field in ``only``).

    Defaults are left as ``None`` so that :func:`config_from_args` can tell an explicit flag
    from a default, and a flag can override a value read from a checkpoint's manifest.
    """
    group = parser.add_argument_group("experiment configuration")
    for f in fields(Config):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"default": None, "dest": f.name}
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        kw["help"] = f"{f.metadata['help']} (default: {shown})"
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.name == "hidden":
            kw["type"] = _parse_hidden
        elif isinstance(default, int):  # bool is an int too
            kw["type"] = int
        elif isinstance(default, float):
            kw["type"] = float
        else:
            kw["type"] = str
        group.add_argument(flag, **kw)


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Build a :class:`Config` from parsed flags; unset flags keep ``base``'s values."""
    base = base or Config()
    changes = {f.name: getattr(args, f.name) for f in fields(Config)
               if getattr(args, f.name, None) is not None}
    return base.replace(**changes)
