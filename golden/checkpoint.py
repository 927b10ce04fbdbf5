"""Checkpoints and crossbar images on disk: safetensors plus a small JSON manifest.

A checkpoint is a directory with two files:

* ``model.safetensors`` (:data:`CHECKPOINT_WEIGHTS`): the posterior (mu, rho) and the
  BatchNorm state of a trained :class:`~spinbayes.golden.networks.BayesNet`;
* ``manifest.json`` (:data:`CHECKPOINT_MANIFEST`): format name and version, the full
  :class:`~spinbayes.config.Config` (topology, Q, N, seed, data, ...), the data shape, the
  SHA-256 of the weights file and the training history.

Each manifest also carries ``manifest_sha256``, the SHA-256 of all its other entries
(:func:`manifest_checksum`), so a manifest edited by hand (its configuration, data shape,
layer scales, ...) is refused on load instead of silently changing the results.

Crossbar images (the in-memory approximation) are stored the same way in
``crossbars.safetensors`` / ``crossbars.json``. Every file is written by
:func:`~spinbayes.golden.contract.atomic_write` (re-exported here) to a temporary file in the
same directory and renamed into place, so a crash never leaves a half-written file
under the final name; the manifest is written last and names the weights' checksum, so a
manifest never points at weights it was not written with. Loading checks format, version,
checksum and tensor names, and names the file and the problem when one is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..config import Config
from .approximation import CrossbarImages, CrossbarLayer
from .contract import atomic_write
from .networks import BayesNet, build_model

__all__ = [
    "CHECKPOINT_MANIFEST",
    "CHECKPOINT_WEIGHTS",
    "CROSSBAR_MANIFEST",
    "CROSSBAR_WEIGHTS",
    "FORMAT_VERSION",
    "MANIFEST_CHECKSUM",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "load_crossbar_images",
    "manifest_checksum",
    "read_manifest",
    "save_checkpoint",
    "save_crossbar_images",
]

#: Weights of a trained model; written by :func:`save_checkpoint`, read by :func:`load_checkpoint`.
CHECKPOINT_WEIGHTS = "model.safetensors"
#: Manifest of a trained model; written last by :func:`save_checkpoint`.
CHECKPOINT_MANIFEST = "manifest.json"
#: Crossbar images; written by :func:`save_crossbar_images`, read by firmware and
#: :func:`load_crossbar_images`.
CROSSBAR_WEIGHTS = "crossbars.safetensors"
#: Manifest of the crossbar images (shapes, N, Q, scales, checksum).
CROSSBAR_MANIFEST = "crossbars.json"
#: Bumped whenever the layout of either file pair changes incompatibly.
FORMAT_VERSION = 2
#: The manifest entry that holds the checksum of all the other entries.
MANIFEST_CHECKSUM = "manifest_sha256"


class CheckpointError(ValueError):
    """A checkpoint or crossbar-image file is missing, corrupt or of the wrong format."""


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of every entry of ``manifest`` but :data:`MANIFEST_CHECKSUM`, in a canonical
    JSON form (sorted keys, no spaces), so it survives writing and reading the file."""
    rest = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    canonical = json.dumps(json.loads(json.dumps(rest)), sort_keys=True, separators=(",", ":"))
    return _sha256(canonical.encode())


