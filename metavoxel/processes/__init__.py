"""Shared diffusion building blocks that variable kinds compose: schedules, Gaussian and discrete processes."""

from metavoxel.processes.discrete import UniformDiscreteProcess
from metavoxel.processes.gaussian import PREDICTIONS, GaussianProcess
from metavoxel.processes.schedules import SCHEDULES, make_schedule

__all__ = ["PREDICTIONS", "SCHEDULES", "GaussianProcess", "UniformDiscreteProcess", "make_schedule"]
