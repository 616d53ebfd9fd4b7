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

__all__ = ["BRAIN_LDM_AGE_SEX", "T1W_AGE_SEX_LATENT", "examples"]

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

#: A starting spec for the autoencoder of MONAI's brain LDM bundle (`brain_image_synthesis_latent_diffusion_model`:
#: an AutoencoderKL trained on UK Biobank T1w, 160×224×160 voxels of 1 mm in MNI space, intensities in [0, 1]),
#: imported with `metavoxel import-vae <bundle> --out brain_ldm_vae --spacing 1,1,1 --orientation RAS`
#: (docs/vae.md). ×8 to a 3×20×28×20 latent. ``vae`` repeats the bundle's config so the spec validates without the
#: folder; with the folder present it may be left out (it is read from brain_ldm_vae/vae.json), and one that
#: disagrees with it is refused.
BRAIN_LDM_AGE_SEX: dict[str, Any] = {
    "name": "brain-ldm-age-sex",
    "variables": [
        {"name": "image", "kind": "image_latent", "channels": 1, "shape": [160, 224, 160],
         "vae": {"channels": [64, 128, 128, 128], "latent_channels": 3, "num_res_blocks": 2, "norm_num_groups": 32,
                 "norm_eps": 1e-6, "attention_levels": [False, False, False, False], "nonlocal_attention": False},
         "weights": "brain_ldm_vae",  # the folder import-vae wrote, beside this spec; the scale factor is
                                      # computed on your cohort's training split by `encode`/`train`
         # Scans rigidly registered to MNI (the bundle used UniRes); resampled at 1 mm and cropped/padded to
         # 160×224×160 around the field of view's centre; the bundle states only [0, 1] for the intensities.
         "preprocess": {"orientation": "RAS", "spacing": [1.0, 1.0, 1.0], "percentiles": [0.0, 99.5]}},
        {"name": "age", "kind": "continuous", "range": [40.0, 90.0], "unit": "years"},  # your cohort's range
        SEX,
    ],
    "diffusion": {"timesteps": 1000, "sampling_steps": 50},
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
        "brain_ldm_age_sex": BRAIN_LDM_AGE_SEX,
        "t1w_age_sex_latent": T1W_AGE_SEX_LATENT,
        "t1w_age_sex_latent_paper": {**paper, "name": "t1w-age-sex-latent-paper"},
        "toy_2d_pixel": TOY_SPEC,
    }
