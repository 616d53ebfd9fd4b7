"""The joint diffusion engine in three pieces: variables (what), process (how noise comes and goes), network.

- `metavoxel.diffusion.process.JointDiffusion`: corruption, the joint loss and sampling; takes the network.
- `metavoxel.diffusion.network.JointNetwork`: states and levels in, one output per variable out.
- `metavoxel.diffusion.joint.JointModel`: the user-facing bundle of both, built from a spec.
"""

from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.joint import JointModel
from metavoxel.diffusion.likelihood import class_probabilities, class_scores, fit_temperature
from metavoxel.diffusion.mixture import LevelMixture
from metavoxel.diffusion.network import JointNetwork
from metavoxel.diffusion.point import PointPrediction
from metavoxel.diffusion.process import Corrupted, JointDiffusion
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import reverse_chain

__all__ = ["class_probabilities", "class_scores", "Corrupted", "fit_temperature", "JointDiffusion", "JointModel",
           "JointNetwork", "LevelMixture", "PointPrediction", "repaint_walk", "reverse_chain", "SampleResult", "sample", "time_grid"]


def sample(model: JointModel, fix=None, masks=None, **options) -> SampleResult:
    """`JointModel.sample` as a function (kept for the pre-0.2 API)."""
    return model.sample(fix, masks, **options)
