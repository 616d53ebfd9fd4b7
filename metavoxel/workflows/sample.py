"""`sample_run`: fix variables from command-line text, sample the rest, write NIfTI, JSON and previews."""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
import numpy as np
import torch

from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.results import SampleResult
from metavoxel.errors import InputError, check_variable_names
from metavoxel.evaluation.typicality import check_threshold
from metavoxel.io.atomic import write_json
from metavoxel.io.nifti_write import write_inpainted, write_nifti, write_result
from metavoxel.io.outputs import check_outputs
from metavoxel.io.preprocess import PreprocessSpec, model_grid_affine
from metavoxel.io.staging import check_replaceable, staged_folder
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.capabilities import HasValueRange, PreparesScans, voxel_grid
from metavoxel.variables.protocol import SpatialHead
from metavoxel.variables.summary_contract import checked_summary

__all__ = ["SAMPLE_FILES", "MaskWarning", "parse_assignments", "sample_run"]

# what `sample` writes into its --out folder besides samples.json: an earlier output holds nothing else
SAMPLE_FILES = ("preview.png", "preview.pdf", "*_sample[0-9]*.nii.gz", "*_sample[0-9]*.json")


class MaskWarning(UserWarning):
    """A keep-mask that is not 0/1 (a probability map, an image): every non-zero voxel of it is kept."""


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


def sample_run(run_dir: str | Path, fix: Mapping[str, str], masks: Mapping[str, str], out: str | Path,
               options: SamplingOptions | None = None, *, space: str = "source",
               progress: Callable[[int, int], None] | None = None,
               before_write: Callable[[SampleResult], None] | None = None,
               typicality: float | None = 99.0) -> tuple[SampleResult, list[Path]]:
    """Sample one subject with the given variables fixed; write samples.json, images and a preview into ``out``.

    ``out`` is written as one whole (`metavoxel.io.staging`): the files go into a staging folder beside it that
    replaces ``out`` when complete, so ``out`` holds this run's files or the previous run's, never a mix. It
    must be new, empty or an earlier output of ``sample``, and must not hold any file this call reads (the
    run's files, a fixed scan, a mask): all checked before the model samples.

    Args:
        fix: variable -> text as on the command line (``72.5``, ``F``, ``scan.nii.gz``), parsed by each kind.
        masks: image variable -> a NIfTI keep-mask (non-zero = keep that voxel), normally on the fixed scan's grid
            (another grid is moved onto it). Every voxel it keeps is held while sampling (a model voxel partly
            kept is kept) and comes back unchanged in the written file: see `write_inpainted`.
        options: how to sample (`metavoxel.diffusion.options.SamplingOptions`; default: one sample, the model's
            steps, grid, seed and conditioning, no guidance).
        space: where images derived from a given scan are written: ``source`` (the scan's own grid and
            header) or ``model`` (the model grid).
        before_write: called with the result after sampling and before anything is written (the CLI renders
            its table there), so an error in it leaves no files behind.
        typicality: the percentile above which the fixed values are flagged as atypical (a `TypicalityWarning`;
            samples.json's ``typicality`` field holds the percentiles, `metavoxel.evaluation.typicality`); None
            switches the score off. A masked image is scored over the latent locations its mask keeps, against the
            validation records' loss maps masked the same way; the values given with it are not scored, and the
            field's ``note`` says so.

    Raises:
        InputError: an unknown variable, a value the kind cannot parse or outside its declared range, a bad mask,
            an ``out`` that is a file, another folder, or holds an input.
        PluginError: a kind whose summary breaks the summary contract (nothing is written).
    """
    if space not in ("source", "model"):
        raise InputError(f"--space must be source or model, got {space!r}")
    check_threshold(typicality)
    out = Path(out)
    check_replaceable(out, marker="samples.json", command="metavoxel sample", owned=SAMPLE_FILES)
    model = load_run(run_dir)
    check_variable_names(model.variables, fix=fix, mask=masks)
    unfixed = sorted(set(masks) - set(fix))
    if unfixed:
        name = unfixed[0]
        raise InputError(f"--mask {name}=...: a mask says which voxels of a fixed image to keep, but {name!r} is not "
                         f"fixed; add --fix {name}=SCAN.nii.gz (the scan the mask belongs to)")
    scans = [(f"--fix {n}", text) for n, text in fix.items() if isinstance(model.variables[n].head, SpatialHead)]
    check_outputs([*run_inputs(run_dir), *scans, *((f"--mask {n}", path) for n, path in masks.items())],
                  folders=[("--out", out)])
    for name, path in masks.items():
        if _same_file(path, fix[name]):
            raise InputError(f"--mask {name}={path} is the scan --fix {name} gives; a keep-mask is its own file whose "
                             "non-zero voxels are kept (e.g. a brain or lesion mask): give one, or drop --mask to "
                             "hold the whole scan")
    raw, prepared = {}, {}
    for name, text in fix.items():
        var = model.variables[name]
        if isinstance(var, PreparesScans) and var.preprocessor is not None:
            prepared[name] = var.prepare(text)
            raw[name] = prepared[name].tensor[None]
        else:
            parsed = var.parse(text)
            _check_range(var, parsed)
            raw[name] = parsed[None] if isinstance(parsed, torch.Tensor) else [parsed]
    keeps = {name: _mask(model, name, path, prepared.get(name)) for name, path in masks.items()}
    result = model.sample(fix=raw, masks={name: k[0] for name, k in keeps.items()}, options=options,
                          progress=progress)
    scored = _typicality(run_dir, model, raw, fix, typicality, {name: k[0] for name, k in keeps.items()})
    for name, var in model.variables.items():  # every summary keeps the contract before a file is written
        if not isinstance(var.head, SpatialHead):
            checked_summary(var, result.summary(name), result.num_subjects)
    summary = {"model": str(Path(run_dir).resolve()), "metavoxel": _version(), "created": _now(),
               "fixed": dict(fix), "masks": dict(masks), **result.to_dict()}
    if scored is not None:
        summary["typicality"] = scored
    if before_write is not None:
        before_write(result)
    with staged_folder(out) as staging:  # swapped in for out once every file is written
        files = _write_images(model, result, prepared, keeps, dict(masks), staging, space)
        files.append(write_json(staging / "samples.json", summary))
    return result, [out / f.relative_to(staging) for f in files]


