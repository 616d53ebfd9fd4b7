"""A minimal training loop over in-memory records: encode once, then AdamW on random minibatches."""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping
from typing import Any

import torch

from metavoxel.diffusion.joint import JointModel

__all__ = ["encode_records", "fit"]


def _rows(raw: Any, part: slice) -> Any:
    return raw[part] if hasattr(raw, "__getitem__") and not isinstance(raw, (str, bytes)) else raw


def encode_records(model: JointModel, data: Mapping[str, Any], *, chunk: int = 64):
    """Encode every record once (z0 and presence per variable), ``chunk`` records at a time."""
    sizes = {name: len(raw) for name, raw in data.items()}
    if len(set(sizes.values())) != 1:
        from metavoxel.errors import InputError

        raise InputError(f"every variable needs the same number of records, got {sizes}")
    n = next(iter(sizes.values()))
    parts = [model.encode_batch({k: _rows(v, slice(i, i + chunk)) for k, v in data.items()}) for i in range(0, n, chunk)]
    z0 = {name: torch.cat([p[0][name] for p in parts]) for name in model.variables}
    present = {name: torch.cat([p[1][name] for p in parts]) for name in model.variables}
    return z0, present


def fit(model: JointModel, data: Mapping[str, Any], *, steps: int, batch_size: int = 32, lr: float = 2e-3,
        weight_decay: float = 0.0, grad_clip: float = 1.0, seed: int = 0,
        progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Train ``model`` on raw records for ``steps`` AdamW steps; returns the mean loss of every step.

    Args:
        data: variable -> raw values of all records (missing values allowed).
        progress: called as ``progress(step, steps, loss)`` after every step.
    """
    z0, present = encode_records(model, data)
    n = len(next(iter(present.values())))
    generator = torch.Generator(device=model.device).manual_seed(seed)
    optimiser = torch.optim.AdamW(model.net.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 20)  # linear warm-up, then cosine decay to 10% of lr
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: min(1.0, (i + 1) / warmup) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, i / max(1, steps - 1))))))
    model.train()
    history = []
    for step in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator, device=model.device)
        terms = model.losses_from_z0({k: v[idx] for k, v in z0.items()}, {k: v[idx] for k, v in present.items()},
                                     generator=generator)
        loss = terms["loss"].mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.net.parameters(), grad_clip)
        optimiser.step()
        schedule.step()
        history.append(loss.item())
        if progress is not None:
            progress(step + 1, steps, history[-1])
    model.eval()
    return history
