"""Command-line flags shared by several ``spinbayes`` subcommands, each declared once.

The experiment flags come from :class:`spinbayes.config.Config`
(:func:`spinbayes.config.add_config_arguments`); the flags here are the run options around
them: output directory, progress, torch threads, simulator, checkpoint.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from .config import Config

__all__ = ["ADAPTIVE_CHOICES", "SIMULATOR_CHOICES", "adaptive_settings", "add_adaptive",
           "add_checkpoint", "add_common", "add_simulator", "config_changes"]

#: The cocotb simulators (spinbayes.sim.runner.SIMULATORS, repeated here so that building
#: the parser imports nothing heavy; tests/cli checks that the two agree).
SIMULATOR_CHOICES = ("icarus", "verilator")


def add_common(p: argparse.ArgumentParser, out_default: str | None) -> None:
    """--out (required when ``out_default`` is None), --quiet and --threads."""
    p.add_argument("--out", default=out_default, required=out_default is None,
                   help="output directory" + (f" (default: {out_default})"
                                              if out_default else ""))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for every stage (default: torch's choice, "
                   "recorded in the run's manifest; float results depend on it)")


def add_simulator(p: argparse.ArgumentParser, default_text: str) -> None:
    """--simulator; ``default_text`` says what None means for this subcommand."""
    p.add_argument("--simulator", choices=SIMULATOR_CHOICES, default=None,
                   help=f"cocotb simulator (default: $SPINBAYES_SIM if set, else "
                   f"{default_text}; the other one when that is not installed)")


#: Range of --health-alpha-bits: the RCT cutoff 1 + B (H = 1) must fit the core's 8-bit
#: register, and α = 2^-B must stay a probability the binomial quantiles resolve.
HEALTH_ALPHA_BITS = (8, 64)


def add_health(p: argparse.ArgumentParser) -> None:
    """--health-alpha-bits: the false-alarm rate of the cores' RNG health tests."""
    lo, hi = HEALTH_ALPHA_BITS
    p.add_argument("--health-alpha-bits", type=int, default=20, metavar="B",
                   help=f"the RNG health tests' false-alarm probability alpha = 2^-B per "
                   f"sample ({lo}..{hi}; default 20, SP 800-90B's suggestion: at 20 an N = 5 "
                   f"arbiter raises a false alarm about once per 420,000 draws, so raise it "
                   f"for runs over thousands of images; docs/RELIABILITY.md)")


def health_cutoffs(bits: int):
    """The health tests' cutoffs at α = 2^-``bits`` (H = 1), or a ValueError naming the flag."""
    from .golden.health import Cutoffs

    lo, hi = HEALTH_ALPHA_BITS
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(f"--health-alpha-bits must be an integer in {lo}..{hi}, not {bits!r}")
    return Cutoffs.derive(alpha=2.0 ** -bits)


#: The adaptive-T rules (golden.adaptive.RULES, repeated so that the parser imports nothing
#: heavy).
ADAPTIVE_CHOICES = ("off", "exact", "confidence")


def add_adaptive(p: argparse.ArgumentParser) -> None:
    """--adaptive, --t-min, --confidence-threshold: the core's early stop (docs/HARDWARE.md,
    "Adaptive T")."""
    p.add_argument("--adaptive", choices=ADAPTIVE_CHOICES, default="off",
                   help="stop an image's passes early: exact (only once the class of T passes "
                   "can no longer change), confidence (once the leading class's share of the "
                   "per-pass votes reaches --confidence-threshold) or off (default: T passes)")
    p.add_argument("--t-min", type=int, default=1, metavar="K",
                   help="adaptive T: the fewest passes an image runs (1..T, default 1)")
    p.add_argument("--confidence-threshold", type=float, default=0.9, metavar="X",
                   help="confidence rule: the vote share in [0, 1] that stops an image "
                   "(stored as ceil(X * 256); default 0.9)")


def adaptive_settings(rule: str, t_min: int, threshold: float, T: int | None = None
                      ) -> tuple[str, int, int]:
    """(rule, T_min, threshold register) of the adaptive flags, or a ValueError naming the
    flag; ``T``: the passes per image, T_min's upper bound (None: not checked)."""
    from .golden.adaptive import AdaptiveT

    if rule not in ADAPTIVE_CHOICES:
        raise ValueError(f"--adaptive must be one of {', '.join(ADAPTIVE_CHOICES)}, not "
                         f"{rule!r}")
    if isinstance(t_min, bool) or not isinstance(t_min, int) or t_min < 1:
        raise ValueError(f"--t-min must be a positive integer, not {t_min!r}")
    if T is not None and t_min > T:
        raise ValueError(f"--t-min must lie in 1..T={T}, not {t_min!r}")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:      # also NaN
        raise ValueError(f"--confidence-threshold must be a vote share in [0, 1], not "
                         f"{threshold!r}")
    return rule, t_min, AdaptiveT.threshold_for(value)


def add_checkpoint(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--checkpoint", required=required,
                   help="checkpoint directory (from train)" + ("" if required else
                                                                "; default: train one"))


def config_changes(args: argparse.Namespace) -> dict:
    """The Config fields given explicitly on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(Config)
            if getattr(args, f.name, None) is not None}