def _typicality(run_dir, model, given: Mapping[str, object], fix: Mapping[str, str], threshold: float | None,
                masks: Mapping[str, torch.Tensor]):
    """samples.json's ``typicality`` (a `TypicalityResult` as a dict; None when off or nothing is given), with one
    warning when the given values are atypical; a masked image is scored over what its mask keeps."""
    from metavoxel.workflows.trust import trust_for

    if threshold is None or not given:
        return None
    notes: list[str] = []
    trust = trust_for(run_dir, model, threshold=threshold, report=notes.append)
    if trust.reference is None:
        return {"percentile": None, "note": notes[0] if notes else "note: typicality is n/a: the run's calibration is "
                f"missing or outdated; run `metavoxel calibrate --model {run_dir}`"}
    scans = [fix[n] + (" (masked)" if n in masks else "") for n in given
             if isinstance(model.variables[n].head, SpatialHead)]
    values = [f"{n}={fix[n]}" for n in given if not isinstance(model.variables[n].head, SpatialHead)]
    name = (f"{', '.join(scans)}" + (f" (given with {', '.join(values)})" if values else "")) if scans else \
        f"the values {', '.join(values)}"
    try:
        results = trust.typicality(model, given, [name], masks=masks or None)
    except InputError as exc:  # e.g. a kind without a per-location loss, masked: the answer stands, unscored
        return {"percentile": None, "note": f"note: typicality is n/a: {str(exc).removeprefix('typicality: ')}"}
    scored = results[0].to_dict()
    if scored["percentile"] is None:  # said, not left as a bare null
        why = trust.reference.unscored(results[0].given) or "the run's calibration cannot score these given values"
        return {**scored, "note": f"note: typicality is n/a: {why}"}
    if masks and values:  # said, not left to be inferred from a missing metadata_percentile
        scored["note"] = (f"note: with a masked image only its kept part is scored, not the values given with it "
                          f"({', '.join(values)}): their term would read the whole scan, the part the mask drops "
                          "included")
    return scored


def _check_range(var, value) -> None:
    """A fixed value outside the range the model was declared (and trained) for is refused, not extrapolated."""
    if not isinstance(var, HasValueRange):
        return
    bounds = var.value_range
    if not bounds[0] <= float(value) <= bounds[1]:
        raise InputError(f"--fix {var.name}={value:g} is outside the model's range [{bounds[0]:g}, {bounds[1]:g}]; "
                         "the model cannot condition on values it was not trained for (values outside need a model "
                         "trained with a wider declared range)")


