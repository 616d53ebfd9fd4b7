"""The resumable state of `train_vae`: everything needed to continue a VAE training exactly where it stopped.

Kept in a state folder as the joint trainer keeps its own (`metavoxel.training.checkpoint`: a complete
``state-<step>/`` of ``tensors.safetensors`` + ``state.json``, then the pointer ``state.json`` switched to it,
so a kill at any moment leaves the previous state whole). Never pickle.

Tensors (safetensors): ``vae.<name>`` and ``disc.<name>`` (both state dicts), ``opt_g.<i>.<slot>`` and
``opt_d.<i>.<slot>`` (Adam's per-parameter moments and step), ``rng.order`` (the batch-order and crop
generator), ``rng.torch`` (the global generator that draws MONAI's reparameterisation noise), ``order.pending``
(indices of the current epoch not yet drawn) and ``history`` (steps x columns, NaN where a column was not
logged). JSON: the `VAETrainConfig`, the step, the history's columns, the optimisers' parameter groups, the
last validation metrics and the training seconds so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError, InputError

__all__ = ["TrainingState", "load_training_state", "save_training_state"]

#: Config fields a resumed training may change: the length and the bookkeeping, not what a step does.
RESUMABLE_CHANGES = ("steps", "val_every", "checkpoint_every")


@dataclass
class TrainingState:
    """What `train_vae` carries from one step to the next (besides the modules' own weights)."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slot in state["state"].items():
        for key, value in slot.items():
            tensors[f"{prefix}.{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, state["param_groups"]


def _restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       groups: list) -> None:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": groups})


def save_training_state(folder: Path, state: TrainingState, config: Any, *, vae: torch.nn.Module,
                        discriminator: torch.nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                        order: torch.Generator, pending: torch.Tensor) -> None:
    """Write the state of step ``state.step`` under ``folder`` (see the module docstring)."""
    from metavoxel.training.checkpoint import save_state

    tensors: dict[str, torch.Tensor] = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    tensors.update({f"disc.{k}": v for k, v in discriminator.state_dict().items()})
    g_tensors, g_groups = _optimizer_tensors("opt_g", opt_g)
    d_tensors, d_groups = _optimizer_tensors("opt_d", opt_d)
    tensors.update(g_tensors)
    tensors.update(d_tensors)
    tensors["rng.order"] = order.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["order.pending"] = pending.clone()
    columns = sorted({k for row in state.history for k in row})
    tensors["history"] = torch.tensor([[row.get(c, math.nan) for c in columns] for row in state.history],
                                      dtype=torch.float64).reshape(len(state.history), len(columns))
    meta = {"format": "metavoxel-vae-training-state", "config": config.model_dump(mode="json"),
            "history_columns": columns, "opt_g_groups": g_groups, "opt_d_groups": d_groups,
            "val": state.val, "seconds": state.seconds}
    folder.mkdir(parents=True, exist_ok=True)
    save_state(folder, state.step, tensors, meta)


def load_training_state(folder: Path, config: Any, *, vae: torch.nn.Module, discriminator: torch.nn.Module,
                        opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                        order: torch.Generator) -> tuple[TrainingState, torch.Tensor]:
    """Restore the newest state under ``folder`` into the given modules and optimisers.

    Returns:
        the `TrainingState` and the pending indices of the current epoch.

    Raises:
        CheckpointError: no state, or a state that does not fit these modules.
        InputError: ``config`` differs from the saved one in a field other than `RESUMABLE_CHANGES`, or asks
            for fewer steps than were already taken.
    """
    from metavoxel.runs import check_fits
    from metavoxel.training.checkpoint import load_state

    tensors, meta = load_state(folder)
    if meta.get("format") != "metavoxel-vae-training-state":
        raise CheckpointError(f"{folder} holds no VAE training state (format {meta.get('format')!r}); resume from "
                              "the folder a `train_vae` run wrote, or train without resume")
    now = config.model_dump(mode="json")
    # A state written before a field existed holds that field's default.
    defaults = type(config)().model_dump(mode="json")
    saved = {**{k: v for k, v in defaults.items() if k not in meta["config"]}, **meta["config"]}
    changed = sorted(k for k in saved.keys() | now.keys() if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if changed:
        diffs = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise InputError(f"resume: the VAE training in {folder} was started with other settings ({diffs}); resume it "
                         "with the same settings or start a new training in another folder")
    step = int(meta["step"])
    if config.steps < step:
        raise InputError(f"resume: {folder} already holds {step} steps, more than steps={config.steps}; ask for at "
                         f"least {step} steps")
    if config.lr_schedule != "constant" and config.steps != saved["steps"]:
        raise InputError(f"resume: steps {saved['steps']} -> {config.steps} would bend the {config.lr_schedule} "
                         "learning-rate schedule mid-run; keep steps as they were (or train with a constant lr)")
    for prefix, module in (("vae.", vae), ("disc.", discriminator)):
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        check_fits(module, own, folder)
        module.load_state_dict(own)
    _restore_optimizer("opt_g", opt_g, tensors, meta["opt_g_groups"])
    _restore_optimizer("opt_d", opt_d, tensors, meta["opt_d_groups"])
    order.set_state(tensors["rng.order"].to(torch.uint8))
    torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    columns = meta["history_columns"]
    history = [{c: float(v) for c, v in zip(columns, row.tolist()) if not math.isnan(v)}
               for row in tensors["history"]]
    state = TrainingState(step=step, history=history, val=dict(meta.get("val") or {}),
                          seconds=float(meta.get("seconds") or 0.0))
    return state, tensors["order.pending"].to(torch.long)
