"""NIfTI input through nibabel, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metavoxel.errors import InputError

__all__ = ["FOLDER_GIVEN", "read_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FOLDER_GIVEN = ("is a folder, not an image file; give a NIfTI file (.nii or .nii.gz) — a DICOM series (a folder of "
                ".dcm files) needs converting first, e.g. with dcm2niix")


def read_nifti(path: str | Path, *, spatial_dims: int = 3, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file as a channel-first float32 array and its 4×4 affine.

    A 3D file gives (1, X, Y, Z); a 4D file gives (C, X, Y, Z) from its last axis. With
    ``spatial_dims=2`` a file of shape (X, Y) or (X, Y, 1) gives (1, X, Y).

    Raises:
        InputError: the file is missing or a folder, not NIfTI, unreadable, or of the wrong dimensionality.
    """
    import nibabel as nib

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what}: {str(path)!r} {FOLDER_GIVEN}")
    if not path.is_file():
        raise InputError(f"{what}: file {str(path)!r} does not exist; give the path of a .nii or .nii.gz file")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{what}: {str(path)!r} is not a NIfTI file; convert it to .nii.gz (e.g. with dcm2niix)")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{what}: cannot read {str(path)!r} as NIfTI ({type(exc).__name__}: {exc}); "
                         "check the file is not truncated or corrupt") from None
    if spatial_dims == 2 and data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == spatial_dims:
        data = data[None]
    elif data.ndim == spatial_dims + 1:
        data = np.moveaxis(data, -1, 0)
    else:
        raise InputError(f"{what}: {str(path)!r} has {data.ndim} dimensions {tuple(data.shape)}; expected a "
                         f"{spatial_dims}D image (optionally with channels on the last axis)")
    if not np.isfinite(data).all():
        raise InputError(f"{what}: {str(path)!r} contains NaN or infinite voxels; clean the image first")
    return np.ascontiguousarray(data, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)
