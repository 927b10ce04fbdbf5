"""Command-line flags shared by several ``spinbayes`` subcommands, each declared once.

The experiment flags come from :class:`spinbayes.config.Config`
(:func:`spinbayes.config.add_config_arguments`); the flags here are the run options around
them: output directory, progress, torch threads, simulator, checkpoint.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from .config import Config

__all__ = ["SIMULATOR_CHOICES", "add_checkpoint", "add_common", "add_simulator",
           "config_changes"]

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


def add_checkpoint(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--checkpoint", required=required,
                   help="checkpoint directory (from train)" + ("" if required else
                                                                "; default: train one"))


def config_changes(args: argparse.Namespace) -> dict:
    """The Config fields given explicitly on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(Config)
            if getattr(args, f.name, None) is not None}
