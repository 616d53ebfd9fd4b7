"""One phantom subject: draw it, render its anatomy (procedural or template), add the scanner nuisance.

Scanner space to anatomy space: for a voxel centre ``x`` (world mm of the phantom grid) the anatomy is
read at the canonical point

    p = diag(1 / (s a)) (R^T (x - t) + d(x))

where ``R`` and ``t`` are the head's misregistration (rotation about the FOV centre, translation),
``d`` the smooth random displacement (mm; a 5³ control grid over the field of view, trilinearly
upsampled), ``s`` the linear head scale (sex x global) and ``a`` the per-axis aspect (sex x jitter).
After the anatomy is rendered, the image is ``M(x) · Rice(I(p) · e^{β(x)}, σ)`` with ``β`` the smooth
log-bias field (same control grid), ``σ = noise`` (WM = 1) and ``M`` the brain mask (skull-stripped:
exactly 0 outside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metavoxel.errors import InputError
from metavoxel.phantom.anatomy import ENVELOPE_MM, VENTRICLE, procedural_brain
from metavoxel.phantom.config import PhantomConfig, grid_affine, world_axes
from metavoxel.phantom.model import INTENSITY, Draws, draw_subject, participant_id

__all__ = ["PhantomSubject", "anatomy_coords", "phantom_subject", "scanner_finish"]


@dataclass
class PhantomSubject:
    """One synthetic participant.

    Attributes:
        index: 0-based position in the cohort (``participant_id`` is ``sub-{index + 1:04d}``).
        image: (X, Y, Z) float32 T1w-like image, 0 outside the brain.
        affine: (4, 4) RAS+ voxel-to-world affine (`metavoxel.phantom.config.grid_affine`).
        age: years, rounded to 0.1 (the value participants.tsv holds and the image was made with).
        sex: "F" or "M".
        truth: the ground-truth parameters (JSON-ready floats and lists; `metavoxel.phantom` documents them).
        tissues: with ``tissues=True`` on the procedural path, (X, Y, Z) float32 fractions ``csf`` (ventricles
            included), ``ventricles``, ``gm``, ``deep_gm``, ``wm`` and ``brain`` of every voxel; else None.
    """

    index: int
    image: np.ndarray
    affine: np.ndarray
    age: float
    sex: str
    truth: dict[str, Any]
    tissues: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def participant_id(self) -> str:
        return participant_id(self.index)


def phantom_subject(config: PhantomConfig, index: int, *, tissues: bool = False,
                    counterfactual: Mapping[str, Any] | None = None) -> PhantomSubject:
    """Render subject ``index`` (0-based) of the cohort ``config`` describes.

    The result depends only on ``config`` (minus ``subjects``) and ``index``: the same call gives the same
    bytes, and subject ``k`` is the same whatever the cohort size.

    Args:
        config: the cohort settings.
        index: 0 <= index < config.subjects.
        tissues: also return the ground-truth tissue fractions (procedural anatomy only).
        counterfactual: render the subject at other values, ``{"age": 81}``, ``{"age": "+10"}`` (relative to
            its drawn age), ``{"sex": "M"}``: the same anatomy, nuisance and noise draws, other demographics
            (`metavoxel.phantom.model.counterfactual_values`); ``truth["factual"]`` holds the drawn values.

    Raises:
        InputError: the index is out of range, the template cannot be read, or a bad counterfactual.
    """
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < config.subjects:
        raise InputError(f"subject index must be an integer in [0, {config.subjects}) for a cohort of "
                         f"{config.subjects}, got {index!r}; raise config.subjects or pass a smaller index")
    draws = draw_subject(config, int(index), counterfactual)
    coords, bias = anatomy_coords(config, draws)
    truth = _common_truth(config, draws)
    if counterfactual:
        factual = draw_subject(config, int(index))
        truth["factual"] = {"age": factual.age, "sex": factual.sex}
    if config.template is None:
        voxel = float(np.mean(config.voxel_mm)) / (draws.scale * float(np.mean(draws.aspect)))
        maps = procedural_brain(coords, draws, voxel)
        clean, mask = maps["intensity"], maps["brain"] > 0
        truth.update(_procedural_truth(draws, maps, float(np.prod(config.voxel_mm)) / 1000.0))
        extra = ({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in maps.items() if k != "intensity"}
                 if tissues else None)
    else:
        from metavoxel.phantom.template import load_template, template_brain

        template = load_template(config.template, config)
        clean, mask, template_truth = template_brain(template, coords, draws)
        truth.update(template_truth)
        extra = None
    image = scanner_finish(clean, mask, bias, config.noise, draws)
    return PhantomSubject(index=int(index), image=image, affine=grid_affine(config), age=draws.age, sex=draws.sex,
                          truth=truth, tissues=extra)


def _round(value: float, digits: int = 4) -> float:
    return float(round(float(value), digits))


def _common_truth(config: PhantomConfig, draws: Draws) -> dict[str, Any]:
    """Parameters both anatomies share: demographics, scale, misregistration and nuisance sizes."""
    fields = draws.fields
    return {
        "age": draws.age, "sex": draws.sex, "u": _round((draws.age - 40.0) / 55.0),
        "age_effect_x": _round(draws.x),
        "head_scale": _round(draws.scale), "sex_scale": _round(draws.sex_scale),
        "aspect": [_round(a) for a in draws.aspect],
        "rotation_deg": [_round(a, 3) for a in draws.rotation_deg],
        "translation_mm": [_round(t, 3) for t in draws.translation_mm],
        "deformation_rms_mm": _round(np.sqrt((fields[:3] ** 2).mean(axis=(1, 2, 3))).mean(), 3),
        "bias_log_sd": _round(float(fields[3].std()), 4),
        "noise_sd": config.noise,
        "ventricle_scale": _round(draws.laws.ventricle_scale),
    }


def _procedural_truth(draws: Draws, maps: dict[str, Any], voxel_ml: float) -> dict[str, Any]:
    """Age-law values in world units, analytic volumes, and the rendered tissue volumes."""
    laws, s = draws.laws, draws.scale
    world = s ** 3 * float(np.prod(draws.aspect))  # canonical mL -> world mL
    a, b, c_sup, c_inf = ENVELOPE_MM
    ventricle = 2 * 4 / 3 * np.pi * np.prod(VENTRICLE["axes"]) * laws.ventricle_scale ** 3 / 1000.0
    return {
        "cortical_thickness_mm": _round(laws.thickness_mm * s, 3),
        "sulcal_width_mm": _round(laws.sulcus_mm * s, 3),
        "external_csf_mm": _round(laws.external_csf_mm * s, 3),
        "gm_intensity": _round(laws.gm_intensity), "wm_intensity": INTENSITY["wm"],
        "csf_intensity": INTENSITY["csf"], "deep_gm_intensity": _round((laws.gm_intensity + INTENSITY["wm"]) / 2),
        "envelope_volume_ml": _round(2 / 3 * np.pi * a * b * (c_sup + c_inf) / 1000.0 * world, 2),
        "ventricle_volume_ml": _round(ventricle * world, 3),
        **{f"{t}_ml": _round(float(maps[t].sum(dtype=np.float64)) * voxel_ml, 2)
           for t in ("brain", "csf", "ventricles", "gm", "deep_gm", "wm")},
    }


def anatomy_coords(config: PhantomConfig, draws: Draws) -> tuple[list[np.ndarray], np.ndarray]:
    """Canonical anatomy coordinates of every voxel and the multiplicative bias field.

    The voxel-wise arithmetic here and in the anatomy is numpy (one thread): on a few shared cores,
    hundreds of small multi-threaded torch ops spend more time waiting for each other than computing.

    Returns:
        ``[p_x, p_y, p_z]``: three float32 arrays of shape ``size`` (canonical mm), and the bias field
        ``e^{β(x)}`` of shape ``size``.
    """
    fields = torch.from_numpy(draws.fields)[None]  # (1, 4, P, P, P): displacement mm (3) + log bias
    fields = F.interpolate(fields, size=tuple(config.size), mode="trilinear", align_corners=True)[0].numpy()
    inverse_scale = 1.0 / (draws.scale * draws.aspect)  # (3,)
    matrix = inverse_scale[:, None] * draws.rotation.T  # diag(1 / (s a)) R^T, (3, 3)
    axes = world_axes(config)
    shifted = [(axes[j] - np.float32(draws.translation_mm[j])).reshape([-1 if k == j else 1 for k in range(3)])
               for j in range(3)]  # x_j - t_j, broadcastable (X,1,1), (1,Y,1), (1,1,Z)
    coords = []
    for c in range(3):
        p = fields[c] * float(inverse_scale[c])  # (X, Y, Z): d(x) / (s a)
        for j in range(3):
            p += float(matrix[c, j]) * shifted[j]
        coords.append(p)
    return coords, np.exp(fields[3])


def scanner_finish(clean: np.ndarray, mask: np.ndarray, bias: np.ndarray, noise: float, draws: Draws) -> np.ndarray:
    """``M · Rice(I · bias, σ)``, float32: ``sqrt((I b + σ n_1)² + (σ n_2)²)`` inside the mask, 0 outside.

    Args:
        clean: (X, Y, Z) intensities before bias and noise.
        mask: (X, Y, Z) bool brain mask.
        bias: (X, Y, Z) multiplicative bias field.
        noise: σ relative to WM (1.0); 0 gives no noise (and no draws).
        draws: the subject (its noise stream is used).
    """
    image = clean.astype(np.float32) * bias
    if noise > 0:
        rng = np.random.default_rng(draws.noise_seed)
        n = rng.standard_normal((2, *image.shape), dtype=np.float32)  # (2, X, Y, Z)
        image = np.sqrt(np.square(image + noise * n[0]) + np.square(noise * n[1]))
    return np.ascontiguousarray(np.where(mask, image, np.float32(0.0)), dtype=np.float32)
