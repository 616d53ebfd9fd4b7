"""Run directories of tiny untrained models: workflows need a run, not a trained one, to test inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_run(root: Path, spec: dict) -> Path:
    """Build ``spec`` with seed-0 random weights and save it as a run directory (spec.json + model.safetensors)."""
    import metavoxel as mv
    from metavoxel.training.checkpoint import save_spec, save_weights

    torch.manual_seed(0)
    model = mv.JointModel(spec)
    root.mkdir(parents=True, exist_ok=True)
    save_spec(root, model)
    save_weights(root / "model.safetensors", model.state_dict(), spec=model.spec)  # sealed, as train writes it
    return root
