"""Training: the trainer (EMA, checkpoints, resume, DDP), run directories, and a quick in-memory fit."""

from metavoxel.training.checkpoint import load_run
from metavoxel.training.config import TrainConfig
from metavoxel.training.fit import encode_records, fit
from metavoxel.training.trainer import EncodedRecords, TrainingDiverged, TrainResult, train

__all__ = ["EncodedRecords", "TrainConfig", "TrainResult", "TrainingDiverged", "encode_records", "fit", "load_run",
           "train"]
