"""`sample_run`: fix variables from command-line text, sample the rest, write NIfTI, JSON and previews."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
import numpy as np
import torch

from metavoxel.diffusion.results import SampleResult
from metavoxel.errors import InputError
from metavoxel.io.atomic import write_json
from metavoxel.io.nifti_write import write_nifti, write_result
from metavoxel.io.png import montage, write_png
from metavoxel.io.preprocess import PreprocessSpec, model_grid_affine
from metavoxel.training.checkpoint import load_run
from metavoxel.variables.protocol import SpatialHead

__all__ = ["parse_assignments", "sample_run"]


def parse_assignments(items: list[str], what: str) -> dict[str, str]:
    """``["age=72.5", "sex=F"]`` -> ``{"age": "72.5", "sex": "F"}``; InputError on a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise InputError(f"{what} {item!r} is not NAME=VALUE; write e.g. {what} age=72.5")
        if name.strip() in out:
            raise InputError(f"{what} names {name.strip()!r} twice; give each variable once")
        out[name.strip()] = value.strip()
    return out


def sample_run(run_dir: str | Path, fix: Mapping[str, str], masks: Mapping[str, str], out: str | Path, *,
               num_samples: int = 1, steps: int | None = None, seed: int | None = None, space: str = "source",
               precision: str = "fp32", progress: Callable[[int, int], None] | None = None) -> tuple[SampleResult, list[Path]]:
    """Sample one subject with the given variables fixed; write samples.json, images and a preview.

    Args:
        fix: variable -> text as on the command line (``72.5``, ``F``, ``scan.nii.gz``), parsed by each kind.
        masks: image variable -> a NIfTI mask in the fixed scan's grid (non-zero = keep that voxel).
        space: where images derived from a given scan are written: ``source`` (the scan's own grid and
            header) or ``model`` (the model grid).
    """
    if space not in ("source", "model"):
        raise InputError(f"--space must be source or model, got {space!r}")
    model = load_run(run_dir)
    unknown = sorted(set(fix) - set(model.variables))
    if unknown:
        raise InputError(f"--fix: unknown variable(s) {', '.join(unknown)}; this model has {', '.join(model.variables)}")
    raw, prepared = {}, {}
    for name, text in fix.items():
        var = model.variables[name]
        if isinstance(var.head, SpatialHead) and getattr(var, "preprocessor", None) is not None:
            prepared[name] = var.prepare(text)
            raw[name] = prepared[name].tensor[None]
        else:
            parsed = var.parse(text)
            raw[name] = parsed[None] if isinstance(parsed, torch.Tensor) else [parsed]
    mask_tensors = {name: _mask(model, name, path, prepared.get(name)) for name, path in masks.items()}
    result = model.sample(fix=raw, masks=mask_tensors, num_samples=num_samples, steps=steps, seed=seed,
                          precision=precision, progress=progress)
    out = Path(out)
    files = _write_images(model, result, prepared, set(masks), out, space)
    summary = {"model": str(Path(run_dir).resolve()), "metavoxel": _version(), "created": _now(),
               "fixed": dict(fix), "masks": dict(masks), **result.to_dict()}
    files.append(write_json(out / "samples.json", summary))
    return result, files


def _mask(model, name: str, path: str, prepared) -> torch.Tensor:
    from metavoxel.io.nifti import read_nifti
    from metavoxel.io.resample import resample_to_grid

    var = model.variables.get(name)
    if var is None or not isinstance(var.head, SpatialHead):
        raise InputError(f"--mask {name}=...: {name!r} is not an image variable of this model")
    data, affine = read_nifti(path, spatial_dims=len(var.shape), what=f"mask for {name}")
    if prepared is not None:  # bring the mask from the scan's grid onto the model grid, nearest neighbour
        data = resample_to_grid(torch.from_numpy(data), affine, prepared.affine, var.shape, interpolation="nearest")
    mask = torch.as_tensor(np.asarray(data)) > 0.5
    if tuple(mask.shape[1:]) != tuple(var.shape):
        raise InputError(f"mask {path!r} has grid {tuple(mask.shape[1:])}, the model's is {tuple(var.shape)}")
    return mask[None]


def _write_images(model, result: SampleResult, prepared: dict, masked: set[str], out: Path, space: str) -> list[Path]:
    """Every sampled (or inpainted) image as NIfTI + JSON sidecar, and one PNG preview."""
    files, previews = [], []
    scalars = {n: result.labels(n)[0] for n, v in model.variables.items() if not isinstance(v.head, SpatialHead)}
    for name, var in model.variables.items():
        if not isinstance(var.head, SpatialHead) or (result.is_fixed(name) and name not in masked):
            continue  # a whole given image: nothing new to write
        prep_spec = var.preprocessor.spec if getattr(var, "preprocessor", None) is not None else \
            PreprocessSpec(spacing=[1.0] * len(var.shape))
        for k in range(result.num_samples):
            volume = result.samples[name][0, k]  # (C, *shape)
            path = out / f"{name}_sample{k:02d}.nii.gz"
            if name in prepared:
                write_result(path, volume, prepared[name], space=space)
            else:
                write_nifti(path, volume, model_grid_affine(prep_spec, var.shape))
            caption = {n: values[k] for n, values in scalars.items()}
            write_json(path.with_name(path.name.replace(".nii.gz", ".json")),
                       {"variable": name, "sample": k, "seed": result.seed, "space": space if name in prepared else "model",
                        "scalars": caption})
            files += [path]
            previews.append((volume, caption))
    if previews:
        files.append(_preview(out / "preview.png", previews))
    return files


def _preview(path: Path, previews: list) -> Path:
    """Three orthogonal mid-slices per sample, one row each, patient left on the image right (radiological)."""
    tiles = []
    for volume, _caption in previews:
        v = volume[0].numpy()
        if v.ndim == 2:
            tiles += [np.rot90(v)]
            continue
        x, y, z = (s // 2 for s in v.shape)
        tiles += [np.rot90(v[x]), np.rot90(v[:, y])[:, ::-1], np.rot90(v[:, :, z])[:, ::-1]]
    return write_png(path, montage(tiles, columns=3 if previews[0][0].dim() == 4 else 1))


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
