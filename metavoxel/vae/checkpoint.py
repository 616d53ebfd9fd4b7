"""A KL-VAE on disk — trained by `metavoxel train-vae` or imported by `metavoxel import-vae` — as a folder:
``vae.safetensors`` (the state dict) + ``vae.json`` (architecture, latent scale factor, what the autoencoder
expects of its input, provenance, metrics, and the sha256 of the weights). No pickle anywhere; both files are
written atomically.

``vae.json`` (format version 2)::

    {"format": "metavoxel-vae", "version": 2, "spatial_dims": 3, "channels": 1,
     "architecture": {VAESpec fields}, "scale_factor": 1.7 | null, "latent_std": 0.59 | null,
     "expects": {ExpectedInput fields} | null, "provenance": {...} | null,
     "metrics": {VAEReport.summary()}, "weights": "vae.safetensors", "weights_sha256": "<64 hex>"}

Version 2 made ``scale_factor`` optional (an imported VAE has none until `encode`/`train` compute it on a cohort,
`record_scale_factor`) and added ``expects`` and ``provenance`` (optional); version 1 folders are a subset and
read as they are, any other version is refused in one line.

The weights file is the plain state dict of the MONAI network, so the ``image_latent`` kind's ``weights:`` field
can point at it (or at the folder); ``weights_sha256`` is `weights_hash` and keys the latent cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from metavoxel.errors import CheckpointError, InputError
from metavoxel.io.atomic import write_atomic, write_text
from metavoxel.io.checkpoint_meta import finite_number, read_checkpoint_meta
from metavoxel.vae.architecture import VAESpec, build_vae
from metavoxel.vae.expected_input import ExpectedInput
from metavoxel.vae.report import VAEReport

__all__ = ["FORMAT", "META_FILE", "VAERecord", "VERSION", "WEIGHTS_FILE", "load_vae", "read_vae_record",
           "record_scale_factor", "recorded_scale_factor", "save_vae", "weights_hash"]

FORMAT, VERSION = "metavoxel-vae", 2
READS = (1, 2)  # version 1 lacks only the optional fields
WEIGHTS_FILE, META_FILE = "vae.safetensors", "vae.json"


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
    """(spatial dims, image channels) of a MONAI autoencoder, read from its encoder's first convolution."""
    encoder = getattr(vae, "encoder", None)
    first = next((m for m in encoder.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None) \
        if isinstance(encoder, torch.nn.Module) else None
    if first is None or not hasattr(vae, "decode"):
        raise InputError(f"save_vae expected a MONAI AutoencoderKL or AutoencoderKlMaisi, got {type(vae).__name__}; "
                         "build it with build_vae")
    return len(first.kernel_size), int(first.in_channels)


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
             report: VAEReport | None = None, *, unscaled: bool = False, expects: Mapping[str, Any] | None = None,
             provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``vae.safetensors`` then ``vae.json`` into ``directory`` (created if needed), each atomically.

    Args:
        directory: the checkpoint folder.
        vae: the MONAI autoencoder (``AutoencoderKL`` or ``AutoencoderKlMaisi``).
        vae_spec: its architecture (a ``VAESpec`` or its dict); checked against ``vae`` before writing.
        report: the `VAEReport` of `train_vae`; gives the scale factor and metrics (None: scale 1.0).
        unscaled: record no scale factor (an imported VAE; `encode`/`train` compute it on the user's cohort).
        expects: what the autoencoder expects of its input (`ExpectedInput` fields), or None.
        provenance: where the weights came from (source, file, its sha256, date, command), or None.

    Returns:
        the folder.

    Raises:
        InputError: the spec or ``expects`` does not validate, or the spec does not describe ``vae``.
    """
    try:
        spec = VAESpec.model_validate(vae_spec if isinstance(vae_spec, Mapping) else vae_spec.model_dump())
    except Exception as exc:
        raise InputError(f"vae_spec does not validate ({_one_line(exc)}); give the VAESpec the VAE was built "
                         "from") from None
    try:
        expected = None if expects is None else ExpectedInput.model_validate(dict(expects))
    except Exception as exc:
        raise InputError(f"expects does not validate ({_one_line(exc)}); give ExpectedInput fields") from None
    spatial_dims, channels = _geometry(vae)
    with torch.device("meta"):  # shapes only, no memory
        expected_state = build_vae(spatial_dims, channels, spec).state_dict()
    state = {k: v.detach().cpu().contiguous().clone() for k, v in vae.state_dict().items()}
    problem = _mismatch(state, expected_state)
    if problem:
        raise InputError(f"the VAE does not match vae_spec ({problem}); give the VAESpec it was built from")
    meta = {
        "format": FORMAT, "version": VERSION, "spatial_dims": spatial_dims, "channels": channels,
        "architecture": spec.model_dump(mode="json"),
        "scale_factor": None if unscaled else (report.scale_factor if report is not None else 1.0),
        "latent_std": report.latent_std if report is not None and not unscaled else None,
        "expects": None if expected is None else expected.model_dump(mode="json"),
        "provenance": None if provenance is None else dict(provenance),
        "metrics": report.summary() if report is not None else {},
        "weights": WEIGHTS_FILE, "weights_sha256": weights_hash(state),
    }
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Weights first: a crash between the two writes leaves a json whose hash disagrees, which load refuses.
    write_atomic(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
    _write_meta(directory, meta)
    return directory


def _write_meta(directory: Path, meta: Mapping[str, Any]) -> None:
    write_text(directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _valid_expects(value: Any) -> bool:
    if value is None:
        return True
    try:
        ExpectedInput.model_validate(value)
    except Exception:
        return False
    return True


def _read_meta(directory: Path) -> dict[str, Any]:
    return read_checkpoint_meta(directory, META_FILE, fmt=FORMAT, version=READS, what="VAE",
                                writer="`metavoxel train-vae` or `metavoxel import-vae`", checks=lambda meta: {
        "spatial_dims": lambda v: v in (2, 3),
        "channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "architecture": lambda v: isinstance(v, dict),
        "scale_factor": lambda v: v is None or (finite_number(v) and v > 0),
        "expects": _valid_expects,
        "provenance": lambda v: v is None or isinstance(v, dict),
        "weights_sha256": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
    })


@dataclass(frozen=True)
class VAERecord:
    """A VAE folder's ``vae.json``, as the ``image_latent`` kind reads it.

    Attributes:
        folder: the VAE folder; ``weights`` its ``vae.safetensors`` and ``meta_file`` its ``vae.json``.
        spatial_dims, channels: the geometry the VAE was built for.
        architecture: the `VAESpec` fields (validate with ``VAESpec.model_validate``).
        scale_factor: the latent scale factor, or None when none is recorded yet (an imported VAE).
        expects: the `ExpectedInput` fields, or None.
    """

    folder: Path
    weights: Path
    meta_file: Path
    spatial_dims: int
    channels: int
    architecture: dict[str, Any]
    scale_factor: float | None
    expects: dict[str, Any] | None


def vae_folder(weights: str | Path) -> Path:
    """The VAE folder of a ``weights:`` path: the path itself if it is a folder, else the folder holding it."""
    path = Path(weights)
    return path if path.is_dir() else path.parent


def read_vae_record(weights: str | Path) -> VAERecord | None:
    """The ``vae.json`` of a VAE folder, given the folder or its ``vae.safetensors`` (or any weights file beside a
    ``vae.json``); None when there is no ``vae.json`` there.

    Raises:
        CheckpointError: the ``vae.json`` is unreadable, of another format version, or invalid (one line).
    """
    folder = vae_folder(weights)
    if not (folder / META_FILE).is_file():
        return None
    meta = _read_meta(folder)
    scale = meta.get("scale_factor")
    return VAERecord(folder=folder, weights=folder / WEIGHTS_FILE if Path(weights).is_dir() else Path(weights),
                     meta_file=folder / META_FILE, spatial_dims=meta["spatial_dims"], channels=meta["channels"],
                     architecture=meta["architecture"], scale_factor=None if scale is None else float(scale),
                     expects=meta.get("expects"))


def recorded_scale_factor(weights: str | Path) -> tuple[float, Path] | None:
    """The latent scale factor recorded for a weights file in the ``vae.json`` beside it, and that file's path;
    None when there is no ``vae.json`` or it records no factor (see `read_vae_record`)."""
    record = read_vae_record(weights)
    if record is None or record.scale_factor is None:
        return None
    return record.scale_factor, record.meta_file


def record_scale_factor(directory: str | Path, scale_factor: float, latent_std: float,
                        source: Mapping[str, Any]) -> Path:
    """Record a latent scale factor computed on a cohort in a VAE folder's ``vae.json`` (rewritten atomically).

    Args:
        directory: the VAE folder.
        scale_factor: ``1 / latent_std``.
        latent_std: the standard deviation of the posterior means (`metavoxel.vae.evaluation.latent_scale_factor`).
        source: what it was computed on (cohort, split, number of images, date), stored as ``scale_factor_source``.

    Raises:
        CheckpointError: the folder holds no valid ``vae.json``.
        InputError: a factor that is not a positive finite number.
    """
    if not (finite_number(scale_factor) and scale_factor > 0):
        raise InputError(f"scale_factor must be a positive finite number, got {scale_factor!r}")
    directory = Path(directory)
    meta = _read_meta(directory)
    meta.update(version=VERSION, scale_factor=float(scale_factor), latent_std=float(latent_std),
                scale_factor_source=dict(source))
    meta.setdefault("expects", None)
    meta.setdefault("provenance", None)
    _write_meta(directory, meta)
    return directory / META_FILE


def load_vae(directory: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the VAE from ``vae.json`` and load ``vae.safetensors``, refusing any mismatch.

    Returns:
        ``(vae, meta)``: the autoencoder in eval mode on ``device``, and the parsed ``vae.json``.

    Raises:
        CheckpointError: a missing/unreadable file, an invalid field, weights whose names or shapes do not fit
            the architecture, or weights whose sha256 differs from the one recorded (one line each).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = _read_meta(directory)
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
