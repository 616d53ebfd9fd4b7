"""NIfTI output: every image metavoxel writes is a float32 NIfTI written by nibabel, atomically.

Conventions: the affine maps voxel indices (at voxel centres) to RAS+ world millimetres, and is written
into BOTH the sform and the qform (MONAI's saver resets their codes, so it is not used). The codes are
copied from a given source header when it sets them, else 1 (scanner). The qform cannot hold shears:
nibabel stores the closest shear-free affine there, while the sform keeps the exact one.

What a reader sees: the sform is the affine with each entry rounded to float32 (relative error 2⁻²⁴,
6e-8). The qform holds a rotation as three float32 quaternion components, the fourth recomputed by the
reader, so near a 180° rotation that fourth loses half the digits: each rotation entry of the qform is
within `QFORM_ROTATION_TOLERANCE` (4·√ε₃₂ ≈ 1.4e-3) times the voxel size of its column — up to about
1.4 µm per mm of voxel, far below a voxel — and its offsets are float32-rounded. Software that prefers
the sform (nibabel, MONAI, FSL and ITK when sform_code > 0) uses the exact affine.

Arrays are channel-first (C, *spatial) in memory and channel-last on disk — the layout
`metavoxel.io.nifti.read_nifti` reads back: (X, Y, Z, C) for a 3D image with C > 1, (X, Y, Z) for C = 1.

Generated images are written on `metavoxel.io.preprocess.model_grid_affine`; a result derived from a
user's scan is written back on the scan's own grid and header by default (``space="source"``), or on the
scan's model grid (``space="model"``), by `write_result`. An inpainted scan is written by `write_inpainted`:
what the user kept is the scan's own voxels, unchanged, in the scan's data type and scaling; only the rest is
generated, in the scan's intensity units.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from metavoxel.errors import InputError
from metavoxel.io.atomic import write_atomic
from metavoxel.io.resample import inside_grid, restore_intensity, to_source_grid

if TYPE_CHECKING:
    from metavoxel.io.preprocess import PreparedImage

__all__ = ["QFORM_ROTATION_TOLERANCE", "write_inpainted", "write_nifti", "write_result"]

SUFFIXES = (".nii.gz", ".nii")
SCANNER = 1  # NIfTI xform code "scanner anatomical"
# The reader recomputes the quaternion's w = sqrt(1 - b² - c² - d²) from float32 b, c, d and zeroes a w² below
# 3·ε₃₂ (nibabel), so w is off by at most sqrt(4·ε₃₂) = 2·√ε₃₂, and a rotation entry (2·(bc - ad), ...) by
# twice that.
QFORM_ROTATION_TOLERANCE = 4 * math.sqrt(float(np.finfo(np.float32).eps))  # per mm of the column's voxel size


def write_nifti(path: str | Path, data: np.ndarray | torch.Tensor, affine: np.ndarray, header: Any = None, *,
                spatial_dims: int | None = None) -> Path:
    """Write an image as a float32 NIfTI (``.nii.gz`` compressed, ``.nii`` plain), atomically.

    The file is written under a temporary name in the same folder and renamed over ``path``
    (`metavoxel.io.atomic.write_atomic`), so readers never see a partial file and a failed write leaves
    nothing behind (an existing file stays as it was). ``.nii.gz`` uses gzip level 1, as nibabel does.

    Args:
        path: destination ending in ``.nii.gz`` or ``.nii``; missing parent folders are created.
        data: (C, *spatial) or (*spatial); channels go to the last axis on disk, a single channel is dropped.
        affine: (4, 4) voxel-to-world affine, written to both sform and qform.
        header: optional nibabel header of the scan the result derives from: its sform/qform codes (when
            non-zero), units, description and other fields are kept; shape, dtype and scaling are reset.
        spatial_dims: 2 or 3. Default: 3 unless ``data`` is 2D; give 2 for a 2D image with channels (C, X, Y).

    Returns:
        The path written.

    Raises:
        InputError: the suffix is not .nii/.nii.gz, or ``data`` does not have the stated dimensionality.
    """
    import nibabel as nib

    path = Path(path)
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
    if suffix is None or path.name == suffix:
        raise InputError(f"cannot write {str(path)!r}: NIfTI output needs a file name ending in .nii.gz "
                         "(compressed) or .nii; change the output name")
    array = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data, dtype=np.float32)
    dims = spatial_dims or (2 if array.ndim == 2 else 3)
    if array.ndim == dims + 1:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)  # channels last on disk
    elif array.ndim != dims:
        raise InputError(f"cannot write {str(path)!r}: expected a {dims}D image (*spatial) or (C, *spatial), got "
                         f"shape {tuple(array.shape)}; pass spatial_dims to say which")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"cannot write {str(path)!r}: the affine must be a finite 4×4 matrix, got shape "
                         f"{affine.shape}")

    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(np.ascontiguousarray(array), affine, header=None if header is None else header.copy())
    hdr = image.header
    codes = [int(header[key]) if header is not None else 0 for key in ("sform_code", "qform_code")]
    image.set_sform(affine, code=codes[0] or SCANNER)
    image.set_qform(affine, code=codes[1] or SCANNER)
    image.set_data_dtype(np.float32)
    hdr.set_slope_inter(None, None)  # float32 data are stored unscaled
    hdr["cal_min"], hdr["cal_max"] = 0.0, 0.0  # the display range of the source no longer applies
    if header is None:
        hdr.set_xyzt_units("mm")

    raw = image.to_bytes()  # the whole single-file NIfTI (header + float32 voxels)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(gzip.compress(raw, compresslevel=1, mtime=0) if suffix == ".nii.gz" else raw)

    write_atomic(path, write)
    return path


def write_result(path: str | Path, volume: np.ndarray | torch.Tensor, prepared: PreparedImage, *,
                 space: Literal["source", "model"] = "source", invert_intensity: bool = False) -> Path:
    """Write a result derived from a user's scan (inpainting, translation).

    Args:
        path: destination (.nii.gz or .nii).
        volume: (C, *shape) on the model grid of ``prepared``.
        prepared: the `PreparedImage` of the scan the result derives from.
        space: "source" (default): resampled onto the scan's own grid and written with its header, so it
            overlays the original; "model": on the scan's model grid with its affine (``--space model``).
        invert_intensity: map [0, 1] back to the scan's intensities with the recorded percentiles.

    Returns:
        The path written.
    """
    dims = len(prepared.source.shape)
    if space == "source":
        data = to_source_grid(volume, prepared, invert_intensity=invert_intensity)
        return write_nifti(path, data, prepared.source.affine, prepared.source.header, spatial_dims=dims)
    if space != "model":
        raise InputError(f"space must be 'source' (the scan's own grid) or 'model' (the model grid), got {space!r}")
    values = torch.as_tensor(volume).detach().to("cpu", torch.float32)
    if invert_intensity:
        values = restore_intensity(values if values.dim() > dims else values[None], prepared)
    return write_nifti(path, values, prepared.affine, _codes_only(prepared.source.header), spatial_dims=dims)


def _codes_only(header: Any) -> Any:
    """A fresh header carrying only the scan's sform/qform codes (its world), not its grid."""
    import nibabel as nib

    fresh = nib.Nifti1Header()
    fresh.set_xyzt_units("mm")
    for key in ("sform_code", "qform_code"):
        fresh[key] = int(header[key]) if header is not None else 0
    return fresh


