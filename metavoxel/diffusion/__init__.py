"""The joint diffusion engine in three pieces: variables (what), process (how noise comes and goes), network.

- `metavoxel.diffusion.process.JointDiffusion`: corruption, the joint loss and the sampling defaults.
- `metavoxel.diffusion.sampling.sample`, `metavoxel.diffusion.point.predict_point`: the requests, as functions
  over (process, network, request, options); `metavoxel.diffusion.options` holds the options types.
- `metavoxel.diffusion.network.JointNetwork`: states and levels in, one output per variable out.
- `metavoxel.diffusion.joint.JointModel`: the user-facing bundle of both, built from a spec.
"""

from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.joint import JointModel
from metavoxel.diffusion.likelihood import class_probabilities, class_scores, fit_temperature
from metavoxel.diffusion.mixture import LevelMixture
from metavoxel.diffusion.network import JointNetwork
from metavoxel.diffusion.options import PointOptions, SamplingOptions
from metavoxel.diffusion.point import PointPrediction, predict_point
from metavoxel.diffusion.process import Corrupted, JointDiffusion
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import reverse_chain
from metavoxel.diffusion.sampling import sample

__all__ = ["class_probabilities", "class_scores", "Corrupted", "fit_temperature", "JointDiffusion", "JointModel",
           "JointNetwork", "LevelMixture", "PointOptions", "PointPrediction", "predict_point", "repaint_walk",
           "reverse_chain", "SampleResult", "SamplingOptions", "sample", "time_grid"]
