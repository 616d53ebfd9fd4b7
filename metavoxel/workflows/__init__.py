"""Library workflows behind the CLI: training a run, sampling from it, predicting a table.

Each workflow is imported on first use, so sampling, prediction and evaluation never import the trainer.
"""

from __future__ import annotations

import importlib

__all__ = ["encode_cohort", "parse_assignments", "predict_run", "sample_run", "train_run"]

_MODULES = {"encode_cohort": "encode", "parse_assignments": "sample", "predict_run": "predict",
            "sample_run": "sample", "train_run": "train"}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(f"metavoxel.workflows.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'metavoxel.workflows' has no attribute {name!r}")
