"""A built-in 2D toy cohort whose images encode a continuous and a categorical variable.

Ground truth: each 16×16 image (values in [0, 1]) holds one Gaussian blob. ``age`` (uniform on
[40, 95]) sets its radius (1.5 → 4 pixels) and brightness (0.4 → 1.0); ``group`` (A, B or C with
probabilities 0.5, 0.3, 0.2) sets its horizontal position (columns 4, 8, 12). Gaussian pixel noise
(SD 0.03) is added. So age is recoverable from the image up to noise, group exactly, and the two are
independent. Used by ``metavoxel demo`` and the engine's learning test.
"""

from __future__ import annotations

from typing import Any

import torch

from metavoxel.presets import PAPER_TRAINING

__all__ = ["TOY_SPEC", "toy_cohort"]

GROUPS = ["A", "B", "C"]
GROUP_PROBS = [0.5, 0.3, 0.2]
AGE_RANGE = (40.0, 95.0)
SIZE = 16

TOY_SPEC: dict[str, Any] = {
    "name": "toy-2d",
    "variables": [
        {"name": "image", "kind": "image", "channels": 1, "shape": [SIZE, SIZE], "intensity_range": [0.0, 1.0]},
        {"name": "age", "kind": "continuous", "range": list(AGE_RANGE), "unit": "years"},
        {"name": "group", "kind": "categorical", "categories": GROUPS},
    ],
    "diffusion": {"timesteps": 1000, "sampling_steps": 25, "grid": "uniform",  # the paper's recipe (presets.PAPER;
                  "training": dict(PAPER_TRAINING), "conditioning": "repaint"},  # both Gaussian kinds default to eps)
    "network": {"spatial_dims": 2, "channels": [32, 64, 64], "attention_levels": [False, False, True],
                "num_res_blocks": 1, "num_head_channels": 32, "norm_num_groups": 16, "cross_attention_dim": 64},
    "seed": 0,
}


def toy_cohort(n: int, *, seed: int = 0, age_shift: float = 0.0) -> dict[str, Any]:
    """n records: ``{"image": (n, 1, 16, 16) tensor, "age": (n,) tensor, "group": list of labels}``.

    ``age_shift``: the same records (same draws, noise included) with the blob drawn at age + age_shift, the
    true counterfactual of each image at that age (``age`` holds the shifted ages; the law extrapolates past 95).
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = AGE_RANGE
    age = lo + torch.rand(n, generator=g) * (hi - lo)
    group = torch.multinomial(torch.tensor(GROUP_PROBS), n, replacement=True, generator=g)
    age = age + float(age_shift)
    u = (age - lo) / (hi - lo)  # (n,) in [0, 1]
    radius = 1.5 + 2.5 * u
    brightness = 0.4 + 0.6 * u
    col = 4.0 + 4.0 * group.float()
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")  # (16, 16)
    d2 = (yy[None] - 7.5) ** 2 + (xx[None] - col[:, None, None]) ** 2  # (n, 16, 16)
    blob = brightness[:, None, None] * torch.exp(-d2 / (2 * radius[:, None, None] ** 2))
    image = (blob + 0.03 * torch.randn(blob.shape, generator=g)).clamp(0, 1)[:, None]  # (n, 1, 16, 16)
    return {"image": image, "age": age, "group": [GROUPS[i] for i in group]}
