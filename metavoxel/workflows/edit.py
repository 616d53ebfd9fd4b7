"""`edit_run`: edit a subject's own scan to other values; write the edited scan, the difference map and a sidecar.

``metavoxel edit --model M --fix image=scan.nii.gz --fix age=71 --fix sex=F --set age=81 --out edits/`` writes

- ``image_edited.nii.gz``: the edited scan, in the scan's own grid and header (``--space source``, the default),
  in the scan's intensity units;
- ``image_difference.nii.gz``: edited − original, in the scan's units, on the same grid;
- ``edit.json``: the model, the scan, the values it was inverted under (given or inferred, and which were
  inferred), the values it was regenerated under, and how the edit ran.

The engine is `metavoxel.diffusion.edit`. With the default output (``change``) the edited scan is the scan's
own voxels plus the decoded change mapped onto its grid, so a voxel the edit does not move keeps its stored
value and voxels beyond the model grid are the scan's. ``--output decoded`` writes the decoded edit instead,
as `metavoxel sample` writes a result derived from a scan (`metavoxel.io.nifti_write.write_result`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metavoxel.diffusion.edit import EditResult, edit_refusal
from metavoxel.diffusion.options import EditOptions
from metavoxel.errors import InputError, check_variable_names
from metavoxel.io.atomic import write_json
from metavoxel.io.outputs import check_outputs
from metavoxel.io.staging import check_replaceable, staged_folder
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.capabilities import PreparesScans
from metavoxel.variables.protocol import SpatialHead

__all__ = ["EDIT_FILES", "edit_run", "prepare_fixed", "scan_units"]

# what `edit` writes into its --out folder besides edit.json: an earlier output holds nothing else
EDIT_FILES = ("*_edited.nii.gz", "*_difference.nii.gz")


def edit_run(run_dir: str | Path, fix: Mapping[str, str], changes: Mapping[str, str], out: str | Path,
             options: EditOptions | None = None, *, space: str = "source",
             progress: Callable[[int, int], None] | None = None,
             before_write: Callable[[EditResult], None] | None = None) -> tuple[EditResult, list[Path]]:
    """Edit one subject's scan and write the edited scan, the difference map and edit.json into ``out``.

    ``out`` is written as one whole (`metavoxel.io.staging`): new, empty, or an earlier output of ``edit``, and
    holding no file this call reads; all checked before the model loads.

    Args:
        run_dir: a run directory written by ``metavoxel train``.
        fix: variable -> text as on the command line: every image (``scan.nii.gz``) and the observed values
            (``71``, ``F``); a value not given is inferred from the scan by point prediction and reported.
        changes: variable -> new text (``81``, ``M``), or a signed change from the observed value (``+10``).
        out: the output folder.
        options: `EditOptions` (default: the model's steps and grid, 1 refinement, no guidance, ``change``).
        space: ``source`` (the scan's own grid and header) or ``model`` (the model grid).
        progress: ``progress(done, total)`` per network call.
        before_write: called with the result before anything is written (the CLI renders its table there).

    Raises:
        InputError: an unknown variable, an unreadable scan or value, a model that cannot edit, an output folder
            that holds an input or another command's files.
    """
    if space not in ("source", "model"):
        raise InputError(f"--space must be source or model, got {space!r}")
    out = Path(out)
    check_replaceable(out, marker="edit.json", command="metavoxel edit", owned=EDIT_FILES)
    model = load_run(run_dir)
    _check_names(model, fix, changes)
    scans = [(f"--fix {n}", text) for n, text in fix.items() if isinstance(model.variables[n].head, SpatialHead)]
    check_outputs([*run_inputs(run_dir), *scans], folders=[("--out", out)])
    refusal = edit_refusal(model.diffusion)
    if refusal is not None:
        raise refusal
    raw, prepared = prepare_fixed(model, fix)
    result = model.edit(raw, dict(changes), options, progress=progress)
    record = {"model": str(Path(run_dir).resolve()), "metavoxel": _version(), "created": _now(),
              "given": dict(fix), "set": dict(changes), **result.to_dict(),
              "meaning": _meaning(result.output)}
    if before_write is not None:
        before_write(result)
    with staged_folder(out) as staging:
        files: list[Path] = []
        for name, source in prepared.items():
            edited, difference = scan_units(result, name, source, space)
            affine, header = ((source.source.affine, source.source.header) if space == "source"
                              else (source.affine, None))
            files.append(_write(staging / f"{name}_edited.nii.gz", edited, affine, header))
            files.append(_write(staging / f"{name}_difference.nii.gz", difference, affine, header))
            record.setdefault("images", {})[name] = {
                "scan": str(source.source.path), "space": space, "edited": files[-2].name,
                "difference": files[-1].name, "units": "the scan's intensities" if source.intensity_range is not None
                else "the model's (the scan was not intensity-scaled)"}
        files.append(write_json(staging / "edit.json", record))
    return result, [out / f.relative_to(staging) for f in files]


def prepare_fixed(model: Any, fix: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Command-line text -> raw values for the model (one subject) and the `PreparedImage` of each scan.

    A scan goes through its kind's preprocessing onto the model grid (``prepare``); other values through the
    kind's ``parse``. Raises InputError for an image whose kind cannot read a scan file.
    """
    raw, prepared = {}, {}
    for name, text in fix.items():
        var = model.variables[name]
        if isinstance(var.head, SpatialHead):
            if not isinstance(var, PreparesScans) or var.preprocessor is None:
                raise InputError(f"--fix {name}={text}: this model's {name!r} has no preprocessing to read a scan "
                                 "file onto its grid; give a model whose spec has preprocess for it")
            prepared[name] = var.prepare(text)
            raw[name] = prepared[name].tensor[None]
        else:
            parsed = var.parse(text)
            raw[name] = parsed[None] if isinstance(parsed, torch.Tensor) else [parsed]
    return raw, prepared


def scan_units(result: EditResult, name: str, prepared: Any, space: str) -> tuple[np.ndarray, np.ndarray]:
    """The edited scan and edited − original of subject 0, (C, *grid) float32, in the scan's intensity units.

    ``space="source"``: on the scan's own grid. The ``change`` output is the scan as read plus the decoded change
    (scaled to the scan's units, mapped onto its grid, 0 beyond the model grid); the ``decoded`` output is the
    decoded edit mapped back as `metavoxel.io.nifti_write.write_result` maps it. ``space="model"``: on the
    model grid, the scan as prepared.
    """
    from metavoxel.io.nifti import read_nifti
    from metavoxel.io.resample import restore_intensity, to_source_grid

    scaled = prepared.intensity_range is not None
    scale = (torch.as_tensor(prepared.intensity_range[:, 1] - prepared.intensity_range[:, 0], dtype=torch.float32)
             if scaled else torch.ones(prepared.tensor.shape[0]))
    scale = scale.reshape(-1, *([1] * (prepared.tensor.dim() - 1)))  # (C, 1, ..., 1)
    change = (result.decoded[name][0] - result.reconstructed[name][0]) * scale  # (C, *shape) scan units
    if space == "model":
        original = restore_intensity(prepared.tensor, prepared) if scaled else prepared.tensor
        edited = original + change if result.output == "change" else (
            restore_intensity(result.decoded[name][0], prepared) if scaled else result.decoded[name][0])
        return edited.numpy(), (edited - original).numpy()
    dims = len(prepared.source.shape)
    original, _ = read_nifti(prepared.source.path, spatial_dims=dims, what=f"--fix {name}")
    if result.output == "change":
        edited = original + to_source_grid(change, prepared)
    else:
        edited = to_source_grid(result.decoded[name][0], prepared, invert_intensity=scaled)
    return edited.astype(np.float32), (edited - original).astype(np.float32)


def _write(path: Path, data: np.ndarray, affine: np.ndarray, header: Any) -> Path:
    from metavoxel.io.nifti_write import write_nifti

    return write_nifti(path, data, affine, header, spatial_dims=data.ndim - 1)


def _check_names(model: Any, fix: Mapping[str, str], changes: Mapping[str, str]) -> None:
    check_variable_names(model.variables, fix=fix, set=changes)
    images = [n for n, v in model.variables.items() if isinstance(v.head, SpatialHead)]
    missing = [n for n in images if n not in fix]
    if missing:
        raise InputError(f"edit needs the scan to edit: add --fix {missing[0]}=SCAN.nii.gz")
    if not changes:
        raise InputError("nothing to change: add --set NAME=VALUE, e.g. --set age=81 or --set age=+10")
    spatial = [n for n in changes if n in images]
    if spatial:
        raise InputError(f"--set {spatial[0]}=...: {spatial[0]!r} is an image; --set changes values such as age "
                         "or sex, and the image is regenerated")


def _meaning(output: str) -> str:
    if output == "change":
        return ("edited = the scan + D(z_edited) - D(z_reconstructed): the decoded change applied to the scan's own "
                "voxels; a counterfactual of this scan at the changed values, not a measured follow-up")
    return "edited = D(z_edited), the decoded edit; a counterfactual at the changed values, not a measured follow-up"


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
