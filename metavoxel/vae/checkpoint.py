"""A trained KL-VAE on disk: ``vae.safetensors`` (the state dict) + ``vae.json`` (architecture, latent scale
factor, metrics, and the sha256 of the weights). No pickle anywhere; both files are written atomically.

``vae.json``::

    {"format": "metavoxel-vae", "version": 1, "spatial_dims": 3, "channels": 1,
     "architecture": {VAESpec fields}, "scale_factor": 1.7, "latent_std": 0.59,
     "metrics": {VAEReport.summary()}, "weights": "vae.safetensors", "weights_sha256": "<64 hex>"}

The weights file is plain ``AutoencoderKL.state_dict()``, so the ``image_latent`` kind's ``weights:`` field
can point at it directly; ``weights_sha256`` is `weights_hash` and keys the latent cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from metavoxel.errors import CheckpointError, InputError
from metavoxel.io.atomic import write_atomic, write_text
from metavoxel.io.checkpoint_meta import finite_number, read_checkpoint_meta
from metavoxel.vae.report import VAEReport

__all__ = ["FORMAT", "META_FILE", "VERSION", "WEIGHTS_FILE", "load_vae", "recorded_scale_factor", "save_vae",
           "weights_hash"]

FORMAT, VERSION = "metavoxel-vae", 1
WEIGHTS_FILE, META_FILE = "vae.safetensors", "vae.json"


def _architecture():
    # VAESpec/build_vae live with the image_latent kind for now; imported lazily so the core never
    # imports a plugin at import time (to move into metavoxel's public API).
    from metavoxel.vae.architecture import VAESpec, build_vae

    return VAESpec, build_vae


def weights_hash(vae: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over the state dict: for each tensor in sorted key order, its name, dtype, shape and bytes.

    Stable across `save_vae` / `load_vae` (safetensors keeps dtypes and values bit-exact) and across
    devices; any changed value, shape, dtype or name changes it.
    """
    state = vae.state_dict() if isinstance(vae, torch.nn.Module) else vae
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # the first error with its field path
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or '<root>'}: {first['msg']}"
    return " ".join(str(exc).split())


def _geometry(vae: torch.nn.Module) -> tuple[int, int]:
    encoder = getattr(vae, "encoder", None)
    if not hasattr(encoder, "spatial_dims") or not hasattr(encoder, "in_channels"):
        raise InputError(f"save_vae expected a MONAI AutoencoderKL, got {type(vae).__name__}; build it with "
                         "build_vae")
    return int(encoder.spatial_dims), int(encoder.in_channels)


