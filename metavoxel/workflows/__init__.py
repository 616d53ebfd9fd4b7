"""Library workflows behind the CLI: training a run, sampling from it, predicting a table."""

from metavoxel.workflows.encode import encode_cohort
from metavoxel.workflows.predict import predict_run
from metavoxel.workflows.sample import parse_assignments, sample_run
from metavoxel.workflows.train import train_run

__all__ = ["encode_cohort", "parse_assignments", "predict_run", "sample_run", "train_run"]
