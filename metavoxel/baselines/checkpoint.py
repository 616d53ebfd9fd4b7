"""A trained baseline on disk: ``weights.safetensors`` (the state dict) + ``baseline.json`` (what built it).

No pickle anywhere; both files are written atomically, weights first, so a crash between the two writes
leaves a json whose recorded sha256 disagrees with the weights, which `load_baseline` refuses.

``baseline.json``::

    {"format": "metavoxel-baseline", "version": 1, "config": {BaselineConfig fields},
     "spatial_dims": 3, "image_shape": [32, 32, 32], "target_mean": 63.2, "target_sd": 8.1,
     "class_names": ["F", "M"] | null, "best_step": 1800, "seconds": 912.4,
     "history": {"steps": 2000, "final_loss": 0.21, "best_val_loss": 0.33,
                 "validation": [{"step": 100, "loss": 0.9, "val_loss": 0.8}, ...]},
     "weights": "weights.safetensors", "weights_sha256": "<64 hex>"}

The helpers are the house ones: `save_weights` / `load_weights` / `check_fits` of run directories and
`weights_hash` of VAE checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metavoxel.baselines.config import parse_config
from metavoxel.baselines.networks import build_baseline
from metavoxel.baselines.train import TrainedBaseline
from metavoxel.errors import CheckpointError, InputError, MetavoxelError
from metavoxel.io.atomic import write_json
from metavoxel.io.checkpoint_meta import finite_number, read_checkpoint_meta
from metavoxel.runs import check_fits, load_weights, save_weights
from metavoxel.vae.checkpoint import weights_hash

__all__ = ["FORMAT", "META_FILE", "VERSION", "WEIGHTS_FILE", "load_baseline", "save_baseline"]

FORMAT, VERSION = "metavoxel-baseline", 1
WEIGHTS_FILE, META_FILE = "weights.safetensors", "baseline.json"


def _class_names(names: Sequence[str] | None, num_classes: int, task: str) -> list[str] | None:
    if names is None:
        return None
    names = list(names)
    if task != "classification" or len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise InputError(f"class_names must be {num_classes} strings for a classification baseline, got "
                         f"{names!r} for task {task!r}; give one name per class in index order, or None")
    return names


def _history_summary(trained: TrainedBaseline) -> dict[str, Any]:
    validation = [{k: r[k] for k in ("step", "loss", "val_loss")} for r in trained.history
                  if r.get("val_loss") is not None]
    return {"steps": len(trained.history),
            "final_loss": trained.history[-1]["loss"] if trained.history else None,
            "best_val_loss": min((r["val_loss"] for r in validation), default=None),
            "validation": validation}


def save_baseline(directory: str | Path, trained: TrainedBaseline, *,
                  class_names: Sequence[str] | None = None) -> Path:
    """Write ``weights.safetensors`` then ``baseline.json`` into ``directory`` (created if needed), atomically.

    Args:
        directory: the checkpoint folder.
        trained: from `train_baseline` (or `load_baseline`).
        class_names: names of the classes in index order (classification); default ``trained.class_names``.

    Returns:
        the folder.

    Raises:
        InputError: not a `TrainedBaseline`, or class names that do not match ``num_classes``.
    """
    if not isinstance(trained, TrainedBaseline):
        raise InputError(f"save_baseline expected a TrainedBaseline (from train_baseline), got "
                         f"{type(trained).__name__}; pass the object train_baseline returned")
    config, net = trained.config, trained.net
    names = _class_names(class_names if class_names is not None else trained.class_names, config.num_classes,
                         config.task)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    meta = {
        "format": FORMAT, "version": VERSION, "config": config.model_dump(mode="json"),
        "spatial_dims": net.spatial_dims, "image_shape": list(net.image_shape),
        "target_mean": trained.target_mean, "target_sd": trained.target_sd, "class_names": names,
        "best_step": trained.best_step, "seconds": trained.seconds, "history": _history_summary(trained),
        "weights": WEIGHTS_FILE, "weights_sha256": weights_hash(state),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(directory / WEIGHTS_FILE, state)
    write_json(directory / META_FILE, meta)
    return directory


def _read_meta(directory: Path) -> dict[str, Any]:
    def checks(meta: dict[str, Any]) -> dict[str, Any]:
        fields = {
            "config": lambda v: isinstance(v, dict),
            "spatial_dims": lambda v: v in (2, 3) and not isinstance(v, bool),
            "image_shape": lambda v: isinstance(v, list) and all(isinstance(s, int) and s > 0 for s in v),
            "weights_sha256": lambda v: isinstance(v, str) and len(v) == 64,
            "best_step": lambda v: isinstance(v, int) and v >= 0,
        }
        if isinstance(meta.get("config"), dict) and meta["config"].get("task") == "regression":
            fields["target_mean"] = finite_number
            fields["target_sd"] = lambda v: finite_number(v) and v > 0
        return fields

    return read_checkpoint_meta(directory, META_FILE, fmt=FORMAT, version=VERSION, what="baseline",
                                writer="save_baseline", checks=checks)


def load_baseline(directory: str | Path, *, device: str | torch.device = "cpu") -> TrainedBaseline:
    """Rebuild the network from ``baseline.json`` and load ``weights.safetensors``, refusing any mismatch.

    Returns:
        a `TrainedBaseline` in eval mode on ``device``; its ``history`` holds the validation records and
        ``seconds`` the recorded training time.

    Raises:
        CheckpointError: a missing or unreadable file, an invalid field, a config that does not build, weights
            whose names or shapes do not fit it, or weights from another save (sha256); one line each.
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    where = str(directory / META_FILE)
    try:
        config = parse_config(meta["config"], source=f"{where} config")
        with torch.random.fork_rng():  # the weights are overwritten; leave the caller's RNG alone
            net = build_baseline(config, meta["spatial_dims"], meta["image_shape"])
        names = _class_names(meta.get("class_names"), config.num_classes, config.task)
    except MetavoxelError as exc:
        raise CheckpointError(f"{where} does not build a baseline ({exc}); re-save the baseline") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} beside {META_FILE} in {str(directory)!r}; the checkpoint is "
                              "incomplete — re-save the baseline")
    state = load_weights(weights)
    check_fits(net, state, weights)
    digest = weights_hash(state)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(f"{str(weights)!r} has sha256 {digest[:12]}…, {META_FILE} records "
                              f"{meta['weights_sha256'][:12]}…; the files come from different saves — "
                              "re-save the baseline")
    net.load_state_dict(state)
    history = meta.get("history") if isinstance(meta.get("history"), dict) else {}
    seconds = meta.get("seconds")
    return TrainedBaseline(net=net.eval().to(device), config=config, target_mean=meta.get("target_mean"),
                           target_sd=meta.get("target_sd"), history=list(history.get("validation", [])),
                           best_step=meta["best_step"], seconds=float(seconds) if finite_number(seconds) else 0.0,
                           class_names=names)
