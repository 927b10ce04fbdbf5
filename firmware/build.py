"""From a trained checkpoint to a firmware image on disk.

checkpoint + design parameters -> the workflow's mapped model
(:func:`spinbayes.workflow.load`, :func:`spinbayes.workflow.map_trained`: N samples per layer,
eq. 3, BatchNorm re-calibrated, the integer network) ->
:func:`~spinbayes.firmware.compiler.compile_network` ->
:func:`~spinbayes.firmware.image.save_image`.

The network is the one ``spinbayes eval``'s hardware mode measures: the same workflow calls
with the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..rtl.params import RtlParams, params_from_json
from .compiler import Program, compile_network
from .image import save_image

__all__ = ["CompiledCheckpoint", "build_image", "compile_checkpoint", "params_from_json"]


@dataclass
class CompiledCheckpoint:
    """A compiled checkpoint: the program, the integer reference it implements, and the
    provenance written into the image's manifest (``meta``)."""

    program: Program
    hw: object            # spinbayes.golden.hardware.HwNetwork
    params: RtlParams
    meta: dict


def compile_checkpoint(checkpoint, params: RtlParams | None = None, *, T: int | None = None,
                       seed: int | None = None, n_way: int | None = None,
                       data=None, progress: bool = False) -> CompiledCheckpoint:
    """Compile a checkpoint directory for a design of ``params`` (default: RtlParams()).

    T, n_way: default the checkpoint's Config; seed: the RNG seed of the arbiters' emulated
    devices (default the Config's seed). ``data``: the data set for BatchNorm
    re-calibration (default: loaded from the Config, as ``spinbayes eval`` does).
    """
    from ..workflow import load, map_trained

    params = params or RtlParams()
    trained = load(checkpoint, data=data)
    manifest, cfg, data = trained.manifest, trained.cfg, trained.data
    T = cfg.T if T is None else T
    seed = cfg.seed if seed is None else seed
    n_way = cfg.n_way if n_way is None else n_way
    if not isinstance(n_way, int) or not 1 <= n_way <= cfg.N:
        raise ValueError(f"n_way must be an integer in 1..N={cfg.N}, not {n_way!r}")
    if cfg.activation != "comparator":
        raise ValueError(f"{checkpoint}: activation {cfg.activation!r}; the core implements "
                         f"comparator activations only")
    if cfg.N != params.N or cfg.Q != params.Q:
        raise ValueError(f"the checkpoint maps onto N={cfg.N} crossbars of Q={cfg.Q} bits, "
                         f"the design has N={params.N}, Q={params.Q}")
    shape = tuple(manifest["image_shape"])
    if tuple(data.x_train.shape[1:]) != shape:
        raise ValueError(f"{checkpoint}: trained on images of shape {shape}, the data set has "
                         f"{tuple(data.x_train.shape[1:])}")
    mapped = map_trained(trained, progress=progress)
    hw = mapped.hw(n_way, R=params.R)
    program = compile_network(hw, params, T=T, seed=seed)
    meta = {"checkpoint": str(Path(checkpoint).resolve()),
            "checkpoint_sha256": manifest.get("sha256"), "config": cfg.to_dict(),
            "image_shape": list(shape), "n_way": n_way, "input_bits": hw.input_bits,
            "recal_batches": cfg.recal_batches, "approximation_seed": cfg.seed,
            "rng_seed": seed}
    return CompiledCheckpoint(program, hw, params, meta)


def build_image(checkpoint, out_dir, params: RtlParams | None = None, **kw
                ) -> tuple[Path, CompiledCheckpoint]:
    """:func:`compile_checkpoint`, then :func:`save_image` into ``out_dir`` (atomically)."""
    compiled = compile_checkpoint(checkpoint, params, **kw)
    path = save_image(compiled.program, compiled.params, out_dir, meta=compiled.meta)
    return path, compiled
