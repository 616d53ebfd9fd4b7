"""The Variable protocol and the building blocks kinds compose."""

from metavoxel.variables.capabilities import (ClipsDenoised, DeclaresRoundTrip, HasCategories, HasLossMap,
                                              HasValueRange, HasVoxelGrid, OwnsFrozenEncoder, PreparesScans)
from metavoxel.variables.discrete import UniformDiscreteVariable
from metavoxel.variables.fast_path import DiscreteFastPath, FusedDiscrete, FusedGaussian, GaussianFastPath
from metavoxel.variables.gaussian import GaussianVariable, Prediction, prediction_field
from metavoxel.variables.raw import MISSING_TEXT, float_values
from metavoxel.variables.summaries import (class_summary, interval_level, interval_rank, interval_summary, level_label,
                                          order_statistic_interval, samples_for_level)
from metavoxel.variables.protocol import BuildContext, ScalarHead, SpatialHead, Variable, VariableKind

__all__ = ["MISSING_TEXT", "BuildContext", "ClipsDenoised", "DeclaresRoundTrip", "DiscreteFastPath", "FusedDiscrete",
           "FusedGaussian", "GaussianFastPath", "GaussianVariable", "HasCategories",
           "HasLossMap", "HasValueRange", "HasVoxelGrid", "OwnsFrozenEncoder", "Prediction", "prediction_field", "PreparesScans",
           "ScalarHead", "SpatialHead",
           "UniformDiscreteVariable", "Variable", "VariableKind", "class_summary", "float_values", "interval_level",
           "interval_rank", "interval_summary", "level_label", "order_statistic_interval", "samples_for_level"]
