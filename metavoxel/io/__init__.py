"""Reading, preprocessing and writing the files metavoxel touches (NIfTI through nibabel and MONAI)."""

from metavoxel.io.atomic import write_atomic, write_json, write_text
from metavoxel.io.lock import writer_lock
from metavoxel.io.nifti import read_nifti
from metavoxel.io.nifti_write import write_nifti, write_result
from metavoxel.io.outputs import check_outputs
from metavoxel.io.preprocess import (PreparedImage, PreprocessSpec, Preprocessor, SourceGrid, SpacingWarning,
                                     model_grid_affine)
from metavoxel.io.resample import to_source_grid
from metavoxel.io.staging import check_replaceable, staged_folder

__all__ = ["PreparedImage", "PreprocessSpec", "Preprocessor", "SourceGrid", "SpacingWarning", "check_outputs",
           "check_replaceable", "model_grid_affine", "read_nifti", "staged_folder", "to_source_grid", "write_atomic",
           "write_json", "write_nifti", "write_result", "write_text", "writer_lock"]
