"""Run directories: what `metavoxel train` writes and sampling, prediction and evaluation read.

Layout of a run directory::

    spec.json            the full ModelSpec, metavoxel's version and the plugins (distribution, version) per kind
    model.safetensors    EMA weights of the whole model (network and frozen encoders): what sampling uses
    best.safetensors     EMA weights at the best validation loss
    metrics.jsonl        one JSON object per logged step
    splits.json          subjects per split (when trained from a cohort)
    MODEL_CARD.md        intended use, data, variables, training and validation figures
    state.json           pointer to the newest complete training state (see `metavoxel.training.checkpoint`)

This module reads and writes the spec and the weights (safetensors + JSON, never pickle); it does not import
the trainer, so sampling and evaluation load a run without it. The resumable training state lives in
`metavoxel.training.checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError, PluginError
from metavoxel.io.atomic import write_atomic, write_json
from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.spec import ModelSpec

__all__ = ["SPEC_FILE", "WEIGHTS_FILE", "check_fits", "load_run", "load_weights", "save_spec", "save_weights"]

SPEC_FILE, WEIGHTS_FILE = "spec.json", "model.safetensors"


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


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp))


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
    if not spec_path.is_file():
        raise CheckpointError(f"{run_dir} is not a metavoxel run directory (no {SPEC_FILE}); give the --out "
                              "directory of `metavoxel train`")
    try:
        saved = json.loads(spec_path.read_text())
        data = saved["spec"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{spec_path} is corrupt; restore it from the run's backup or retrain") from None
    registry = default_registry() if registry is None else registry
    for kind, origin in saved.get("plugins", {}).items():
        if kind not in registry:
            dist = f"{origin.get('distribution', '?')} {origin.get('version', '')}".strip()
            reason = registry.unavailable(kind, distribution=origin.get("distribution"))
            if reason:
                raise PluginError(f"this model needs the variable kind {kind!r} from {dist}: {reason}")
            raise CheckpointError(f"this model needs the variable kind {kind!r} from {dist}, which is not installed; "
                                  f"pip install it (installed kinds: {', '.join(registry) or 'none'})")
    spec = ModelSpec.from_saved(data, registry=registry, source=str(spec_path), written_by=saved.get("metavoxel"))
    model = JointModel(spec, registry=registry, load_weights=False)
    state = load_weights(run_dir / ("best.safetensors" if weights == "best" else WEIGHTS_FILE))
    check_fits(model, state, run_dir)
    model.load_state_dict(state)
    return model.eval()


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