def _mismatch(state: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """A one-line description of how ``state`` differs from ``expected`` (names and shapes), or None."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        return (f"{len(missing)} missing tensors, {len(unexpected)} unexpected "
                f"(e.g. {(missing or unexpected)[0]!r})")
    for key in sorted(expected):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            return f"tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
    return None


def save_vae(directory: str | Path, vae: torch.nn.Module, vae_spec: Mapping[str, Any] | Any,
             report: VAEReport | None = None, *, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``vae.safetensors`` then ``vae.json`` into ``directory`` (created if needed), each atomically.

    Args:
        directory: the checkpoint folder.
        vae: the trained MONAI ``AutoencoderKL``.
        vae_spec: its architecture (a ``VAESpec`` or its dict); checked against ``vae`` before writing.
        report: the `VAEReport` of `train_vae`; gives the scale factor and metrics (None: scale 1.0).
        provenance: where the weights come from (JSON-ready), kept as ``provenance`` in vae.json.

    Returns:
        the folder.

    Raises:
        InputError: the spec does not validate or does not describe ``vae``.
    """
    VAESpec, build_vae = _architecture()
    try:
        spec = VAESpec.model_validate(vae_spec if isinstance(vae_spec, Mapping) else vae_spec.model_dump())
    except Exception as exc:
        raise InputError(f"vae_spec does not validate ({_one_line(exc)}); give the VAESpec the VAE was built "
                         "from") from None
    spatial_dims, channels = _geometry(vae)
    with torch.device("meta"):  # shapes only, no memory
        expected = build_vae(spatial_dims, channels, spec).state_dict()
    state = {k: v.detach().cpu().contiguous().clone() for k, v in vae.state_dict().items()}
    problem = _mismatch(state, expected)
    if problem:
        raise InputError(f"the VAE does not match vae_spec ({problem}); give the VAESpec it was built from")
    digest = weights_hash(state)
    meta = {
        "format": FORMAT, "version": VERSION, "spatial_dims": spatial_dims, "channels": channels,
        "architecture": spec.model_dump(mode="json"),
        "scale_factor": report.scale_factor if report is not None else 1.0,
        "latent_std": report.latent_std if report is not None else None,
        "metrics": report.summary() if report is not None else {},
        "weights": WEIGHTS_FILE, "weights_sha256": digest,
    }
    if provenance is not None:
        meta["provenance"] = dict(provenance)
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Weights first: a crash between the two writes leaves a json whose hash disagrees, which load refuses.
    write_atomic(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
    write_text(directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return directory


def _read_meta(directory: Path) -> dict[str, Any]:
    return read_checkpoint_meta(directory, META_FILE, fmt=FORMAT, version=VERSION, what="VAE",
                                writer="`metavoxel train-vae` (save_vae)", checks=lambda meta: {
        "spatial_dims": lambda v: v in (2, 3),
        "channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "architecture": lambda v: isinstance(v, dict),
        "scale_factor": lambda v: finite_number(v) and v > 0,
        "weights_sha256": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
    })


def recorded_scale_factor(weights: str | Path) -> tuple[float, Path] | None:
    """The latent scale factor `metavoxel train-vae` recorded for a weights file, read from the ``vae.json``
    beside it, and that file's path; None when the weights have no ``vae.json`` beside them.

    Raises:
        CheckpointError: the ``vae.json`` is unreadable or invalid (one line, naming it).
    """
    directory = Path(weights).parent
    if not (directory / META_FILE).is_file():
        return None
    return float(_read_meta(directory)["scale_factor"]), directory / META_FILE


def load_vae(directory: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the VAE from ``vae.json`` and load ``vae.safetensors``, refusing any mismatch.

    Returns:
        ``(vae, meta)``: the ``AutoencoderKL`` in eval mode on ``device``, and the parsed ``vae.json``.

    Raises:
        CheckpointError: a missing/unreadable file, an invalid field, weights whose names or shapes do not fit
            the architecture, or weights whose sha256 differs from the one recorded (one line each).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = _read_meta(directory)
    VAESpec, build_vae = _architecture()
    try:
        spec = VAESpec.model_validate(meta["architecture"])
    except Exception as exc:
        raise CheckpointError(f"{str(directory / META_FILE)!r}: architecture does not validate ({_one_line(exc)}); "
                              "re-save the VAE") from None
    vae = build_vae(meta["spatial_dims"], meta["channels"], spec)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} beside {META_FILE} in {str(directory)!r}; the checkpoint is "
                              "incomplete — re-save the VAE")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{str(weights)!r} is not a readable .safetensors file ({_one_line(exc)}); "
                              "re-save the VAE") from None
    problem = _mismatch(state, vae.state_dict())
    if problem:
        raise CheckpointError(f"{str(weights)!r} does not fit the architecture in {META_FILE} ({problem}); the two "
                              "files come from different VAEs — re-save the VAE")
    digest = weights_hash(state)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(f"{str(weights)!r} has sha256 {digest[:12]}…, {META_FILE} records "
                              f"{meta['weights_sha256'][:12]}…; the files come from different saves — "
                              "re-save the VAE")
    vae.load_state_dict(state)
    return vae.eval().to(device), meta
