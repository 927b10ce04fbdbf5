"""One frozen configuration object that flows from the command line down.

Every parameter of the paper that the golden model, the RTL, the firmware and the
testbenches share lives here, under the paper's names (N, n_way, Q, T, ...). The
command line is generated from this dataclass (:func:`add_config_arguments`), so a
flag, its default, its help text and its allowed range are defined in exactly one place.

Every field is checked when a :class:`Config` is built (the command line builds one before
anything is written): numbers must be finite and in range, and each error message names the
field and its flag. The ranges are those the rest of the code accepts (Q in 2..8 as in the
crossbar images and the RTL); an upper bound also stops values whose cost explodes (the
golden model evaluates each of the 2^A - 1 comparators of an A-bit activation, so A = 20
takes minutes per epoch of an 8-neuron net). Each range carries its reason, shown in the
help and in the error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["RECIPES", "Config", "Range", "add_config_arguments", "config_from_args",
           "config_with_recipe", "flag_of", "recipe"]

_DATASETS = ("digits", "digits28", "mnist", "fashion-mnist")
_BUNDLED = ("digits", "digits28")  # shipped with scikit-learn: no --data-dir
_TOPOLOGIES = ("mlp", "lenet5")
_ACTIVATIONS = ("comparator", "relu")
_MEASURES = ("mutual_information", "entropy", "variance")
_THRESHOLD_MODES = ("relative", "absolute")
_SEED_MAX = 2 ** 32 - 1  # numpy and scikit-learn take 32-bit unsigned seeds


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: lo..hi (None: unbounded), ends open or closed.

    ``integer`` fields take Python ints; the others finite ints or floats (NaN and infinity
    are always refused). ``why`` states the reason for the bounds.
    """

    lo: float | None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def span(self) -> str:
        """The bounds alone: "1..8", "(0, 1]", ">= 0", "> 0"."""
        if self.integer:
            return f"{self.lo}..{self.hi}" if self.hi is not None else f">= {self.lo}"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return (f"{'(' if self.lo_open else '['}{self.lo:g}, "
                f"{self.hi:g}{')' if self.hi_open else ']'}")

    def describe(self) -> str:
        """E.g. "an integer in 1..8", "a finite number in (0, 1]", "a finite number >= 0"."""
        if self.integer:
            return f"an integer {'in ' if self.hi is not None else ''}{self.span()}"
        if self.hi is None and self.lo == 0 and self.lo_open:
            return "a finite positive number"
        return f"a finite number {'in ' if self.hi is not None else ''}{self.span()}"

    def contains(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if self.integer else (int, float)):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)


def flag_of(name: str) -> str:
    """The command-line flag of a Config field: ``kl_weight`` -> ``--kl-weight``."""
    return "--" + name.replace("_", "-")


def _bad(name: str, requirement: str, value: Any, why: str = "") -> ValueError:
    reason = f" ({why})" if why else ""
    return ValueError(f"{name} ({flag_of(name)}) must be {requirement}{reason}, not {value!r}")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


#: Widths of one hidden layer and number of hidden layers of the MLP.
HIDDEN_WIDTH = Range(1, 4096, integer=True, why="each of the N crossbar copies holds "
                     "width x fan-in weights")
HIDDEN_LAYERS = 8


