"""numpy values in JSON: the ``default=`` hook of :func:`json.dump` used by every writer.

Kept free of torch and cocotb, so that both the cocotb testbenches (sim/) and the main job's
pipeline import it cheaply.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(o):
    """numpy scalars and arrays as Python numbers and lists; TypeError for anything else."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
