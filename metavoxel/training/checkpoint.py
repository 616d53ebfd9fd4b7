"""Resumable training state of a run directory, as safetensors + JSON (never pickle).

    state.json           pointer to the newest complete training state, e.g. {"dir": "state-000120"}
    state-000120/        tensors.safetensors (weights, EMA, optimiser tensors, RNG states) + state.json

The rest of a run directory (spec, weights, `load_run`) is `metavoxel.runs`, re-exported here so older
imports keep working.

A state directory is written completely before ``state.json`` is atomically switched to it, so a kill at
any moment leaves the previous state intact. Its tensors are sealed with the spec they were trained with
(`metavoxel.runs.spec_digest`), like the weights. A run whose pointer names a state that is missing or
unreadable is reported as damaged, with what to do, never with a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError
from metavoxel.io.atomic import write_atomic, write_json
from metavoxel.runs import (SEAL_KEY, SPEC_FILE, WEIGHTS_FILE, check_fits, load_run, load_weights, save_spec,
                            save_weights, spec_digest, weights_seal)
from metavoxel.spec import ModelSpec

__all__ = ["POINTER_FILE", "SPEC_FILE", "WEIGHTS_FILE", "check_fits", "check_state", "load_run", "load_state",
           "load_weights", "save_spec", "save_state", "save_weights", "state_name"]

POINTER_FILE = "state.json"
STATE_DIR = re.compile(r"state-\d{9}")  # the folders save_state writes; no other folder is ever removed


# -- resumable training state -------------------------------------------------------------------------
def save_state(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any], *,
               spec: ModelSpec | None = None) -> None:
    """Write state-<step>/ (sealed with ``spec``'s digest when given), switch state.json to it, then remove older
    state directories."""
    from safetensors.torch import save_file

    name = f"state-{step:09d}"
    target = run_dir / name
    shutil.rmtree(target, ignore_errors=True)  # a leftover from a killed write of this same step
    target.mkdir(parents=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {SEAL_KEY: spec_digest(spec)} if spec is not None else None
    write_atomic(target / "tensors.safetensors", lambda tmp: save_file(flat, tmp, metadata=metadata))
    write_json(target / "state.json", {**meta, "step": step})
    write_json(run_dir / POINTER_FILE, {"dir": name, "step": step})
    for old in run_dir.glob("state-*"):
        if old.name != name and old.is_dir() and STATE_DIR.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)


def state_name(run_dir: Path) -> str:
    """The state directory state.json points at.

    Raises:
        CheckpointError: no state.json (nothing to resume), or one that is unreadable (a damaged run).
    """
    pointer = run_dir / POINTER_FILE
    if not pointer.is_file():
        raise CheckpointError(f"{run_dir} has no training state to resume ({POINTER_FILE} missing); "
                              "train without --resume")
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["dir"]
        if not isinstance(name, str) or not STATE_DIR.fullmatch(name):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(_damaged(run_dir, f"its {POINTER_FILE} does not name a training state "
                                       "(state-<step>)")) from None
    return name


def check_state(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The folder and meta of the training state state.json points at, checked complete without loading tensors.

    Raises:
        CheckpointError: nothing to resume, or a damaged run (the state named by state.json is missing or
            unreadable), with what to do.
    """
    name = state_name(run_dir)
    folder = run_dir / name
    if not folder.is_dir():
        raise CheckpointError(_damaged(run_dir, f"{POINTER_FILE} names the training state {name}, which is missing"))
    try:
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        raise CheckpointError(_damaged(run_dir, f"{name}/state.json is missing or unreadable")) from None
    if not (folder / "tensors.safetensors").is_file():
        raise CheckpointError(_damaged(run_dir, f"{name}/tensors.safetensors is missing"))
    return folder, meta


def load_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest complete training state of a run: (tensors, meta); ``meta[SEAL_KEY]`` is the digest of the spec
    the state was trained with (None for a state written before states were sealed).

    Raises:
        CheckpointError: nothing to resume, or a damaged run (`check_state`), or unreadable tensors.
    """
    folder, meta = check_state(run_dir)
    tensors_path = folder / "tensors.safetensors"
    meta[SEAL_KEY] = weights_seal(tensors_path)
    return load_weights(tensors_path), meta


def _damaged(run_dir: Path, problem: str) -> str:
    return (f"the run in {run_dir} is damaged: {problem}, so it cannot be resumed; restore the run directory from a "
            "backup, or train again into a new --out (its model.safetensors, if present, still samples)")
