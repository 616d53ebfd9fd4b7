"""Shared fixtures: tiny 2D and 3D joint models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings
from tiny_specs import tiny_latent_spec_3d, tiny_spec_2d

settings.register_profile("metavoxel", deadline=None, max_examples=50)
settings.load_profile("metavoxel")


@pytest.fixture
def model_2d():
    import metavoxel as mv

    torch.manual_seed(0)
    return mv.JointModel(tiny_spec_2d())


@pytest.fixture
def model_3d_latent():
    import metavoxel as mv

    return mv.JointModel(tiny_latent_spec_3d())