def _mask(model, name: str, path: str, prepared) -> tuple[torch.Tensor, np.ndarray | None]:
    """The keep-mask on the model grid (1, 1, *shape), and on the scan's own grid (None without a scan).

    A mask on another grid than the scan's is first moved onto the scan's grid, then onto the model grid, each
    time with `cover_mask`: a voxel partly kept is kept, so no voxel the user kept is regenerated.
    """
    from metavoxel.io.nifti import read_nifti
    from metavoxel.io.resample import cover_mask

    var = model.variables.get(name)
    if var is None or not isinstance(var.head, SpatialHead):
        raise InputError(f"--mask {name}=...: {name!r} is not an image variable of this model")
    _channels, grid = voxel_grid(var)
    data, affine = read_nifti(path, spatial_dims=len(grid), what=f"mask for {name}")
    keep = (data != 0).any(axis=0)  # (*mask grid): a voxel non-zero in any channel is kept
    kept = data[data != 0]
    if kept.size and (kept != kept[0]).any():  # a probability map or an image: its faint voxels are kept too
        warnings.warn(f"--mask {name}={path} is not a 0/1 mask (non-zero values from {kept.min():g} to "
                      f"{kept.max():g}); every non-zero voxel is kept, {keep.mean():.0%} of the mask's: threshold it "
                      "first to keep less", MaskWarning, stacklevel=3)
    if prepared is None:  # no preprocessing: the mask is on the model grid like the image
        if tuple(keep.shape) != tuple(grid):
            raise InputError(f"mask {path!r} has grid {tuple(keep.shape)}, the model's is {tuple(grid)}; give "
                             "the mask on the grid of the fixed image")
        _keeps_some(keep, name, path)
        return torch.from_numpy(keep)[None, None], None
    source = prepared.source
    same_grid = tuple(keep.shape) == tuple(source.shape) and np.allclose(affine, source.affine, atol=1e-3)
    if not same_grid:
        keep = cover_mask(keep, affine, source.affine, source.shape)
    on_model = cover_mask(keep, source.affine, prepared.affine, grid)
    _keeps_some(on_model, name, path)
    return torch.from_numpy(on_model)[None, None], keep


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (the same path, a symlink or a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _keeps_some(keep: np.ndarray, name: str, path: str) -> None:
    """Refuse a mask that keeps no voxel of the image: inpainting from it would silently ignore the scan."""
    if not keep.any():
        raise InputError(f"--mask {name}={path}: keeps no voxel of the fixed scan on the model's grid (all zero, or "
                         f"outside the scan's field of view); mark the voxels to keep non-zero, or drop --mask and "
                         f"--fix {name} to generate the image freely")


def _write_images(model, result: SampleResult, prepared: dict, keeps: dict, masks: dict[str, str], out: Path,
                  space: str) -> list[Path]:
    """Every sampled (or inpainted) image as NIfTI + JSON sidecar, and one brain-view preview (PNG + PDF).

    An inpainted scan (a fixed image with a mask) is written by `write_inpainted`: inside the keep-mask the
    scan's own voxels, elsewhere the sample in the scan's intensities; its sidecar says which is which. The
    preview shows the model grid: the given scan beside each result, the kept region outlined.
    """
    from metavoxel.figures import BrainImage
    from metavoxel.workflows.previews import caption as describe

    files, previews = [], []
    scalars = {n: result.labels(n)[0] for n, v in model.variables.items() if not isinstance(v.head, SpatialHead)}
    # an image sampled from a given scan (inpainting, or translation to another image variable on the same
    # grid) is derived from that scan, so it goes back into the scan's own grid
    reference = next(iter(prepared.values()), None)
    for name, var in model.variables.items():
        if not isinstance(var.head, SpatialHead) or (result.is_fixed(name) and name not in keeps):
            continue  # a whole given image: nothing new to write
        _channels, grid = voxel_grid(var)
        prep_spec = var.preprocessor.spec if isinstance(var, PreparesScans) and var.preprocessor is not None else \
            PreprocessSpec(spacing=[1.0] * len(grid))
        for k in range(result.num_samples):
            volume = result.samples[name][0, k]  # (C, *shape)
            path = out / f"{name}_sample{k:02d}.nii.gz"
            source = prepared.get(name, reference if reference is not None and
                                  tuple(reference.tensor.shape[1:]) == grid else None)
            caption = {n: values[k] for n, values in scalars.items()}
            sidecar = {"variable": name, "sample": k, "seed": result.seed, "scalars": caption,
                       "space": space if source is not None else "model"}
            model_keep, scan_keep = keeps.get(name, (None, None))
            if scan_keep is not None:
                _path, record = write_inpainted(path, volume, source, scan_keep, space=space,
                                                model_keep=model_keep[0, 0].numpy())
                sidecar["inpainting"] = {"mask": masks[name], **record}
            elif source is not None:
                write_result(path, volume, source, space=space)
            else:
                write_nifti(path, volume, model_grid_affine(prep_spec, grid), spatial_dims=len(grid))
            write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
            files += [path]
            # the preview: the given scan (inpainting, translation) beside each result, on the model grid
            affine = source.affine if source is not None else model_grid_affine(prep_spec, grid)
            keep = model_keep[0, 0] if model_keep is not None else None
            given = name if name in prepared else next(iter(prepared), "")
            row = [BrainImage(source.tensor[0], affine, f"given {given}")] if source is not None else []
            previews.append(row + [BrainImage(volume[0], affine, f"{name} sample {k}: {describe(caption)}", keep=keep)])
    if previews:
        files += _preview(out / "preview.png", previews)
    return files


def _preview(path: Path, rows: list) -> list[Path]:
    """One row per sample (after the given scan, if any), or a grid of up to four per row for generation."""
    from metavoxel.figures import brain_views
    from metavoxel.workflows.previews import UNITS, wrap

    if all(len(row) == 1 for row in rows):
        rows = wrap([row[0] for row in rows])
    return brain_views(path, rows, title="metavoxel sample", units=UNITS)


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
