"""Run directories: what `metavoxel train` writes and sampling, prediction and evaluation read.

Layout of a run directory::

    spec.json            the full ModelSpec, metavoxel's version and the plugins (distribution, version) per kind
    model.safetensors    EMA weights of the whole model (network and frozen encoders): what sampling uses
    best.safetensors     EMA weights at the best validation loss
    train.json           the training settings, the cohort it was read from and the training split's means
    metrics.jsonl        one JSON object per logged step
    splits.json          subjects per split (when trained from a cohort)
    MODEL_CARD.md        intended use, data, variables, training and validation figures
    state.json           pointer to the newest complete training state (see `metavoxel.training.checkpoint`)
    calibration.json     typicality reference and bias corrections from the validation split
    calibration.safetensors  the typicality reference's image loss maps (named and sealed by calibration.json)
                         (`metavoxel.workflows.calibrate`; written at the end of training or by `calibrate`)

This module reads and writes the spec and the weights (safetensors + JSON, never pickle); it does not import
the trainer, so sampling and evaluation load a run without it. The resumable training state lives in
`metavoxel.training.checkpoint`.

A model is what it was trained as: the weights are *sealed* with the spec they were trained with — the
SHA-256 of its canonical JSON (`spec_digest`) in the safetensors metadata of model.safetensors,
best.safetensors and the training state — and `load_run` refuses a spec.json whose digest differs, so a
hand-edited spec (swapped categories, a widened range) cannot relabel or shift a model's answers while its
tensors still fit. Weights written before runs were sealed load with a `RunWarning`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError, PluginError
from metavoxel.io.atomic import write_atomic, write_json
from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.spec import ModelSpec

__all__ = ["RUN_FILES", "SEAL_KEY", "SPEC_FILE", "RunWarning", "WEIGHTS_FILE", "check_fits", "check_seal", "load_run",
           "load_weights", "read_saved_spec", "run_inputs", "save_spec", "save_weights", "spec_digest", "weights_seal"]

SPEC_FILE, WEIGHTS_FILE = "spec.json", "model.safetensors"
# every file of a run directory (besides its state-*/ folders): what a command's output must never replace
RUN_FILES = (SPEC_FILE, WEIGHTS_FILE, "best.safetensors", "splits.json", "train.json", "metrics.jsonl", "MODEL_CARD.md",
             "state.json", "calibration.json", "calibration.safetensors")
SEAL_KEY = "metavoxel.spec_sha256"  # safetensors metadata: the digest of the spec the weights were trained with


class RunWarning(UserWarning):
    """A run that loads but cannot be fully checked (weights written before runs were sealed)."""


def spec_digest(spec: ModelSpec | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a spec's canonical JSON: keys sorted, no whitespace; a `ModelSpec` as ``to_dict`` gives it.

    The same for the spec a model was built from and the ``spec`` object of the spec.json saved from it.
    """
    data = spec.to_dict() if isinstance(spec, ModelSpec) else spec
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_inputs(run_dir: str | Path, option: str = "--model") -> list[tuple[str, Path]]:
    """``(what, path)`` of every file of a run directory, for `metavoxel.io.outputs.check_outputs`: a command that
    reads a run writes over none of them."""
    return [(f"{option} ({name})", Path(run_dir) / name) for name in RUN_FILES]


def save_spec(run_dir: Path, model: Any) -> None:
    """spec.json: the spec plus what built it (metavoxel version, plugin distribution per kind)."""
    import metavoxel

    registry = default_registry()
    plugins = {}
    for v in model.spec.variables:
        origin = registry.origin(v.kind) if v.kind in registry else None
        plugins[v.kind] = {"distribution": origin.distribution, "version": origin.version} if origin else {}
    write_json(run_dir / SPEC_FILE, {"metavoxel": metavoxel.__version__, "plugins": plugins,
                                     "spec": model.spec.to_dict()})


def save_weights(path: Path, state: dict[str, torch.Tensor], *, spec: ModelSpec | None = None) -> None:
    """Write a state dict as safetensors (atomically); with ``spec``, sealed with its `spec_digest`."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {SEAL_KEY: spec_digest(spec)} if spec is not None else None
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def weights_seal(path: Path) -> str | None:
    """The spec digest sealed into a safetensors file (None: written unsealed); CheckpointError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(SEAL_KEY)
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path} is not a readable .safetensors file ({exc}); retrain or restore it") from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the run has no weights yet (train it first)")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path} is not a readable .safetensors file ({exc}); retrain or restore it") from None