@dataclass(frozen=True)
class Config:
    """Parameters of one SpinBayes experiment (training, mapping, inference, evaluation)."""

    # --- data ---------------------------------------------------------------------------
    dataset: str = _f("digits", "in-distribution data set: digits (scikit-learn, bundled, "
                      "8x8), digits28 (the same digits resized to 28x28 for LeNet-5), mnist or "
                      "fashion-mnist (IDX files in --data-dir)", choices=_DATASETS)
    data_dir: str | None = _f(None, "directory holding the MNIST / Fashion-MNIST IDX files "
                              "(gzipped or not); never downloaded")
    split_seed: int = _f(0, "seed of the fixed train/test split of the digits set",
                         range=Range(0, _SEED_MAX, integer=True,
                                     why="scikit-learn takes 32-bit unsigned seeds"))
    test_fraction: float = _f(0.2, "fraction of the digits set held out for testing",
                              range=Range(0.01, 0.99, why="both sides of the stratified "
                                          "split of the 1797 digits must hold every class"))
    holdout_fraction: float = _f(0.0, "fraction of the training set held out before training "
                                 "(stratified, seeded by --split-seed) on which the OoD "
                                 "operating point is chosen (--ood-target-rejection); 0: it is "
                                 "chosen on training images, which the model has fitted, so "
                                 "the test set's in-distribution rejection tends to exceed the "
                                 "target", range=Range(0.0, 0.5, why="the rest trains the "
                                                       "network"))

    # --- topology -------------------------------------------------------------------------
    topology: str = _f("mlp", "network: mlp (default for digits) or lenet5 (28x28 inputs)",
                       choices=_TOPOLOGIES)
    hidden: tuple[int, ...] = _f((64,), f"hidden layer widths of the MLP, e.g. 64 or 128,64; "
                                 f"1 to {HIDDEN_LAYERS} layers of 1..{HIDDEN_WIDTH.hi} neurons")
    activation: str = _f("comparator", "hidden activation: comparator (the hardware's "
                         "step / A-bit thermometer, trained with a straight-through "
                         "estimator) or relu (float reference)", choices=_ACTIVATIONS)
    act_bits: int = _f(1, "A: output bits of a comparator activation (2^A-1 comparators; "
                       "A=1 is a step)",
                       range=Range(1, 8, integer=True, why="2^A - 1 comparators per neuron, "
                                   "each evaluated by the golden model: cost doubles per bit"))
    input_bits: int = _f(4, "A_in: bits of the unsigned input code applied to the first "
                         "crossbar (inputs in [0,1] are rounded to 2^A_in-1 levels)",
                         range=Range(1, 8, integer=True, why="pixels hold at most 8 bits, "
                                     "MNIST's 0..255; each bit is one more bit-serial read"))

    # --- Bayes by Backprop ----------------------------------------------------------------
    prior_sigma: float = _f(0.1, "sigma of the zero-mean Gaussian prior; small so that "
                            "posterior samples stay inside the clip range of eq. 3",
                            range=Range(1e-6, 100.0, why="the KL term divides by "
                                        "prior_sigma^2; weights live in about [-1, 1]"))
    rho_init: float = _f(-4.0, "initial rho of the posterior (sigma = softplus(rho))",
                         range=Range(-80.0, 20.0, why="below, sigma underflows to 0 in "
                                     "float32 and the KL term is infinite; above, "
                                     "sigma > 20 dwarfs every weight"))
    epochs: int = _f(100, "training epochs",
                     range=Range(1, 10_000, integer=True, why="each epoch is a full pass over "
                                 "the training set"))
    batch_size: int = _f(64, "training mini-batch size",
                         range=Range(2, 2 ** 20, integer=True,
                                     why="BatchNorm needs two examples per batch"))
    augment_shift: int = _f(0, "random translation of each training image by up to this "
                            "many pixels in x and y (zero fill), drawn per image and epoch; "
                            "0: none",
                            range=Range(0, 8, integer=True, why="a shift of more than 8 pixels "
                                        "moves a 28x28 digit out of view"))
    lr: float = _f(3e-3, "Adam learning rate",
                   range=Range(0.0, 1.0, lo_open=True, why="Adam moves a weight by about lr "
                               "per step; weights live in about [-1, 1]"))
    kl_weight: float = _f(0.1, "multiplier of the KL term (the ELBO uses KL / n_train); "
                          "below 1 it tempers the posterior, which keeps the comparator "
                          "network accurate (see docs/ARCHITECTURE.md)",
                          range=Range(0.0, 1000.0, why="1 is the ELBO; far above, the prior "
                                      "alone decides the weights"))
    seed: int = _f(0, "seed of training, sampling and evaluation",
                   range=Range(0, _SEED_MAX, integer=True,
                               why="numpy takes 32-bit unsigned seeds"))

    # --- in-memory approximation (section 3.2) --------------------------------------------
    N: int = _f(5, "N: posterior samples, hence crossbars, per layer",
                range=Range(1, 64, integer=True, why="N copies of every weight are stored "
                            "and evaluated"))
    Q: int = _f(4, "Q: bits of each quantized weight (eq. 3 gives -(2^(Q-1)-1)..2^(Q-1)-1)",
                range=Range(2, 8, integer=True, why="eq. 3 needs a sign bit; crossbar images "
                            "and the RTL hold int8 codes"))
    recal_batches: int = _f(20, "mini-batches used to re-calibrate BatchNorm under the "
                            "quantized samples (0 disables re-calibration)",
                            range=Range(0, 10_000, integer=True,
                                        why="each batch is one pass over 128 images"))

    # --- SpinBayes inference (sections 3.3, 4.4) ------------------------------------------
    T: int = _f(10, "T: stochastic forward passes averaged by eq. 4",
                range=Range(1, 1000, integer=True, why="cost grows as T while the Monte-Carlo "
                            "error falls only as 1/sqrt(T)"))
    n_way: int = _f(1, "n: crossbars chosen (and averaged) per layer and pass; 1..N")

    # --- evaluation (section 4.1) ---------------------------------------------------------
    uncertainty_measure: str = _f("mutual_information", "uncertainty score that splits "
                                  "certain from uncertain predictions for R_cc, R_iu, UA",
                                  choices=_MEASURES)
    threshold_mode: str = _f("relative", "relative: threshold = u_min + t*(u_max-u_min) over "
                             "the evaluated set, as in Mobiny et al.'s code; absolute: t itself",
                             choices=_THRESHOLD_MODES)
    uncertainty_threshold: float = _f(0.2, "t: a prediction is uncertain when its score "
                                      "exceeds the threshold (see --threshold-mode); in [0, 1] "
                                      "when relative, >= 0 when absolute",
                                      range=Range(0.0))
    ood_quantile: float = _f(0.99, "quantile of the T per-pass probabilities used by the "
                             "OoD rule", range=Range(0.0, 1.0))
    ood_threshold: float = _f(0.9, "an input is rejected when that quantile is below this",
                              range=Range(0.0, 1.0, lo_open=True))
    noisy_sigma: float = _f(0.5, "sigma of the Gaussian noise added for the noisy-in-"
                            "distribution OoD set (inputs lie in [0,1])",
                            range=Range(0.0, lo_open=True, why="0 leaves the test images "
                                        "unchanged, which is not an OoD set"))
    ood_target_rejection: float = _f(0.05, "target in-distribution rejection rate of the OoD "
                                     "operating point: the rule's threshold is chosen so that "
                                     "at most this fraction of the held-out in-distribution "
                                     "images is rejected (see --holdout-fraction)",
                                     range=Range(0.0, 0.5, lo_open=True, why="a fraction of "
                                                 "the in-distribution images"))
    ood_fashion: str = _f("auto", "Fashion-MNIST's test images as an OoD set of 28x28 data "
                          "(t10k-images-idx3-ubyte under --data-dir): auto uses them when "
                          "found and the report says where it looked when not; yes requires "
                          "them (an error names the folders searched); no leaves them out",
                          choices=("auto", "yes", "no"))
    ood_samples: int = _f(500, "images per OoD set (the first ones of a larger source)",
                          range=Range(1, 100_000, integer=True, why="the natural-image set is "
                                      "cut patch by patch"))

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if "choices" in f.metadata and v not in f.metadata["choices"]:
                raise _bad(f.name, f"one of {f.metadata['choices']}", v)
            rng = f.metadata.get("range")
            if rng is None:
                continue
            if not rng.contains(v):
                raise _bad(f.name, rng.describe(), v, rng.why)
            if not rng.integer:  # store JSON-stable floats (1 -> 1.0)
                object.__setattr__(self, f.name, float(v))
        self._check_hidden()
        if isinstance(self.n_way, bool) or not isinstance(self.n_way, int) \
                or not 1 <= self.n_way <= self.N:
            raise _bad("n_way", f"an integer in 1..N={self.N}", self.n_way)
        if self.threshold_mode == "relative" and not 0.0 <= self.uncertainty_threshold <= 1.0:
            raise _bad("uncertainty_threshold", "in [0, 1] with --threshold-mode relative",
                       self.uncertainty_threshold)
        if self.data_dir is not None and (not isinstance(self.data_dir, str)
                                          or not self.data_dir.strip()):
            raise _bad("data_dir", "a directory path", self.data_dir)
        if self.dataset not in _BUNDLED and self.data_dir is None:
            raise ValueError(f"dataset {self.dataset!r} is read from IDX files: "
                             f"give --data-dir")
        if self.ood_fashion == "yes" and (self.data_dir is None
                                          or self.dataset == "fashion-mnist"):
            raise _bad("ood_fashion", "auto or no without --data-dir or with --dataset "
                       "fashion-mnist (the OoD images are read from --data-dir and must not be "
                       "the in-distribution set)", self.ood_fashion)

    def _check_hidden(self) -> None:
        h = self.hidden
        if not isinstance(h, tuple) or not 1 <= len(h) <= HIDDEN_LAYERS:
            raise _bad("hidden", f"a tuple of 1 to {HIDDEN_LAYERS} layer widths", h)
        for width in h:
            if not HIDDEN_WIDTH.contains(width):
                raise _bad("hidden", f"a tuple of widths, each {HIDDEN_WIDTH.describe()}", h,
                           HIDDEN_WIDTH.why)

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
        if isinstance(d.get("hidden"), list):
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
        kw: dict[str, Any] = {"default": None, "dest": f.name}
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        rng = f.metadata.get("range")
        bounds = f"{rng.span()}{': ' + rng.why if rng.why else ''}; " if rng else ""
        kw["help"] = f"{f.metadata['help']} ({bounds}default: {shown})"
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
        group.add_argument(flag_of(f.name), **kw)


