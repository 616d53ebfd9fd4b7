"""What ``train --resume`` compares before it writes anything: it continues exactly the run it finds, or refuses.

A run directory is one consistent whole — its spec, its splits, the cohort they were made from, its training
settings and its weights belong together. `check_resume` compares each with what the resumed call was given
and refuses, in one line naming what differs, a resume that would mix two runs:

- the spec (every field: variables, their ranges and categories, diffusion, network, data and its split
  seed), against the run's spec.json;
- the training settings that shape the weights (every `TrainConfig` field but how often it validates,
  checkpoints and logs), against train.json;
- the cohort: its subjects, the data of each (`metavoxel.data.identity` fingerprints) and the split each is
  in, against splits.json;
- the weights the spec loads rather than trains (a frozen VAE), against the run's model.safetensors.

A run that cannot be compared — a spec.json or training state that is missing or unreadable — is reported
as damaged (`metavoxel.training.checkpoint.check_state`), with what to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metavoxel.data.identity import differing_subjects
from metavoxel.data.records import Cohort
from metavoxel.data.splits import SPLITS, read_splits
from metavoxel.errors import CheckpointError, InputError
from metavoxel.runs import WEIGHTS_FILE, load_weights, read_saved_spec
from metavoxel.spec import ModelSpec
from metavoxel.training.checkpoint import check_state
from metavoxel.training.config import TrainConfig

__all__ = ["BOOKKEEPING", "check_resume", "differences"]

# TrainConfig fields that change when and what is written, not the weights: a resume may change them
BOOKKEEPING = frozenset({"val_every", "checkpoint_every", "log_every"})


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """``path old -> new`` for every leaf where two JSON-like values differ (dict keys, then list items)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                found.append(f"{path} {_short(old.get(key, '(none)'))} -> {_short(new.get(key, '(none)'))}")
            else:
                found += differences(old[key], new[key], path)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and \
            any(isinstance(x, (Mapping, list)) for x in old):
        found = []
        for i, (a, b) in enumerate(zip(old, new)):
            name = a.get("name") if isinstance(a, Mapping) and a.get("name") == (b or {}).get("name") else None
            found += differences(a, b, f"{where}[{name if name is not None else i}]")
        return found
    return [] if old == new else [f"{where} {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": ")) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _listed(items: list[str], shown: int = 3) -> str:
    return "; ".join(items[:shown]) + (f"; and {len(items) - shown} more" if len(items) > shown else "")


def check_resume(out: Path, spec: ModelSpec, config: TrainConfig, cohort: Cohort,
                 splits: Mapping[str, list[int]], model: torch.nn.Module) -> None:
    """Refuse a ``--resume`` of the run in ``out`` that would not continue it exactly (see the module docstring).

    Args:
        out: the run directory.
        spec: the spec the call was given.
        config: the call's training settings.
        cohort: the cohort the call read, and ``splits`` its record indices per split (from `split_subjects`).
        model: the model built from ``spec`` (its frozen weights are compared).

    Raises:
        InputError: one line naming what differs (at most three differences, then how many more) and the fix.
        CheckpointError: a damaged run (no readable spec.json, training state or weights).
    """
    check_state(out)  # a pointer to a missing or unreadable state is a damaged run, said before anything else
    saved = read_saved_spec(out)
    changed = differences(saved["spec"], spec.to_dict())
    if changed:
        raise InputError(f"--resume: the spec differs from the run's {out / 'spec.json'} ({_listed(changed)}); "
                         "resume with the run's own spec (--spec " f"{out / 'spec.json'}), or train the changed spec "
                         "into another --out")
    _check_config(out, config)
    _check_cohort(out, cohort, splits)
    _check_frozen(out, model)


def _check_config(out: Path, config: TrainConfig) -> None:
    path = out / "train.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"the run in {out} is damaged: its train.json is missing or unreadable, so a resume "
                              "cannot be checked against its settings; restore it, or train again into a new --out"
                              ) from None
    now = config.model_dump()
    changed = [f"{key} {_short(recorded[key])} -> {_short(now[key])}" for key in now
               if key not in BOOKKEEPING and key in recorded and recorded[key] != now[key]]
    if changed:
        raise InputError(f"--resume: the training settings differ from the run's train.json ({_listed(changed)}); "
                         "resume with the same options to continue it, or train with the new ones into another --out")


def _check_cohort(out: Path, cohort: Cohort, splits: Mapping[str, list[int]]) -> None:
    document = read_splits(out / "splits.json")
    recorded = document.get("fingerprints")
    if isinstance(recorded, dict):
        diff = differing_subjects(recorded, cohort)
        said = [f"{len(v)} subject(s) {k} (e.g. {v[0]})" for k, v in diff.items() if v]
        if said:
            raise InputError(f"--resume: --data {cohort.source} is not the cohort the run was trained on "
                             f"({'; '.join(said)}); resume with the run's data as it was, or train on this cohort "
                             "into another --out")
    for name in SPLITS:
        now = sorted({cohort.records[i].subject for i in splits.get(name, [])})
        if now != sorted(document[name]):
            moved = sorted(set(now) ^ set(document[name]))
            raise InputError(f"--resume: the {name} split differs from the run's splits.json ({len(moved)} subject(s) "
                             f"moved, e.g. {moved[0]}), so held-out subjects would be trained on; resume with the "
                             "run's data and split, or train into another --out")


def _check_frozen(out: Path, model: torch.nn.Module) -> None:
    """The weights the spec loads instead of training (a VAE's) are the ones the run was trained with."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = {k: v for k, v in model.state_dict().items() if k not in trainable}
    if not frozen or not (out / WEIGHTS_FILE).is_file():
        return
    saved = load_weights(out / WEIGHTS_FILE)
    changed = [k for k, v in frozen.items() if k in saved and (saved[k].shape != v.shape or
                                                              not torch.equal(saved[k], v.to(saved[k].device)))]
    if changed:
        raise InputError(f"--resume: {len(changed)} frozen weight tensor(s) loaded by the spec (e.g. {changed[0]}, "
                         "of a VAE whose file was retrained or replaced) differ from those in the run's "
                         f"{WEIGHTS_FILE}; resume with the weights the run was trained with, or train into another "
                         "--out")
