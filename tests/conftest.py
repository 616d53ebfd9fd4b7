"""Shared fixtures: tiny 2D and 3D joint models."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers, one thread each, on a 2-core machine
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
import torch

from hypothesis import settings
from tiny_specs import tiny_latent_spec_3d, tiny_spec_2d

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# The conformance suite's pytest plugin is opt-in (as for a plugin author, docs/plugins.md): loaded here by name.
pytest_plugins = ["metavoxel.testing.pytest_plugin"]

settings.register_profile("metavoxel", deadline=None, max_examples=50)
# Under CI (CI set, as .ci/run runs) every run draws the same examples: a property test fails for a reason,
# not for a draw. Locally examples stay random (and the failing ones are replayed from .hypothesis/).
settings.register_profile("metavoxel-ci", parent=settings.get_profile("metavoxel"), derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("metavoxel-ci" if os.environ.get("CI") else "metavoxel"))


@pytest.fixture
def model_2d():
    import metavoxel as mv

    torch.manual_seed(0)
    return mv.JointModel(tiny_spec_2d())


@pytest.fixture
def model_3d_latent():
    import metavoxel as mv

    return mv.JointModel(tiny_latent_spec_3d())