def _write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` with its checksum (:func:`manifest_checksum`)."""
    signed = {**manifest, MANIFEST_CHECKSUM: manifest_checksum(manifest)}
    atomic_write(path, json.dumps(signed, indent=2))


def _read_manifest(path: Path, fmt: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: manifest not found")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: manifest is not valid JSON ({e})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != fmt:
        raise CheckpointError(f"{path}: not a {fmt} manifest (format={found!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {manifest.get('version')!r} is not "
                              f"supported (this code reads version {FORMAT_VERSION})")
    if manifest.get(MANIFEST_CHECKSUM) != manifest_checksum(manifest):
        raise CheckpointError(f"{path}: the manifest does not match its checksum "
                              f"({MANIFEST_CHECKSUM}): it was edited or corrupted after it was "
                              f"written; write it again rather than editing it")
    return manifest


def _read_tensors(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    raw = path.read_bytes()
    if _sha256(raw) != sha256:
        raise CheckpointError(f"{path}: checksum mismatch (file is truncated or corrupt, "
                              f"or does not belong to its manifest)")
    try:
        return st_load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def save_checkpoint(directory: str | os.PathLike, model: BayesNet, cfg: Config, *,
                    image_shape: tuple[int, int, int], num_classes: int,
                    history: list | None = None, provenance: dict | None = None) -> Path:
    """Write ``model`` and its configuration to ``directory``; returns the directory.
    ``provenance``: what else decides the weights (torch threads, package versions, the
    data set's checksum; :func:`spinbayes.workflow.provenance`)."""
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    raw = st_save(tensors)
    atomic_write(directory / CHECKPOINT_WEIGHTS, raw)
    manifest = {
        "format": "spinbayes-checkpoint", "version": FORMAT_VERSION,
        "config": cfg.to_dict(), "image_shape": list(image_shape),
        "num_classes": num_classes, "weights": CHECKPOINT_WEIGHTS, "sha256": _sha256(raw),
        "history": history or [], "provenance": provenance or {},
    }
    _write_manifest(directory / CHECKPOINT_MANIFEST, manifest)
    return directory


def read_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of the checkpoint in ``directory`` (format and version checked), without
    loading its weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    return _read_manifest(directory / CHECKPOINT_MANIFEST, "spinbayes-checkpoint")


def load_checkpoint(directory: str | os.PathLike) -> tuple[BayesNet, Config, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: (model, config, manifest)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    manifest = _read_manifest(directory / CHECKPOINT_MANIFEST, "spinbayes-checkpoint")
    try:
        cfg = Config.from_dict(manifest["config"])
        image_shape = tuple(manifest["image_shape"])
        num_classes = int(manifest["num_classes"])
        sha = manifest["sha256"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CHECKPOINT_MANIFEST}: bad manifest ({e})") from None
    tensors = _read_tensors(directory / CHECKPOINT_WEIGHTS, sha)
    model = build_model(cfg, image_shape, num_classes)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{directory / CHECKPOINT_WEIGHTS}: tensors do not match the "
                              f"manifest's topology ({e})") from None
    model.eval()
    return model, cfg, manifest


def save_crossbar_images(directory: str | os.PathLike, images: CrossbarImages) -> Path:
    """Write the crossbar images (int8 codes per layer) and their manifest."""
    directory = Path(directory)
    tensors = {f"layer{i}.weights": layer.weights.contiguous()
               for i, layer in enumerate(images.layers)}
    raw = st_save(tensors)
    atomic_write(directory / CROSSBAR_WEIGHTS, raw)
    manifest = {
        "format": "spinbayes-crossbars", "version": FORMAT_VERSION,
        "N": images.N, "Q": images.Q, "seed": images.seed, "sha256": _sha256(raw),
        "layers": [{"kind": layer.kind, "shape": list(layer.weights.shape),
                    "scale": layer.scale, "stride": layer.stride, "padding": layer.padding}
                   for layer in images.layers],
    }
    _write_manifest(directory / CROSSBAR_MANIFEST, manifest)
    return directory


def load_crossbar_images(directory: str | os.PathLike) -> CrossbarImages:
    """Read crossbar images written by :func:`save_crossbar_images`, checking every size."""
    directory = Path(directory)
    mpath = directory / CROSSBAR_MANIFEST
    manifest = _read_manifest(mpath, "spinbayes-crossbars")
    tensors = _read_tensors(directory / CROSSBAR_WEIGHTS, manifest.get("sha256", ""))
    layers = []
    try:
        for i, spec in enumerate(manifest["layers"]):
            w = tensors[f"layer{i}.weights"]
            if list(w.shape) != spec["shape"]:
                raise CheckpointError(f"{directory / CROSSBAR_WEIGHTS}: layer {i} has shape "
                                      f"{list(w.shape)}, the manifest says {spec['shape']}")
            layers.append(CrossbarLayer(spec["kind"], w, float(spec["scale"]),
                                        int(manifest["Q"]), int(spec["stride"]),
                                        int(spec["padding"])))
        return CrossbarImages(layers, int(manifest["N"]), int(manifest["Q"]),
                              int(manifest["seed"]))
    except KeyError as e:
        raise CheckpointError(f"{mpath}: missing entry {e}") from None
    except ValueError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{mpath}: {e}") from None
