"""Tiny specs for 2D and 3D joint models, shared by the tests."""

from __future__ import annotations

import copy

# The paper's training recipe (one shared t) and its RePaint conditioning: the suite's tiny models keep the
# behaviour their tests were written for (on the recommended quadratic grid); tests of the level mixture build
# their own specs (tests/diffusion/test_conditioning.py).
PAPER = {"shared": 1.0, "clean": 0.0, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0}

TINY_NET_2D = {"spatial_dims": 2, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
               "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16}


def tiny_spec_2d(**overrides) -> dict:
    """A 2D pixel image (8×8) + continuous age + 3-class categorical group, small everything."""
    spec = {
        "name": "tiny-2d",
        "variables": [
            {"name": "image", "kind": "image", "channels": 1, "shape": [8, 8]},
            {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
            {"name": "group", "kind": "categorical", "categories": ["A", "B", "C"], "aliases": {"alpha": "A"}},
        ],
        "diffusion": {"timesteps": 100, "sampling_steps": 5, "training": dict(PAPER), "conditioning": "repaint"},
        "network": copy.deepcopy(TINY_NET_2D),
    }
    spec.update(overrides)
    return spec


def tiny_latent_spec_3d() -> dict:
    """A 3D image through a random tiny KL-VAE (×2) + age + sex."""
    return {
        "name": "tiny-3d-latent",
        "variables": [
            {"name": "image", "kind": "image_latent", "channels": 1, "shape": [8, 8, 8],
             "vae": {"channels": [4, 4], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4}},
            {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
            {"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
        ],
        "diffusion": {"timesteps": 50, "sampling_steps": 4, "training": dict(PAPER), "conditioning": "repaint"},
        "network": {**TINY_NET_2D, "spatial_dims": 3},
    }
