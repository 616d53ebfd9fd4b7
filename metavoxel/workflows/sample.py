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
               precision: str = "fp32", progress: Callable[[int, int], None] | None = None,
               conditioning: str | None = None, guidance: float = 0.0) -> tuple[SampleResult, list[Path]]:
    """Sample one subject with the given variables fixed; write samples.json, images and a preview.

    Args:
        fix: variable -> text as on the command line (``72.5``, ``F``, ``scan.nii.gz``), parsed by each kind.
        masks: image variable -> a NIfTI mask in the fixed scan's grid (non-zero = keep that voxel).
        space: where images derived from a given scan are written: ``source`` (the scan's own grid and
            header) or ``model`` (the model grid).
        conditioning, guidance: see `metavoxel.JointModel.sample` (default: the model's conditioning, no guidance).
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
            _check_range(var, parsed)
            raw[name] = parsed[None] if isinstance(parsed, torch.Tensor) else [parsed]
    mask_tensors = {name: _mask(model, name, path, prepared.get(name)) for name, path in masks.items()}
    result = model.sample(fix=raw, masks=mask_tensors, num_samples=num_samples, steps=steps, seed=seed,
                          precision=precision, progress=progress, conditioning=conditioning, guidance=guidance)
    out = Path(out)
    files = _write_images(model, result, prepared, set(masks), out, space)
    summary = {"model": str(Path(run_dir).resolve()), "metavoxel": _version(), "created": _now(),
               "fixed": dict(fix), "masks": dict(masks), **result.to_dict()}
    files.append(write_json(out / "samples.json", summary))
    return result, files


def _check_range(var, value) -> None:
    """A fixed value outside the range the model was declared (and trained) for is refused, not extrapolated."""
    bounds = getattr(var, "value_range", None)
    if bounds is not None and not bounds[0] <= float(value) <= bounds[1]:
        raise InputError(f"--fix {var.name}={value:g} is outside the model's range [{bounds[0]:g}, {bounds[1]:g}]; "
                         "the model cannot condition on values it was not trained for")


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
    # an image sampled from a given scan (inpainting, or translation to another image variable on the same
    # grid) is derived from that scan, so it goes back into the scan's own grid
    reference = next(iter(prepared.values()), None)
    for name, var in model.variables.items():
        if not isinstance(var.head, SpatialHead) or (result.is_fixed(name) and name not in masked):
            continue  # a whole given image: nothing new to write
        prep_spec = var.preprocessor.spec if getattr(var, "preprocessor", None) is not None else \
            PreprocessSpec(spacing=[1.0] * len(var.shape))
        for k in range(result.num_samples):
            volume = result.samples[name][0, k]  # (C, *shape)
            path = out / f"{name}_sample{k:02d}.nii.gz"
            source = prepared.get(name, reference if reference is not None and
                                  tuple(reference.tensor.shape[1:]) == tuple(var.shape) else None)
            if source is not None:
                write_result(path, volume, source, space=space)
            else:
                write_nifti(path, volume, model_grid_affine(prep_spec, var.shape))
            caption = {n: values[k] for n, values in scalars.items()}
            write_json(path.with_name(path.name.replace(".nii.gz", ".json")),
                       {"variable": name, "sample": k, "seed": result.seed, "space": space if source is not None else "model",
                        "scalars": caption})
            files += [path]
            previews.append((volume, caption))
    if previews:
        files.append(_preview(out / "preview.png", previews))
    return files


def _preview(path: Path, previews: list) -> Path:
    """Sagittal, coronal and axial mid-slices per sample (one row each, radiological: patient left on the
    right, marked R and L), each row captioned with the sample's scalar values."""
    from metavoxel.io.font import render_text

    rows = []
    for k, (volume, caption) in enumerate(previews):
        v = volume[0].numpy()
        if v.ndim == 2:
            tiles = [_tile(np.rot90(v), marks=True)]
        else:
            x, y, z = (n // 2 for n in v.shape)
            tiles = [_tile(np.rot90(v[x])), _tile(np.rot90(v[:, y]), marks=True), _tile(np.rot90(v[:, :, z]), marks=True)]
        row = np.concatenate([np.pad(t, ((0, 0), (0, 4))) for t in tiles], axis=1)
        text = render_text(f"{k}: " + " ".join(f"{n}={_short(val)}" for n, val in caption.items()), scale=2)
        width = max(row.shape[1], text.shape[1])
        rows += [np.pad(row, ((0, 2), (0, width - row.shape[1]))), np.pad(text, ((0, 6), (0, width - text.shape[1])))]
    width = max(r.shape[1] for r in rows)
    return write_png(path, np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows]))


def _tile(slice2d: np.ndarray, marks: bool = False, zoom: int = 4) -> np.ndarray:
    """One slice scaled to [0, 255] and enlarged; with ``marks``, R on the left edge and L on the right."""
    from metavoxel.io.font import render_text

    tile = montage([slice2d], columns=1, pad=0, zoom=zoom)
    if marks:
        for letter, col in (("R", 1), ("L", tile.shape[1] - 7)):
            glyph = render_text(letter, scale=2)[:, :6]
            region = tile[1:1 + glyph.shape[0], col:col + glyph.shape[1]]
            region[...] = np.maximum(region, glyph[:region.shape[0], :region.shape[1]])
    return tile


def _short(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
