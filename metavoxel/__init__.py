"""metavoxel: one diffusion model over the joint distribution of medical images and clinical metadata.

The public API. Plugins (the built-in kinds included) import only what is re-exported here.
"""

from metavoxel.data.cells import TOP_CODED
from metavoxel.errors import CheckpointError, InputError, KernelError, MetavoxelError, PluginError, SpecError
from metavoxel.io import (PreparedImage, PreprocessSpec, Preprocessor, model_grid_affine, read_nifti, write_nifti,
                          write_result)
from metavoxel.plugins import PluginOrigin, Registry, build_registry, default_registry, hookimpl
from metavoxel.processes import GaussianProcess, UniformDiscreteProcess, make_schedule
from metavoxel.spec import DiffusionSpec, ModelSpec, NetworkSpec, ScheduleSpec, VariableSpec
from metavoxel.vae.architecture import VAESpec, build_vae
from metavoxel.vae.checkpoint import VAERecord, read_vae_record, recorded_scale_factor
from metavoxel.vae.expected_input import ExpectedInput, VAEInputWarning, input_mismatches
from metavoxel.variables import (MISSING_TEXT, BuildContext, ClipsDenoised, DeclaresRoundTrip, DiscreteFastPath,
                                 FusedDiscrete, FusedGaussian, GaussianFastPath, GaussianVariable,
                                 HasCategories, HasValueRange, HasVoxelGrid, OwnsFrozenEncoder, Prediction,
                                 prediction_field, PreparesScans,
                                 ScalarHead, SpatialHead, UniformDiscreteVariable, Variable, VariableKind,
                                 class_summary, float_values, interval_summary)

__version__ = "0.1.0"

__all__ = [
    "build_registry", "build_vae", "BuildContext", "CheckpointError", "class_summary", "ClipsDenoised",
    "DeclaresRoundTrip", "DiscreteFastPath", "FusedDiscrete", "FusedGaussian", "GaussianFastPath",
    "HasCategories", "HasValueRange", "HasVoxelGrid", "OwnsFrozenEncoder", "PreparesScans", "default_registry",
    "DiffusionSpec", "ExpectedInput", "float_values", "GaussianProcess", "GaussianVariable", "hookimpl", "input_mismatches", "InputError",
    "interval_summary", "JointModel", "KernelError", "make_schedule", "MetavoxelError", "MISSING_TEXT",
    "model_grid_affine", "ModelSpec", "NetworkSpec", "PluginError", "PluginOrigin", "Prediction", "prediction_field",
    "PreparedImage", "Preprocessor",
    "PreprocessSpec", "read_nifti", "read_vae_record", "recorded_scale_factor", "Registry", "SampleResult", "ScalarHead", "ScheduleSpec", "SpatialHead",
    "SpecError", "TOP_CODED", "UniformDiscreteProcess", "UniformDiscreteVariable", "VAEInputWarning", "VAERecord", "VAESpec", "Variable", "VariableKind",
    "VariableSpec", "write_nifti", "write_result",
]


def __getattr__(name: str):
    # The engine pulls in the network; import it on first use so `metavoxel --help` stays instant.
    if name in ("JointModel", "SampleResult"):
        from metavoxel import diffusion

        return getattr(diffusion, name)
    raise AttributeError(f"module 'metavoxel' has no attribute {name!r}")
