"""Reading and writing the files metavoxel touches (NIfTI through nibabel)."""

from metavoxel.io.nifti import read_nifti

__all__ = ["read_nifti"]
