"""What an autoencoder expects of its input — grid, voxel spacing, orientation, intensity scaling — as recorded in
a VAE folder's ``vae.json`` (``"expects"``), and how an ``image_latent`` spec's preprocessing is held against it.

`metavoxel import-vae` fills it from what a bundle's config declares (its ``Orientationd``/``Spacingd``/crop and
intensity transforms, or ``metadata.json``'s ``network_data_format``); anything the bundle does not state is
null. `metavoxel train-vae` does not record it (its VAE is trained on the spec's own preprocessing).

The rule (`input_mismatches`): a grid, spacing or orientation other than the VAE's is a *warning*. The networks
are convolutional and run on any grid divisible by their downsampling factor, and a coarser spacing or a smaller
crop is a legitimate trade of fidelity for compute; but anatomy at another scale or field of view may encode
worse, so the user is told once what differs. An intensity *range* other than the one the encoder was trained on
is *refused*: metavoxel's preprocessing maps intensities to [0, 1], and an encoder trained on [-1, 1] (or on
z-scores) would see values it never saw and return latents that look valid and are not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ExpectedInput", "IntensityScaling", "VAEInputWarning", "input_mismatches"]

#: The range `metavoxel.PreprocessSpec.percentiles` maps intensities to.
PREPROCESS_RANGE = (0.0, 1.0)


class VAEInputWarning(UserWarning):
    """An image variable's grid or preprocessing differs from what its VAE was trained on (`input_mismatches`)."""


class IntensityScaling(BaseModel):
    """How the autoencoder's training images were scaled.

    ``method``: ``percentiles`` (per-image percentiles ``percentiles`` -> ``range``, MONAI
    ScaleIntensityRangePercentiles), ``window`` (fixed source intensities ``window``, e.g. CT HU, -> ``range``,
    ScaleIntensityRange), ``minmax`` (each image's min and max -> ``range``, ScaleIntensity), ``zscore``
    (NormalizeIntensity), or ``stated`` (only the resulting ``range`` is known, e.g. from metadata.json).
    """

    model_config = ConfigDict(extra="forbid")
    method: Literal["percentiles", "window", "minmax", "zscore", "stated"]
    percentiles: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    range: tuple[float, float] | None = Field(None, description="The intensities the encoder saw: [lo, hi].")
    clip: bool | None = None

    def describe(self) -> str:
        """One phrase: ``percentiles [0, 99.5] -> [0, 1]``, ``window [-1000, 1000] -> [0, 1], clipped``, ..."""
        to = f" -> {_fmt(self.range)}" if self.range is not None else ""
        text = {"percentiles": f"percentiles {_fmt(self.percentiles or ())}{to}",
                "window": f"window {_fmt(self.window or ())}{to}", "minmax": f"min-max{to}", "zscore": "z-score",
                "stated": f"values in {_fmt(self.range or ())}"}[self.method]
        return text + (", clipped" if self.clip else "")


