"""Checks of the image files of a cohort, before anything is written or trained.

The header gives existence, readability and dimensionality; then the voxels are read once to find what
makes a scan unusable later — data that cannot be decompressed, NaN or infinite voxels, an empty (all
zero) or constant volume, non-numeric voxels, an affine that is not finite or not invertible. So every
such problem is reported with its row and column together with the table's other problems. Reading
the voxels costs one decompression per scan (about as long as the encode that follows); a file is
checked once per process while its size and modification time stay the same.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metavoxel.errors import InputError
from metavoxel.io.nifti import FOLDER_GIVEN
from metavoxel.variables.capabilities import voxel_grid
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["NIFTI_SUFFIXES", "check_image", "check_voxels", "image_geometry", "is_image", "warn_reused"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHECKED: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime_ns) -> voxel problem or None


def is_image(variable: Variable) -> bool:
    """A variable fed by image files: one with a spatial head."""
    return isinstance(variable.head, SpatialHead)


def image_geometry(variable: Variable) -> tuple[int, int]:
    """(spatial dims, channels) of an image variable's *voxel* grid (not a latent grid)."""
    channels, shape = voxel_grid(variable)
    return len(shape), channels


def check_image(variable: Variable, text: str, base: Path, *, voxels: bool = True) -> str:
    """Check one image file and return its absolute path.

    The file must exist, be NIfTI, have a readable header, and be ``spatial_dims``-D (one channel) or
    ``spatial_dims + 1``-D with the variable's channels on the last axis — the layout `metavoxel.read_nifti`
    reads. A 2D variable also takes (X, Y, 1). With ``voxels`` its data must pass `check_voxels`.

    Args:
        variable: an image variable.
        text: the path as written in the cohort; relative paths are relative to ``base``.
        base: the folder of the table that holds the path.
        voxels: also read the voxels (`check_voxels`); False reads the header only.

    Raises:
        InputError: naming the variable and the file, with what to do.
    """
    import nibabel as nib

    path = Path(text).expanduser()
    path = Path(os.path.abspath(path if path.is_absolute() else base / path))
    name = variable.name
    if path.is_dir():
        raise InputError(f"{name}: {text!r} {FOLDER_GIVEN}")
    if not path.is_file():
        raise InputError(f"{name}: file {text!r} does not exist (looked for {str(path)!r}); fix the path — "
                         f"relative paths are relative to {str(base)!r}")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{name}: {text!r} is not a NIfTI file (.nii or .nii.gz); convert it (e.g. with dcm2niix)")
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(f"{name}: cannot read {text!r} as NIfTI ({type(exc).__name__}: {exc}); check the file "
                         "is not truncated or corrupt") from None
    spatial, channels = image_geometry(variable)
    if spatial == 2 and len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    file_channels = 1 if len(shape) == spatial else shape[-1] if len(shape) == spatial + 1 else None
    if file_channels is None:
        raise InputError(f"{name}: {text!r} has {len(shape)} dimensions {shape}; expected a {spatial}D image "
                         f"(or {spatial + 1}D with {channels} channel(s) on the last axis); the model is {spatial}D")
    if file_channels != channels:
        raise InputError(f"{name}: {text!r} has shape {shape}, i.e. {file_channels} channel(s); the variable has "
                         f"{channels} (a {spatial}D image, or channels on the last axis); give matching images or "
                         "change the variable's channels")
    if voxels:
        problem = check_voxels(img, path)
        if problem is not None:
            raise InputError(f"{name}: {text!r} {problem}")
    return str(path)


def check_voxels(img, path: Path) -> str | None:
    """What makes a loaded NIfTI's contents unusable, as the end of a sentence about the file; None if fine.

    Checked: numeric voxel type; the data decompresses and reads; no NaN or infinite voxel (after the
    header's scale factors); not all zero and not constant; a finite affine with non-zero voxel sizes.

    Args:
        img: a ``nibabel`` NIfTI image (header already read).
        path: its file (the key of the once-per-process memo).
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _voxel_problem(img)
    return _CHECKED[key]


def _voxel_problem(img) -> str | None:
    dtype = np.dtype(img.header.get_data_dtype())
    if dtype.kind not in "biuf":
        return (f"holds voxels of type {dtype} (expected real numbers: integers or floats); convert it to a "
                "single-valued scan")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        return (f"has an affine that is not finite or has a zero voxel size ({_row(affine[:3, :3])}); fix the "
                "header's pixdim/sform/qform, e.g. by re-converting the scan")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # truncated or corrupt data behind a good header
        return (f"has a readable header but its voxels cannot be read ({type(exc).__name__}: {exc}); the file is "
                "truncated or corrupt: copy or convert it again")
    nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
    if nan or inf:
        bad = " and ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "infinite")) if n)
        return (f"has {bad} voxel{'s' if nan + inf > 1 else ''} (of {data.size}); expected finite values: set them "
                "to a real intensity (e.g. 0 outside the head), or leave the cell empty to use the row's metadata only")
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        what = "every voxel is 0: the scan is empty" if lo == 0 else f"every voxel is {lo:g}: the scan holds no image"
        return f"is constant ({what}); give the file of the actual scan, or leave the cell empty"
    return None


def warn_reused(source: str, records: Sequence, images: Sequence[str]) -> None:
    """One `CohortWarning` when one image file serves several records, naming them (rows, or BIDS files).

    Every record is read as a scan of its own, so a table that gives two subjects (or two sessions) the same
    file — a copy-paste slip, or one scan linked under two names — trains and answers as if there were two
    scans. Files are compared by identity (device and inode), so symlinks and hard links of one file count.
    """
    from metavoxel.data.problems import CohortWarning, list_places

    groups: dict[object, list[tuple[str, str]]] = {}
    for record in records:
        for name in images:
            path = record.values.get(name)
            if not path:
                continue
            try:
                stat = os.stat(path)
                key: object = (stat.st_dev, stat.st_ino)
            except OSError:
                key = os.path.realpath(path)
            groups.setdefault(key, []).append((record.source, path))
    shared = [group for group in groups.values() if len(group) > 1]
    if shared:
        first = shared[0]
        more = f"; {len(shared) - 1} more file(s) are shared likewise" if len(shared) > 1 else ""
        warnings.warn(f"{source}: one image file serves {len(first)} records ({list_places([s for s, _ in first])}: "
                      f"{first[0][1]}){more}; each record is read as a scan of its own, so give each its own scan or "
                      "keep one row", CohortWarning, stacklevel=3)


def _row(matrix: np.ndarray) -> str:
    return "voxel sizes " + " × ".join(f"{v:.3g}" for v in np.linalg.norm(matrix, axis=0)) + " mm"
