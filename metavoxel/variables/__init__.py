"""The Variable protocol and the building blocks kinds compose."""

from metavoxel.variables.discrete import UniformDiscreteVariable
from metavoxel.variables.gaussian import GaussianVariable
from metavoxel.variables.summaries import class_summary, interval_summary
from metavoxel.variables.protocol import BuildContext, ScalarHead, SpatialHead, Variable, VariableKind

__all__ = ["BuildContext", "GaussianVariable", "ScalarHead", "SpatialHead", "UniformDiscreteVariable", "Variable",
           "VariableKind", "class_summary", "interval_summary"]