class ExpectedInput(BaseModel):
    """What the autoencoder was trained on; None where its source does not say. ``sources`` names, per field,
    where it was read (``"configs/inference.json: preprocessing_transforms#6 (Spacingd)"``)."""

    model_config = ConfigDict(extra="forbid")
    shape: list[int] | None = Field(None, description="The input grid (voxels per axis).")
    spacing: list[float] | None = Field(None, description="Voxel size in mm per axis.")
    orientation: str | None = Field(None, description="Axis codes, e.g. RAS.")
    intensity: IntensityScaling | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("orientation")
    @classmethod
    def _axis_codes(cls, value: str | None) -> str | None:
        if value is None:
            return None
        codes = value.upper()
        axes = [{"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(c) for c in codes]
        if len(codes) not in (2, 3) or None in axes or len(set(axes)) != len(axes):
            raise ValueError(f"orientation {value!r} must be axis codes, one of R/L, A/P and S/I each, e.g. 'RAS'")
        return codes

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) not in (2, 3) or any(s < 1 for s in value)):
            raise ValueError(f"shape must be 2 or 3 positive sizes, got {value}")
        return value

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) not in (2, 3) or any(not s > 0 for s in value)):
            raise ValueError(f"spacing must be 2 or 3 positive sizes in mm, got {value}")
        return value

    def stated(self) -> dict[str, str]:
        """The fields that are known, each as a phrase for display (``{"spacing": "[1, 1, 1] mm", ...}``)."""
        phrases = {"shape": None if self.shape is None else _fmt(self.shape),
                   "spacing": None if self.spacing is None else f"{_fmt(self.spacing)} mm",
                   "orientation": self.orientation,
                   "intensity": None if self.intensity is None else self.intensity.describe()}
        return {k: v for k, v in phrases.items() if v is not None}


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(float(x), float(y), rel_tol=1e-3, abs_tol=1e-6) for x, y in zip(a, b))


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def input_mismatches(expected: ExpectedInput, shape: Sequence[int], preprocess: Any | None, *,
                     where: str) -> tuple[list[str], list[str]]:
    """How an image variable's grid and preprocessing differ from what its VAE expects.

    Args:
        expected: the VAE folder's record.
        shape: the variable's grid.
        preprocess: its `metavoxel.PreprocessSpec`, or None (files are read as they are: only the grid is checked).
        where: the VAE folder, named in the messages.

    Returns:
        ``(refusals, warnings)``: one line each (see the module docstring for which is which).
    """
    refusals: list[str] = []
    warnings: list[str] = []
    source = lambda field: f" ({expected.sources[field]})" if field in expected.sources else ""  # noqa: E731
    if expected.shape is not None and list(shape) != list(expected.shape):
        warnings.append(f"shape {list(shape)} differs from the grid {list(expected.shape)} the VAE in {where} was "
                        f"trained on{source('shape')}; it runs on any grid its downsampling divides, but another "
                        "field of view or scale may encode worse")
    if preprocess is None:
        return refusals, warnings
    if expected.spacing is not None and not _same(preprocess.spacing, expected.spacing):
        warnings.append(f"preprocess.spacing {_fmt(preprocess.spacing)} mm differs from the {_fmt(expected.spacing)} "
                        f"mm the VAE in {where} was trained on{source('spacing')}; anatomy at another scale may "
                        "encode worse")
    if expected.orientation is not None and preprocess.orientation != expected.orientation.upper():
        warnings.append(f"preprocess.orientation {preprocess.orientation} differs from the {expected.orientation} "
                        f"the VAE in {where} was trained on{source('orientation')}")
    intensity = expected.intensity
    if intensity is None or preprocess.percentiles is None:
        return refusals, warnings  # without scaling the files are the user's to prepare
    scaled = f"preprocess.percentiles {_fmt(preprocess.percentiles)} maps intensities to {_fmt(PREPROCESS_RANGE)}"
    if intensity.method == "zscore" or (intensity.range is not None and not _same(intensity.range, PREPROCESS_RANGE)):
        seen = "z-scored intensities" if intensity.range is None else f"intensities in {_fmt(intensity.range)}"
        refusals.append(f"the VAE in {where} was trained on {seen}{source('intensity')} but {scaled}; scale the "
                        "files as the VAE expects and set preprocess.percentiles to null")
    elif intensity.method == "percentiles" and intensity.percentiles is not None \
            and not _same(preprocess.percentiles, intensity.percentiles):
        warnings.append(f"preprocess.percentiles {_fmt(preprocess.percentiles)} differ from the "
                        f"{_fmt(intensity.percentiles)} the VAE in {where} was trained on{source('intensity')}")
    elif intensity.method == "window" and intensity.window is not None:
        warnings.append(f"the VAE in {where} was trained on the fixed window {_fmt(intensity.window)} mapped to "
                        f"{_fmt(intensity.range or PREPROCESS_RANGE)}{source('intensity')}, but {scaled} per scan; "
                        "for absolute intensities (CT) apply the window to the files and set preprocess.percentiles "
                        "to null")
    return refusals, warnings
