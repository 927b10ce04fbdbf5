"""Energy model of section 4.3.1: the per-operation energies of Table 4 and what each is
charged per.

The paper gives one dynamic energy per circuit (Table 4) but not the operation each figure is
charged per. This module makes that reading explicit (docs/ENERGY.md) and switchable where
two readings are plausible:

* **memory** (decoding / sensing, 4.71 pJ): ``per="read"`` (default), one read of R rows x
  all columns of one crossbar (read decoder, bit-line drive and ADC sensing), the RTL's
  ``cnt_xbar_reads``; or ``per="mvm"``, one whole matrix-vector product of one crossbar
  (all rows and bit-planes of one input vector at once, as an analog array with multi-bit
  DACs would do it).
* **rng** (spintronic RNG, 3.80 pJ): ``per="draw"`` (default), one k-bit code drawn by the
  arbiter's k devices in parallel, rejected codes included (``cnt_rng_draws``); or
  ``per="device"``, one device switching attempt (k per draw).
* **averaging** (18.42 pJ): ``per="op"`` (default), the RTL's ``cnt_avg_ops``: one
  multiply-add y_c = M_c S_c + B_c per class and pass plus one division per class and
  image; or ``per="image"``, the whole block once per image.
* **aac** (adder-accumulator, 0.06 pJ): per accumulate of one read (all columns in
  parallel), ``cnt_aac_ops``.
* **comparator** (0.01 pJ): per comparison of one neuron with one threshold,
  ``cnt_cmp_ops``.

:mod:`spinbayes.golden.energy` charges these energies to operation counts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["BLOCKS", "COUNTER_OF", "PAPER_TABLE4", "READINGS", "EnergyModel",
           "load_energy_model"]

#: The blocks of Table 4, in report order.
BLOCKS = ("memory", "rng", "averaging", "aac", "comparator")
#: Table 4 of the paper: dynamic energy per operation, pJ (TSMC 40 nm; arbiter and memory at
#: circuit level).
PAPER_TABLE4 = {"memory": 4.71, "rng": 3.80, "averaging": 18.42, "aac": 0.06,
                "comparator": 0.01}
#: The operations each block may be charged per; the first is the default reading.
READINGS = {"memory": ("read", "mvm"), "rng": ("draw", "device"),
            "averaging": ("op", "image"), "aac": ("read",), "comparator": ("comparison",)}
#: The RTL activity counter that counts each block's default operation.
COUNTER_OF = {"memory": "cnt_xbar_reads", "rng": "cnt_rng_draws", "averaging": "cnt_avg_ops",
              "aac": "cnt_aac_ops", "comparator": "cnt_cmp_ops"}


@dataclass(frozen=True)
class EnergyModel:
    """Per-operation energies (pJ) and the operation each is charged per (:data:`READINGS`)."""

    pj: dict = field(default_factory=lambda: dict(PAPER_TABLE4))
    per: dict = field(default_factory=lambda: {b: r[0] for b, r in READINGS.items()})
    source: str = "paper Table 4"

    def __post_init__(self):
        for what, d in (("energy", self.pj), ("reading", self.per)):
            if not isinstance(d, dict):
                raise ValueError(f"{what} table must be a dict keyed by block, not {d!r}")
            unknown = set(d) - set(BLOCKS)
            if unknown:
                raise ValueError(f"unknown {what} block(s) {sorted(unknown)}; the blocks are "
                                 f"{list(BLOCKS)}")
            missing = set(BLOCKS) - set(d)
            if missing:
                raise ValueError(f"{what} table is missing block(s) {sorted(missing)}")
        for b, v in self.pj.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"energy of {b!r} must be a finite number >= 0 pJ, not {v!r}")
        for b, r in self.per.items():
            if r not in READINGS[b]:
                raise ValueError(f"{b!r} can be charged per {list(READINGS[b])}, not {r!r}")

    def with_reading(self, **per) -> EnergyModel:
        """The same energies charged per other operations, e.g. ``with_reading(memory="mvm")``."""
        return replace(self, per={**self.per, **per})

    def to_dict(self) -> dict:
        return {"pj": dict(self.pj), "per": dict(self.per), "source": self.source}


def load_energy_model(path: str | os.PathLike) -> EnergyModel:
    """Read an energy table from JSON (``.json``) or TOML (``.toml``).

    Each key is a block of :data:`BLOCKS`; its value is the energy in pJ, or a table
    ``{"pj": 4.71, "per": "read"}``. Blocks left out keep the paper's Table 4 value and
    default reading. Unknown blocks or fields, negative / NaN / non-numeric energies and
    unknown readings raise ValueError naming the file; a missing file raises
    FileNotFoundError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"energy table {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except (ValueError, json.JSONDecodeError) as e:   # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"energy table {path}: cannot parse ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"energy table {path}: expected an object of blocks {list(BLOCKS)}")
    pj, per = dict(PAPER_TABLE4), {b: r[0] for b, r in READINGS.items()}
    for block, v in raw.items():
        if block not in BLOCKS:
            raise ValueError(f"energy table {path}: unknown block {block!r}; the blocks are "
                             f"{list(BLOCKS)}")
        if isinstance(v, dict):
            extra = set(v) - {"pj", "per"}
            if extra or "pj" not in v:
                raise ValueError(f"energy table {path}: block {block!r} takes the fields "
                                 f"'pj' (required) and 'per', not {sorted(v)}")
            pj[block] = v["pj"]
            if "per" in v:
                per[block] = v["per"]
        else:
            pj[block] = v
    try:
        return EnergyModel(pj, per, source=str(path))
    except ValueError as e:
        raise ValueError(f"energy table {path}: {e}") from None