#: The training recipe per (dataset, topology): the fields whose default differs from
#: :class:`Config`'s for that pair. The MNIST LeNet-5 recipe is the study's choice
#: (docs/METRICS.md, "The MNIST LeNet-5 recipe").
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist", "lenet5"): {"epochs": 30, "holdout_fraction": 0.1},
}


def recipe(dataset: str, topology: str) -> dict[str, Any]:
    """The defaults :data:`RECIPES` gives (dataset, topology); {} when it has none."""
    return dict(RECIPES.get((dataset, topology), {}))


def config_with_recipe(changes: dict[str, Any]) -> Config:
    """A :class:`Config` from explicit ``changes``; every field they leave out takes the recipe
    of their (dataset, topology) (:func:`recipe`), then :class:`Config`'s default."""
    base = Config()
    dataset = changes.get("dataset", base.dataset)
    topology = changes.get("topology", base.topology)
    return base.replace(**{**recipe(dataset, topology), **changes})


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Build a :class:`Config` from parsed flags; unset flags keep ``base``'s values, or
    without ``base`` the recipe of the chosen (dataset, topology) (:func:`config_with_recipe`).
    """
    changes = {f.name: getattr(args, f.name) for f in fields(Config)
               if getattr(args, f.name, None) is not None}
    if base is None:
        return config_with_recipe(changes)
    return base.replace(**changes)
