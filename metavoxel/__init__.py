"""metavoxel: one diffusion model over the joint distribution of medical images and clinical metadata.

The public API. Plugins (the built-in kinds included) import only what is re-exported here.

Every name but the errors is imported on first use (PEP 562 ``__getattr__``), so ``import metavoxel`` — and
with it ``metavoxel --help`` — does not import torch; ``mv.JointModel`` or ``from metavoxel import ModelSpec``
imports what it needs.
"""

from __future__ import annotations

import importlib

from metavoxel.errors import (CheckpointError, InputError, KernelError, MetavoxelError, OptionError, PluginError,
                              SpecError)

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported when the name is first read).
_LAZY: dict[str, str] = {
    "TOP_CODED": "metavoxel.data.cells",
    **dict.fromkeys(["PreparedImage", "PreprocessSpec", "Preprocessor", "model_grid_affine", "read_nifti",
                     "write_nifti", "write_result"], "metavoxel.io"),
    **dict.fromkeys(["PluginOrigin", "Registry", "build_registry", "default_registry", "hookimpl"],
                    "metavoxel.plugins"),
    **dict.fromkeys(["GaussianProcess", "UniformDiscreteProcess", "make_schedule"], "metavoxel.processes"),
    **dict.fromkeys(["DiffusionSpec", "ModelSpec", "NetworkSpec", "ScheduleSpec", "VariableSpec"], "metavoxel.spec"),
    **dict.fromkeys(["VAESpec", "build_vae"], "metavoxel.vae.architecture"),
    **dict.fromkeys(["VAERecord", "read_vae_record", "recorded_scale_factor"], "metavoxel.vae.checkpoint"),
    **dict.fromkeys(["ExpectedInput", "VAEInputWarning", "input_mismatches"], "metavoxel.vae.expected_input"),
    **dict.fromkeys(["MISSING_TEXT", "BuildContext", "ClipsDenoised", "DeclaresRoundTrip", "DiscreteFastPath",
                     "FusedDiscrete", "FusedGaussian", "GaussianFastPath", "GaussianVariable", "HasCategories",
                     "HasLossMap", "HasValueRange", "HasVoxelGrid", "OwnsFrozenEncoder", "Prediction",
                     "prediction_field", "PreparesScans", "ScalarHead", "SpatialHead", "UniformDiscreteVariable", "Variable",
                     "VariableKind", "class_summary", "float_values", "interval_summary"], "metavoxel.variables"),
    **dict.fromkeys(["JointModel", "PointOptions", "SampleResult", "SamplingOptions"], "metavoxel.diffusion"),
}

__all__ = sorted(["CheckpointError", "InputError", "KernelError", "MetavoxelError", "OptionError", "PluginError",
                  "SpecError",
                  *_LAZY], key=str.casefold)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later reads skip this hook
        return value
    raise AttributeError(f"module 'metavoxel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
