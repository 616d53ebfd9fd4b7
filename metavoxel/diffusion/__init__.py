"""The joint diffusion engine: the model, its shared time grid, zero-shot sampling and results."""

from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.joint import JointModel
from metavoxel.diffusion.likelihood import class_probabilities, class_scores, fit_temperature
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import sample

__all__ = ["class_probabilities", "class_scores", "fit_temperature", "JointModel", "SampleResult", "repaint_walk",
           "sample", "time_grid"]
