"""Shared fixtures for the network tests: tiny configs and a way past the zero initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def nudge_zero_parameters(module: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Give every all-zero parameter (the zero-initialised output layers) small random values.

    At initialisation the network's outputs are exactly zero, so no input can influence them; tests of
    influence and gradient flow first move the network off that point.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module


@pytest.fixture
def nudge():
    """The `nudge_zero_parameters` function."""
    return nudge_zero_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
