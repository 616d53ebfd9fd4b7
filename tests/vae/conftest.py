"""Tiny 3D VAEs and smooth synthetic volumes for the VAE tests."""

from __future__ import annotations

import pytest
import torch
from metavoxel.vae.architecture import VAESpec, build_vae

TINY_SPEC = {"channels": [8, 16], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4}


def blobs(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """(n, 1, size, size, size) Gaussian blobs of random centre and width, values in (0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    out = []
    for _ in range(n):
        centre = torch.rand(3, generator=generator) * 1.2 - 0.6
        radius = float(torch.rand(1, generator=generator)) * 0.3 + 0.2
        out.append(torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / (2 * radius**2)))
    return torch.stack(out)[:, None]  # (n, 1, size, size, size)


@pytest.fixture
def tiny_spec() -> VAESpec:
    return VAESpec(**TINY_SPEC)


@pytest.fixture
def tiny_vae(tiny_spec):
    torch.manual_seed(0)
    return build_vae(3, 1, tiny_spec)


@pytest.fixture(scope="module")
def blob_data() -> tuple[torch.Tensor, torch.Tensor]:
    return blobs(8, seed=0), blobs(4, seed=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Run these tiny convolutions on one thread: 16^3 volumes gain nothing from intra-op threads, and on a
    busy 2-core machine the spinning second thread makes every step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
