"""Resumable training state of a run directory, as safetensors + JSON (never pickle).

    state.json           pointer to the newest complete training state, e.g. {"dir": "state-000120"}
    state-000120/        tensors.safetensors (weights, EMA, optimiser tensors, RNG states) + state.json

The rest of a run directory (spec, weights, `load_run`) is `metavoxel.runs`, re-exported here so older
imports keep working.

A state directory is written completely before ``state.json`` is atomically switched to it, so a kill at
any moment leaves the previous state intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError
from metavoxel.io.atomic import write_atomic, write_json
from metavoxel.runs import SPEC_FILE, WEIGHTS_FILE, check_fits, load_run, load_weights, save_spec, save_weights

__all__ = ["SPEC_FILE", "WEIGHTS_FILE", "check_fits", "load_run", "load_state", "load_weights", "save_spec",
           "save_state", "save_weights"]

POINTER_FILE = "state.json"


# -- resumable training state -------------------------------------------------------------------------
def save_state(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write state-<step>/, switch state.json to it, then remove older state directories."""
    from safetensors.torch import save_file

    name = f"state-{step:09d}"
    target = run_dir / name
    shutil.rmtree(target, ignore_errors=True)  # a leftover from a killed write of this same step
    target.mkdir(parents=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_atomic(target / "tensors.safetensors", lambda tmp: save_file(flat, tmp))
    write_json(target / "state.json", {**meta, "step": step})
    write_json(run_dir / POINTER_FILE, {"dir": name, "step": step})
    for old in run_dir.glob("state-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def load_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest complete training state of a run: (tensors, meta)."""
    pointer = run_dir / POINTER_FILE
    if not pointer.is_file():
        raise CheckpointError(f"{run_dir} has no training state to resume ({POINTER_FILE} missing); "
                              "train without --resume")
    name = json.loads(pointer.read_text())["dir"]
    meta = json.loads((run_dir / name / "state.json").read_text())
    return load_weights(run_dir / name / "tensors.safetensors"), meta
