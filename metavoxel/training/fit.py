"""Training on in-memory records: encode once, then `metavoxel.training.train` without a run directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import InputError
from metavoxel.training.config import TrainConfig
from metavoxel.training.trainer import EncodedRecords, train

__all__ = ["encode_records", "fit"]


def _rows(raw: Any, part: slice) -> Any:
    return raw[part] if hasattr(raw, "__getitem__") and not isinstance(raw, (str, bytes)) else raw


@torch.no_grad()
def encode_records(model: JointModel, data: Mapping[str, Any], *, chunk: int = 64) -> EncodedRecords:
    """Encode every record once (z0 and presence per variable), ``chunk`` records at a time."""
    sizes = {name: len(raw) for name, raw in data.items()}
    if len(set(sizes.values())) != 1:
        raise InputError(f"every variable needs the same number of records, got {sizes}")
    n = next(iter(sizes.values()))
    parts = [model.encode_batch({k: _rows(v, slice(i, i + chunk)) for k, v in data.items()}) for i in range(0, n, chunk)]
    return EncodedRecords({name: torch.cat([p[0][name] for p in parts]) for name in model.variables},
                          {name: torch.cat([p[1][name] for p in parts]) for name in model.variables})


def fit(model: JointModel, data: Mapping[str, Any], *, steps: int, batch_size: int = 32, lr: float = 2e-3,
        weight_decay: float = 0.0, grad_clip: float = 1.0, seed: int = 0,
        progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Train ``model`` on raw records for ``steps`` AdamW steps (no EMA, nothing on disk).

    Args:
        data: variable -> raw values of all records (missing values allowed).
        progress: called as ``progress(step, steps, loss)`` after every step.

    Returns:
        The mean loss of every step.
    """
    config = TrainConfig(steps=steps, batch_size=min(batch_size, len(next(iter(data.values())))), lr=lr,
                         weight_decay=weight_decay, warmup_steps=max(1, steps // 20), grad_clip=grad_clip,
                         ema_decay=0.0, log_every=1, val_every=steps, checkpoint_every=steps, seed=seed,
                         precision="fp32")
    result = train(model, encode_records(model, data), config, progress=progress)
    return [row["loss"] for row in result.history]