def load_run(run_dir: str | Path, *, registry: Registry | None = None, weights: str = "model"):
    """The trained `JointModel` of a run directory, validated against the installed plugins.

    Args:
        weights: ``model`` (final EMA weights) or ``best`` (EMA weights at the best validation loss).

    Raises:
        CheckpointError: not a run directory, a plugin that is not installed, or weights that do not fit the spec.
        PluginError: the plugin providing a kind is installed but failed to load or is blocked.
    """
    from metavoxel.diffusion.joint import JointModel

    run_dir = Path(run_dir)
    spec_path = run_dir / SPEC_FILE
    saved = read_saved_spec(run_dir)
    data = saved["spec"]
    registry = default_registry() if registry is None else registry
    for kind, origin in saved.get("plugins", {}).items():
        if kind not in registry:
            dist = f"{origin.get('distribution', '?')} {origin.get('version', '')}".strip()
            reason = registry.unavailable(kind, distribution=origin.get("distribution"))
            if reason:
                raise PluginError(f"this model needs the variable kind {kind!r} from {dist}: {reason}")
            raise CheckpointError(f"this model needs the variable kind {kind!r} from {dist}, which is not installed; "
                                  f"pip install it (installed kinds: {', '.join(registry) or 'none'})")
    weights_path = run_dir / ("best.safetensors" if weights == "best" else WEIGHTS_FILE)
    if not weights_path.is_file() and (run_dir / "state.json").is_file():
        raise CheckpointError(f"{run_dir} is damaged: it has a training state but no {weights_path.name} (training "
                              f"stopped while writing it?); resume it with `metavoxel train --resume --out {run_dir}` "
                              "and the run's spec and data to write it again, or restore the file")
    spec = ModelSpec.from_saved(data, registry=registry, source=str(spec_path), written_by=saved.get("metavoxel"))
    state = load_weights(weights_path)
    check_seal(weights_path, data, spec_path)  # after the format: a spec of another format says so first
    model = JointModel(spec, registry=registry, load_weights=False)
    check_fits(model, state, run_dir)
    model.load_state_dict(state)
    return model.eval()


def read_saved_spec(run_dir: Path) -> dict[str, Any]:
    """spec.json of a run directory as written by `save_spec` (``spec``, ``metavoxel``, ``plugins``).

    Raises:
        CheckpointError: no spec.json (not a run directory), or one that is not such a file (damaged).
    """
    spec_path = Path(run_dir) / SPEC_FILE
    if not spec_path.is_file():
        raise CheckpointError(f"{run_dir} is not a metavoxel run directory (no {SPEC_FILE}); give the --out "
                              "directory of `metavoxel train`")
    try:
        saved = json.loads(spec_path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or not isinstance(saved["spec"], dict):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{spec_path} is damaged (not the spec.json `metavoxel train` writes); restore it from "
                              "a backup of the run, or train again") from None
    return saved


def check_seal(weights_path: Path, spec: Mapping[str, Any], spec_path: Path) -> None:
    """Refuse a spec that is not the one the weights were sealed with (`spec_digest`); warn when unsealed.

    Raises:
        CheckpointError: one line; the spec was edited after training (or the files come from two runs).
    """
    seal = weights_seal(weights_path)
    if seal is None:
        warnings.warn(f"{weights_path} carries no seal of the spec it was trained with (written before metavoxel "
                      f"sealed its runs), so an edit of {spec_path} cannot be detected; retrain to seal it",
                      RunWarning, stacklevel=3)
        return
    if seal != spec_digest(spec):
        raise CheckpointError(f"{spec_path} is not the spec {weights_path.name} was trained with (the digest sealed in "
                              "the weights differs: the spec was edited after training, or the files come from two "
                              "runs); a model is what it was trained as, so restore the run's spec.json, or train a "
                              "new model with the changed spec")


def check_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """One-line error when a state dict does not fit the model (names or shapes)."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise CheckpointError(f"the weights in {where} do not fit the model in its spec ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. {example!r}); "
                              "the spec or the weights were changed after training")
