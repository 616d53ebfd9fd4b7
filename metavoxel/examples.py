"""Example model specs, written to ``schemas/examples/`` by ``metavoxel schema`` (and checked by a test).

``t1w_age_sex_latent`` is the starting spec for a cohort of your own: the MetaVoxel paper's model (3D T1w,
age, sex) on the recommended recipe, so every field it does not name is `metavoxel.presets.RECOMMENDED`'s.
``t1w_age_sex_latent_paper`` is the same model on the paper's recipe (`metavoxel.presets.PAPER`), as the paper
benchmark trains it.
"""

from __future__ import annotations

from typing import Any

from metavoxel.presets import PAPER, with_recipe
from metavoxel.toy import TOY_SPEC

__all__ = ["T1W_AGE_SEX_LATENT", "examples"]

SEX = {"name": "sex", "kind": "categorical", "categories": ["F", "M"],
       "aliases": {"female": "F", "male": "M", "f": "F", "m": "M", "woman": "F", "man": "M"}}

#: The MetaVoxel paper's model: 3D T1w (96×112×96 voxels of 1.5 mm, RAS) through a ×4 KL-VAE to a 4×24×28×24 latent,
#: age as a continuous and sex as a categorical variable, one LDM-style U-Net over all three. The recipe is
#: the recommended one (mixture training, v for the latent image, quadratic grid, clean conditioning).
T1W_AGE_SEX_LATENT: dict[str, Any] = {
    "name": "t1w-age-sex-latent",
    "variables": [
        {"name": "image", "kind": "image_latent", "channels": 1, "shape": [96, 112, 96],
         "vae": {"channels": [64, 128, 256], "latent_channels": 4, "num_res_blocks": 2, "norm_num_groups": 32},
         "weights": "vae/vae.safetensors",  # beside this spec; its scale factor is read from vae/vae.json
         "preprocess": {"orientation": "RAS", "spacing": [1.5, 1.5, 1.5], "percentiles": [0.5, 99.5]}},
        {"name": "age", "kind": "continuous", "range": [40.0, 95.0], "unit": "years"},
        SEX,
    ],
    "diffusion": {"timesteps": 1000, "gaussian": {"name": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0195},
                  "discrete": {"name": "cosine"}, "sampling_steps": 50},
    "network": {"spatial_dims": 3, "channels": [128, 256, 512], "attention_levels": [False, True, True],
                "num_res_blocks": 2, "num_head_channels": 32, "norm_num_groups": 32, "cross_attention_dim": 256},
    "seed": 0,
}



def examples(registry: Any = None) -> dict[str, dict[str, Any]]:
    """File stem -> example spec (a plain mapping), as ``schemas/examples/`` holds them.

    Args:
        registry: where `metavoxel.presets.with_recipe` looks up the kinds; default the installed plugins.
    """
    paper = with_recipe(T1W_AGE_SEX_LATENT, PAPER, registry=registry)  # shared t, RePaint, uniform grid, eps
    return {
        "t1w_age_sex_latent": T1W_AGE_SEX_LATENT,
        "t1w_age_sex_latent_paper": {**paper, "name": "t1w-age-sex-latent-paper"},
        "toy_2d_pixel": TOY_SPEC,
    }
