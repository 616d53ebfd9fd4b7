"""Cheap checks of the image files of a cohort: existence, readability and dimensionality from the
NIfTI header alone, so validating a large cohort never loads its voxels."""

from __future__ import annotations

import os
from pathlib import Path

from metavoxel.errors import InputError
from metavoxel.variables.capabilities import voxel_grid
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["NIFTI_SUFFIXES", "check_image", "image_geometry", "is_image"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_image(variable: Variable) -> bool:
    """A variable fed by image files: one with a spatial head."""
    return isinstance(variable.head, SpatialHead)


def image_geometry(variable: Variable) -> tuple[int, int]:
    """(spatial dims, channels) of an image variable's *voxel* grid (not a latent grid)."""
    channels, shape = voxel_grid(variable)
    return len(shape), channels


def check_image(variable: Variable, text: str, base: Path) -> str:
    """Check one image file cheaply and return its absolute path.

    The file must exist, be NIfTI, have a readable header, and be ``spatial_dims``-D (one channel) or
    ``spatial_dims + 1``-D with the variable's channels on the last axis — the layout `metavoxel.read_nifti`
    reads. A 2D variable also takes (X, Y, 1). Only the header is read (``nib.load(p).shape``).

    Args:
        variable: an image variable.
        text: the path as written in the cohort; relative paths are relative to ``base``.
        base: the folder of the table that holds the path.

    Raises:
        InputError: naming the variable and the file, with what to do.
    """
    import nibabel as nib

    path = Path(text).expanduser()
    path = Path(os.path.abspath(path if path.is_absolute() else base / path))
    name = variable.name
    if not path.is_file():
        raise InputError(f"{name}: file {text!r} does not exist (looked for {str(path)!r}); fix the path — "
                         f"relative paths are relative to {str(base)!r}")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{name}: {text!r} is not a NIfTI file (.nii or .nii.gz); convert it (e.g. with dcm2niix)")
    try:
        shape = tuple(int(s) for s in nib.load(str(path)).shape)
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
    return str(path)
