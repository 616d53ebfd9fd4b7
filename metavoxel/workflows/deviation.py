"""`deviation_run`: the voxelwise z-score of a subject's scan against the model's brains for its values, as NIfTI.

``metavoxel deviation --model M --fix image=scan.nii.gz --fix age=71 --fix sex=F -n 16 --out dev/`` writes

- ``image_zscore.nii.gz``: (x - mean) / max(sd, floor), in the scan's own grid and header (``--space source``)
  or on the model grid; 0 where the model grid does not reach;
- ``image_expected.nii.gz`` and ``image_sd.nii.gz``: the samples' voxelwise mean and SD, in the scan's units;
- ``deviation.json``: the model, the scan, the values the brains were drawn for (given or inferred), how many.

The engine is `metavoxel.diffusion.deviation`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from metavoxel.diffusion.deviation import DeviationMap, check_request
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.errors import InputError, check_variable_names
from metavoxel.io.atomic import write_json
from metavoxel.io.outputs import check_outputs
from metavoxel.io.staging import check_replaceable, staged_folder
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.protocol import SpatialHead
from metavoxel.workflows.edit import prepare_fixed

__all__ = ["DEVIATION_FILES", "deviation_run"]

DEVIATION_FILES = ("*_zscore.nii.gz", "*_expected.nii.gz", "*_sd.nii.gz")


def deviation_run(run_dir: str | Path, fix: Mapping[str, str], out: str | Path, options: SamplingOptions | None = None,
                  *, floor: float = 0.02, reference: str = "scan", space: str = "source",
                  progress: Callable[[int, int], None] | None = None,
                  before_write: Callable[[DeviationMap], None] | None = None) -> tuple[DeviationMap, list[Path]]:
    """Score one scan voxel by voxel against ``options.num_samples`` brains drawn for its values; write into ``out``.

    Args:
        run_dir: a run directory written by ``metavoxel train``.
        fix: variable -> text: the scan (``image=scan.nii.gz``) and its values; a value not given is inferred.
        out: the output folder (new, empty, or an earlier output of ``deviation``; it must hold no input).
        options: how the brains are sampled (default: 16 samples, the model's steps, grid and seed).
        floor, reference: see `metavoxel.diffusion.deviation.deviation_map`.
        space: ``source`` (the scan's own grid and header) or ``model``.
        progress, before_write: as in `metavoxel.workflows.edit.edit_run`.

    Raises:
        InputError: an unknown variable, no scan, an unreadable scan or value, a bad option, an output folder that
            holds an input or another command's files.
    """
    if space not in ("source", "model"):
        raise InputError(f"--space must be source or model, got {space!r}")
    options = SamplingOptions(num_samples=16) if options is None else options
    check_request(options.num_samples, floor, reference)
    out = Path(out)
    check_replaceable(out, marker="deviation.json", command="metavoxel deviation", owned=DEVIATION_FILES)
    model = load_run(run_dir)
    check_variable_names(model.variables, fix=fix)
    scans = [(f"--fix {n}", text) for n, text in fix.items() if isinstance(model.variables[n].head, SpatialHead)]
    if not scans:
        images = [n for n, v in model.variables.items() if isinstance(v.head, SpatialHead)]
        raise InputError(f"a deviation map scores a scan: add --fix {images[0] if images else 'image'}=SCAN.nii.gz")
    check_outputs([*run_inputs(run_dir), *scans], folders=[("--out", out)])
    raw, prepared = prepare_fixed(model, fix)
    image = next(iter(prepared))
    result = model.deviation(raw, options, image=image, floor=floor, reference=reference, progress=progress)
    record = {"model": str(Path(run_dir).resolve()), "metavoxel": _version(), "created": _now(), "given": dict(fix),
              "scan": str(prepared[image].source.path), "space": space, **result.to_dict(),
              "zscore": "(x - mean) / max(sd, sd_floor) voxelwise over the samples; sd_floor in the model's units "
                        "(the scan scaled to [0, 1])"}
    if before_write is not None:
        before_write(result)
    source = prepared[image]
    maps = _maps(result, source, space)
    with staged_folder(out) as staging:
        affine, header = (source.source.affine, source.source.header) if space == "source" else (source.affine, None)
        files = [_write(staging / f"{image}_{what}.nii.gz", data, affine, header) for what, data in maps.items()]
        files.append(write_json(staging / "deviation.json", record))
    return result, [out / f.relative_to(staging) for f in files]


def _maps(result: DeviationMap, prepared: Any, space: str) -> dict[str, Any]:
    """zscore, expected and sd of subject 0, (C, *grid): on the scan's grid (``source``) or the model grid."""
    from metavoxel.io.resample import restore_intensity, to_source_grid

    scaled = prepared.intensity_range is not None
    span = (torch.as_tensor(prepared.intensity_range[:, 1] - prepared.intensity_range[:, 0], dtype=torch.float32)
            if scaled else torch.ones(prepared.tensor.shape[0]))
    span = span.reshape(-1, *([1] * (prepared.tensor.dim() - 1)))  # (C, 1, ..., 1)
    z, mean, sd = result.z[0], result.mean[0], result.sd[0] * span
    if space == "model":
        return {"zscore": z.numpy(), "expected": (restore_intensity(mean, prepared) if scaled else mean).numpy(),
                "sd": sd.numpy()}
    return {"zscore": to_source_grid(z, prepared), "expected": to_source_grid(mean, prepared, invert_intensity=scaled),
            "sd": to_source_grid(sd, prepared)}


def _write(path: Path, data: Any, affine: Any, header: Any) -> Path:
    from metavoxel.io.nifti_write import write_nifti

    return write_nifti(path, data, affine, header, spatial_dims=data.ndim - 1)


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
