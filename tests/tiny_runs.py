"""Untrained run directories written in milliseconds, for tests of commands that read a run."""

from __future__ import annotations

from pathlib import Path

import torch


def write_run(out: Path, spec: dict, *, registry=None, seed: int = 0) -> Path:
    """A run directory (spec.json, model.safetensors) of an untrained `JointModel` of ``spec``."""
    import metavoxel as mv
    from metavoxel.runs import WEIGHTS_FILE, save_spec, save_weights

    torch.manual_seed(seed)
    model = mv.JointModel(spec, registry=registry)
    out.mkdir(parents=True, exist_ok=True)
    save_spec(out, model)
    save_weights(out / WEIGHTS_FILE, model.state_dict(), spec=model.spec)  # sealed, as train writes it
    return out
