"""The ground-truth model: its constants, the age and sex laws, and each subject's random draws.

Every effect is a function of ``x = age_effect * u`` with ``u = (age - 40) / 55`` (0 at 40 years, 1 at
95) and of ``c = sex_effect * (+1 for M, -1 for F)``. Lengths are in the canonical anatomy space (mm of
the sex-neutral reference brain), which each subject's scale maps to world mm.

Randomness: subject ``k`` of seed ``s`` owns ``SeedSequence([s, k])``, spawned into three streams —
demographics (sex then age), anatomy/nuisance (a fixed-length vector of normals, then the control
fields) and voxel noise — so subject ``k`` does not depend on how many subjects are drawn, and changing
e.g. ``female_fraction`` or ``age_mean`` leaves every other draw of a subject as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from metavoxel.errors import InputError
from metavoxel.phantom.config import PhantomConfig

__all__ = ["AgeLaws", "Draws", "INTENSITY", "age_laws", "counterfactual_values", "draw_subject", "participant_id"]

# Tissue intensities before bias and noise (WM is the reference, 1.0); GM is its value at 40 years.
INTENSITY = {"background": 0.0, "csf": 0.20, "gm": 0.60, "wm": 1.00}
AGE_ZERO, AGE_SPAN = 40.0, 55.0  # u = (age - 40) / 55

# Age laws (magnitudes at age_effect = 1, per unit of x).
VENTRICLE_GROWTH = 0.60      # linear ventricle scale 1 + 0.6 x  (volume x4.1 at 95)
THICKNESS_MM = 3.0           # cortical thickness 3.0 (1 - 0.2 x) mm
THINNING = 0.20
SULCUS_MM, SULCUS_GROWTH = 1.0, 3.0     # sulcal CSF gap 1 + 3 x mm
EXTERNAL_MM, EXTERNAL_GROWTH = 0.5, 2.0  # CSF between pial surface and mask edge 0.5 + 2 x mm
CONTRAST_LOSS = 0.375        # GM moves 37.5 % of the way to WM per unit x: 0.60 -> 0.75 at 95
BRAIN_SHRINK = 0.03          # template path only: global linear shrinkage 1 - 0.03 x

# Sex laws (at sex_effect = 1): M/F linear size ratio 1.06, AP/LR aspect ratio 1.01**4 ≈ 1.04.
SEX_SIZE, SEX_ASPECT = 1.06, 1.01

# Nuisance SDs at variability = 1.
SD = {"global_scale": 0.03, "aspect": 0.02, "rotation_deg": 3.0, "translation_mm": 2.0, "deformation_mm": 2.5,
      "log_bias": 0.08, "ventricle": 0.12, "thickness": 0.05, "sulcus": 0.10, "gm": 0.015, "folding_rad": 0.6}
CONTROL_POINTS = 5  # control grid (per axis, over the field of view) of the deformation and bias fields
_NORMALS = ("global_scale", "aspect_x", "aspect_y", "aspect_z", "rot_x", "rot_y", "rot_z", "shift_x", "shift_y",
            "shift_z", "ventricle", "thickness", "sulcus", "gm", *(f"fold_{i}" for i in range(5)))


@dataclass(frozen=True)
class AgeLaws:
    """Age-dependent parameters of one subject (before sex/global scaling), jitter included."""

    ventricle_scale: float  # linear, 1 at 40 years
    thickness_mm: float
    sulcus_mm: float
    external_csf_mm: float
    gm_intensity: float
    brain_shrink: float     # template path only


def gm_level(base: float, x: float) -> float:
    """GM intensity moved toward WM: ``g + 0.375 x (1 - g)``, kept within [CSF, WM]."""
    wm, csf = INTENSITY["wm"], INTENSITY["csf"]
    return float(min(wm, max(csf, base + CONTRAST_LOSS * x * (wm - base))))


def age_laws(x: float, z: dict[str, float] | None = None, gm_base: float = INTENSITY["gm"]) -> AgeLaws:
    """The age laws at ``x = age_effect * u``; ``z`` holds the variability-scaled jitter normals.

    ``V = (1 + 0.6 x) e^{0.12 ν z}``, ``T = 3 (1 - 0.2 x) e^{0.05 ν z}`` mm, ``w = (1 + 3 x) e^{0.1 ν z}`` mm,
    ``e = 0.5 + 2 x`` mm, ``I_gm = g + 0.375 x (1 - g) + 0.015 ν z`` and (template) ``b = 1 - 0.03 x``;
    each is clamped to stay physical when ``x`` is extrapolated below 0 or far above 1.
    """
    z = z or {}
    return AgeLaws(
        ventricle_scale=max(0.3, 1 + VENTRICLE_GROWTH * x) * math.exp(z.get("ventricle", 0.0)),
        thickness_mm=THICKNESS_MM * max(0.2, 1 - THINNING * x) * math.exp(z.get("thickness", 0.0)),
        sulcus_mm=max(0.3, SULCUS_MM + SULCUS_GROWTH * x) * math.exp(z.get("sulcus", 0.0)),
        external_csf_mm=max(0.0, EXTERNAL_MM + EXTERNAL_GROWTH * x),
        gm_intensity=gm_level(gm_base + z.get("gm", 0.0), x),
        brain_shrink=max(0.7, 1 - BRAIN_SHRINK * x),
    )


@dataclass(frozen=True)
class Draws:
    """Everything random about subject ``index``; the images are deterministic functions of it."""

    index: int
    age: float
    sex: str
    x: float                  # age_effect * (age - 40) / 55
    laws: AgeLaws
    jitter: dict[str, float]  # variability-scaled normals of the age laws (ventricle, thickness, sulcus, gm)
    scale: float              # linear head scale: sex x global
    sex_scale: float
    aspect: np.ndarray        # (3,) per-axis (L-R, P-A, I-S) shape factors: sex x jitter
    rotation: np.ndarray      # (3, 3) head rotation in the scanner
    rotation_deg: np.ndarray  # (3,) Euler angles about x, y, z (applied z @ y @ x)
    translation_mm: np.ndarray  # (3,)
    folding_phase: np.ndarray   # (5,) phase offsets of the sulcal pattern (radians)
    fields: np.ndarray        # (4, P, P, P) float32: displacement mm (x, y, z) and log bias, over the FOV
    noise_seed: np.random.SeedSequence

    @property
    def participant_id(self) -> str:
        return participant_id(self.index)


def participant_id(index: int) -> str:
    """0-based index -> ``sub-0001`` (more digits past 9999)."""
    return f"sub-{index + 1:04d}"


def draw_subject(config: PhantomConfig, index: int, counterfactual: Mapping[str, Any] | None = None) -> Draws:
    """Draw subject ``index`` (0-based) of ``config`` from its own ``SeedSequence([seed, index])``.

    ``counterfactual`` (`counterfactual_values`) replaces the drawn age and/or sex after they are drawn: every
    other draw of the subject (anatomy, nuisance, noise) stays as it was, so the subject is rendered as it would
    be at those values — the true counterfactual an edit of its scan is scored against.
    """
    demo_seq, anat_seq, noise_seq = np.random.SeedSequence([config.seed, index]).spawn(3)
    demo = np.random.default_rng(demo_seq)
    sex = "F" if demo.random() < config.female_fraction else "M"
    age = _truncated_normal(demo, config.age_mean, config.age_sd, config.age_range)
    if counterfactual:
        age, sex = counterfactual_values(age, sex, counterfactual)

    anat = np.random.default_rng(anat_seq)
    nu = config.variability
    z = dict(zip(_NORMALS, anat.standard_normal(len(_NORMALS)).tolist()))
    fields = _control_fields(anat, [SD["deformation_mm"] * nu] * 3 + [SD["log_bias"] * nu])

    x = config.age_effect * (age - AGE_ZERO) / AGE_SPAN
    jitter = {k: SD[k] * nu * z[k] for k in ("ventricle", "thickness", "sulcus", "gm")}
    c = config.sex_effect * (1.0 if sex == "M" else -1.0)
    sex_scale = SEX_SIZE ** (c / 2)
    aspect = np.array([SEX_ASPECT ** -c, SEX_ASPECT ** c, 1.0]) * np.exp(
        SD["aspect"] * nu * np.array([z["aspect_x"], z["aspect_y"], z["aspect_z"]]))
    angles = SD["rotation_deg"] * nu * np.array([z["rot_x"], z["rot_y"], z["rot_z"]])
    return Draws(
        index=index, age=age, sex=sex, x=x, laws=age_laws(x, jitter), jitter=jitter,
        scale=sex_scale * math.exp(SD["global_scale"] * nu * z["global_scale"]), sex_scale=sex_scale,
        aspect=aspect, rotation=_rotation(angles), rotation_deg=angles,
        translation_mm=SD["translation_mm"] * nu * np.array([z["shift_x"], z["shift_y"], z["shift_z"]]),
        folding_phase=SD["folding_rad"] * nu * np.array([z[f"fold_{i}"] for i in range(5)]),
        fields=fields, noise_seed=noise_seq)


#: Ages a counterfactual may set: the age laws are clamped to stay physical outside [40, 95].
COUNTERFACTUAL_AGES = (0.0, 120.0)


def counterfactual_values(age: float, sex: str, changes: Mapping[str, Any]) -> tuple[float, str]:
    """``(age, sex)`` with ``changes`` applied: ``age`` a number of years or a signed text (``"+10"``, ``"-5"``)
    relative to ``age``; ``sex`` ``"F"`` or ``"M"``. The new age is rounded to 0.1 year, as drawn ages are.

    Raises:
        InputError: a name other than age and sex, an age not a number or outside `COUNTERFACTUAL_AGES`, a sex
            other than F or M.
    """
    unknown = sorted(set(changes) - {"age", "sex"})
    if unknown:
        raise InputError(f"a phantom counterfactual sets age and/or sex, got {', '.join(unknown)}; e.g. age=+10 "
                         "or sex=M")
    if "age" in changes:
        raw = changes["age"]
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"counterfactual age {raw!r} is not a number; give years (age=81) or a change "
                             "(age=+10)") from None
        new = age + value if text[:1] in "+-" and isinstance(raw, str) else value
        lo, hi = COUNTERFACTUAL_AGES
        if not (math.isfinite(new) and lo <= new <= hi):
            raise InputError(f"counterfactual age {new:g} is outside [{lo:g}, {hi:g}] years; give a smaller change")
        age = float(round(new, 1))
    if "sex" in changes:
        label = str(changes["sex"]).strip().upper()
        if label not in ("F", "M"):
            raise InputError(f"counterfactual sex {changes['sex']!r} must be F or M")
        sex = label
    return age, sex


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, bounds: tuple[float, float]) -> float:
    """N(mean, sd²) redrawn until inside ``bounds``, rounded to 0.1 year (the value participants.tsv holds)."""
    lo, hi = bounds
    for _ in range(100_000):
        age = rng.normal(mean, sd)
        if lo <= age <= hi:
            break
    else:  # unreachable with the validated settings (mean inside the range, sd <= 100, range >= 1 year)
        age = rng.uniform(lo, hi)
    return float(min(hi, max(lo, round(age, 1))))


def _control_fields(rng: np.random.Generator, rms: list[float]) -> np.ndarray:
    """(C, P, P, P) smooth random fields: white noise blurred by [1, 2, 1] / 4 per axis, scaled to RMS ``rms``."""
    noise = rng.standard_normal((len(rms), *[CONTROL_POINTS] * 3))
    for axis in (1, 2, 3):
        padded = np.concatenate([np.take(noise, [0], axis), noise, np.take(noise, [-1], axis)], axis=axis)
        n = noise.shape[axis]
        noise = (np.take(padded, range(0, n), axis) + 2 * np.take(padded, range(1, n + 1), axis)
                 + np.take(padded, range(2, n + 2), axis)) / 4
    noise /= np.sqrt((noise ** 2).mean(axis=(1, 2, 3), keepdims=True))
    return (noise * np.asarray(rms)[:, None, None, None]).astype(np.float32)


def _rotation(degrees: np.ndarray) -> np.ndarray:
    """``R = R_z @ R_y @ R_x`` for Euler angles (degrees) about the world x, y, z axes."""
    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