def write_inpainted(path: str | Path, volume: np.ndarray | torch.Tensor, prepared: PreparedImage,
                    keep: np.ndarray, *, space: Literal["source", "model"] = "source",
                    model_keep: np.ndarray | None = None) -> tuple[Path, dict[str, Any]]:
    """Write an inpainted scan: the kept voxels are the scan's own, only the rest is generated.

    ``space="source"`` (the scan's own grid and header): inside ``keep`` the file holds the scan's stored voxels
    bit for bit, in the scan's data type with its ``scl_slope``/``scl_inter`` (integer and float scans; any other
    type is written float32 with the same values). Elsewhere the model's result is mapped onto the scan's grid and
    back to the scan's intensity scale (`restore_intensity` undoes the percentile scaling), rounded and clipped to
    the data type. Voxels the model grid does not reach (centres beyond its outermost voxel centres) cannot be
    generated: they keep the scan's own values too, and are counted apart.

    ``space="model"`` (the scan's model grid): the result in the scan's intensity units, float32; the kept region is
    ``model_keep`` (the keep-mask on the model grid the sampler held), whose values are the scan resampled.

    Args:
        path: destination (.nii.gz or .nii).
        volume: (C, *shape) sampled on the model grid of ``prepared``, in the model's units.
        prepared: the `PreparedImage` of the scan.
        keep: bool (*source.shape): the voxels of the scan the user kept.
        space: "source" or "model".
        model_keep: bool (*shape) on the model grid; needed for ``space="model"``.

    Returns:
        ``(path, record)``: ``record`` states what was kept and what was generated (voxel counts, data type,
        intensity mapping) for the image's JSON sidecar.

    Raises:
        InputError: ``keep`` is not on the scan's grid, ``space`` is unknown, or ``model_keep`` is missing.
    """
    import nibabel as nib

    source = prepared.source
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != tuple(source.shape):
        raise InputError(f"write_inpainted: expected a keep-mask on the grid of {str(source.path)!r} "
                         f"{tuple(source.shape)}, got {keep.shape}; map the mask onto the scan first")
    scaled = prepared.intensity_range is not None
    intensity = ({"mapped_from": [0.0, 1.0], "mapped_to": [list(map(float, r)) for r in prepared.intensity_range],
                  "how": "the preprocessing's percentile scaling undone per channel: lo + v * (hi - lo)"}
                 if scaled else {"how": "none: the model works in the scan's units"})
    record: dict[str, Any] = {"source": str(source.path), "space": space, "intensity": intensity}
    if space == "model":
        if model_keep is None:
            raise InputError("write_inpainted: space='model' needs model_keep, the keep-mask on the model grid")
        values = torch.as_tensor(volume).detach().to("cpu", torch.float32)
        if scaled:
            values = restore_intensity(values, prepared)
        written = write_nifti(path, values, prepared.affine, _codes_only(source.header),
                              spatial_dims=len(source.shape))
        kept = int(np.asarray(model_keep, dtype=bool).sum())
        record.update(dtype="float32", kept={"voxels": kept, "values": "the scan resampled onto the model grid"},
                      generated={"voxels": int(np.prod(model_keep.shape)) - kept,
                                 "values": "sampled by the model, in the scan's intensity units"})
        return written, record
    if space != "source":
        raise InputError(f"space must be 'source' (the scan's own grid) or 'model' (the model grid), got {space!r}")

    image = nib.load(str(source.path))
    stored = np.asanyarray(image.dataobj.get_unscaled())  # the voxels as stored on disk
    slope, inter = _scaling(image)
    generated = to_source_grid(volume, prepared, invert_intensity=scaled)  # (C, *source.shape) in scan units
    reached = inside_grid(source.affine, source.shape, prepared.affine, prepared.tensor.shape[1:])
    fill = reached & ~keep
    dtype = np.dtype(stored.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = np.clip(np.rint((generated - inter) / slope), info.min, info.max)
    elif dtype.kind == "f":
        raw = (generated - inter) / slope
    else:  # complex, RGB, ...: written as float32 values
        dtype, slope, inter = np.dtype(np.float32), 1.0, 0.0
        stored = np.asarray(image.get_fdata(dtype=np.float32))
        raw = generated
    raw = _disk_layout(raw, stored.shape).astype(dtype)
    fill_disk = fill.reshape(fill.shape + (1,) * (stored.ndim - fill.ndim))  # (X, Y[, Z]) -> the disk layout
    data = np.where(fill_disk, raw, stored).astype(dtype)

    header = source.header.copy()
    out_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    out = out_class(np.ascontiguousarray(data), source.affine, header=header)
    codes = [int(header[key]) for key in ("sform_code", "qform_code")]
    out.set_sform(source.affine, code=codes[0] or SCANNER)
    out.set_qform(source.affine, code=codes[1] or SCANNER)
    out.set_data_dtype(dtype)
    out.header.set_slope_inter(slope, inter)  # the scan's own scaling: kept voxels read back exactly as before
    written = _write_image(path, out)
    outside = int((~reached & ~keep).sum())
    record.update(
        dtype=dtype.name, scl_slope=slope, scl_inter=inter,
        kept={"voxels": int(keep.sum()), "values": "the scan's own voxels, unchanged"},
        generated={"voxels": int(fill.sum()), "values": "sampled by the model on its grid, mapped back onto the "
                   "scan's grid and intensities" + (", rounded to the data type" if dtype.kind in "iu" else "")},
        not_generated={"voxels": outside, "values": "the scan's own voxels: outside the model grid, which the "
                       "model cannot generate"})
    return written, record


def _scaling(image: Any) -> tuple[float, float]:
    """The stored scaling (slope, intercept) of a nibabel image; (1, 0) when none applies."""
    slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def _disk_layout(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Channel-first (C, *spatial) values in the on-disk layout ``shape``: channels last, a single one dropped."""
    return (values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1)).reshape(shape)


def _write_image(path: str | Path, image: Any) -> Path:
    """Write a nibabel image atomically (``.nii.gz`` gzip level 1, as `write_nifti`)."""
    path = Path(path)
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
    if suffix is None or path.name == suffix:
        raise InputError(f"cannot write {str(path)!r}: NIfTI output needs a file name ending in .nii.gz "
                         "(compressed) or .nii; change the output name")
    raw = image.to_bytes()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(gzip.compress(raw, compresslevel=1, mtime=0) if suffix == ".nii.gz" else raw)

    write_atomic(path, write)
    return path
