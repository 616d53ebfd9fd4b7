"""`PhantomConfig`: every knob of the synthetic cohort, validated strictly, and the grid it implies.

The grid is a fixed field of view (``fov_mm``, default a 176 mm cube) cut into ``size`` voxels, so the
voxel size is ``fov_mm / size`` per axis (5.5 mm at 32³, 2.75 mm at 64³, 1.375 mm at 128³). Its affine
is RAS+ and diagonal with voxel ``size // 2`` at the world origin, where the brain's centre sits (before
each subject's misregistration) — metavoxel's model-lattice convention
(`metavoxel.io.preprocess.model_grid_affine`), so a spec whose ``preprocess.spacing`` equals the voxel
size (with ``center: world_origin``) reads the images without interpolating them::

    A = [[v_x, 0, 0, -v_x (n_x // 2)],
         [0, v_y, 0, -v_y (n_y // 2)],
         [0, 0, v_z, -v_z (n_z // 2)],
         [0, 0, 0, 1]]                                  v = fov_mm / size  (mm)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metavoxel.errors import InputError
from metavoxel.seeds import SEED_MAX

__all__ = ["PhantomConfig", "grid_affine", "world_axes"]

MIN_SIZE, MAX_SIZE = 32, 128


def _triple(value: Any, what: str) -> Any:
    """An int/float N -> (N, N, N); a list/tuple is left for pydantic to check."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value, value, value)
    if isinstance(value, (list, tuple)) and len(value) != 3:
        raise ValueError(f"{what} must be one number (a cube) or three (x, y, z), got {len(value)} values")
    return value


class PhantomConfig(BaseModel):
    """The synthetic T1w cohort: size, demographics, effect strengths, nuisance and noise.

    Effect strengths are multipliers of the documented ground-truth model (`metavoxel.phantom`):
    ``age_effect=0`` makes every image independent of age, ``sex_effect=0`` of sex, ``variability=0``
    removes every between-subject nuisance term (deformation, scale, bias, misregistration, anatomical
    jitter), ``noise=0`` gives noise-free images.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subjects: int = Field(200, ge=1, le=100_000, description="Participants sub-0001 ... sub-NNNN.")
    size: tuple[int, int, int] = Field((32, 32, 32), description="Voxel grid, 32-128 per axis; an int N means N³.")
    fov_mm: tuple[float, float, float] = Field((176.0, 176.0, 176.0), description=(
        "Field of view in mm per axis (an int/float means a cube); voxel size = fov_mm / size."))
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Subject k's randomness derives from (seed, k) alone.")
    age_mean: float = Field(70.0, description="Mean of the truncated-normal age distribution (years).")
    age_sd: float = Field(10.0, ge=0, le=100, description="SD of the age distribution before truncation (years).")
    age_range: tuple[float, float] = Field((40.0, 95.0), description="Ages outside [lo, hi] are redrawn.")
    female_fraction: float = Field(0.6, ge=0, le=1, description="Probability that a subject is female.")
    age_effect: float = Field(1.0, ge=0, le=10, description="Multiplier of every age effect; 0: none.")
    sex_effect: float = Field(1.0, ge=0, le=10, description="Multiplier of the sex size and shape effects; 0: none.")
    variability: float = Field(1.0, ge=0, le=5, description="Multiplier of every between-subject nuisance term.")
    noise: float = Field(0.03, ge=0, le=1, description="Rician noise SD relative to the WM intensity (1.0).")
    template: Path | None = Field(None, description=(
        "A skull-stripped T1 NIfTI used as the anatomy instead of the procedural brain (e.g. MNI152 brain)."))

    @field_validator("size", mode="before")
    @classmethod
    def _size_triple(cls, value: Any) -> Any:
        return _triple(value, "size")

    @field_validator("fov_mm", mode="before")
    @classmethod
    def _fov_triple(cls, value: Any) -> Any:
        return _triple(value, "fov_mm")

    @field_validator("size")
    @classmethod
    def _size_bounds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not MIN_SIZE <= n <= MAX_SIZE for n in value):
            raise ValueError(f"size must be {MIN_SIZE}-{MAX_SIZE} voxels per axis, got {list(value)}; "
                             f"give e.g. 32, 64 or 128")
        return value

    @field_validator("fov_mm")
    @classmethod
    def _fov_bounds(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 150.0 <= f <= 300.0 for f in value):
            raise ValueError(f"fov_mm must be 150-300 mm per axis (the brain spans ~170 mm), got {list(value)}")
        return value

    @model_validator(mode="after")
    def _ages(self) -> PhantomConfig:
        lo, hi = self.age_range
        if not 0.0 <= lo < hi <= 120.0 or hi - lo < 1.0:
            raise ValueError(f"age_range must satisfy 0 <= lo < hi <= 120 and span at least a year, got [{lo}, {hi}]")
        if not lo <= self.age_mean <= hi:
            raise ValueError(f"age_mean {self.age_mean} lies outside age_range [{lo}, {hi}]; move one of them")
        return self

    @classmethod
    def build(cls, **values: Any) -> PhantomConfig:
        """Validate keyword values; `InputError` with every field path on one line when they do not."""
        from metavoxel.spec import format_errors

        try:
            return cls(**values)
        except ValidationError as err:
            raise InputError(f"invalid phantom settings: {format_errors(err)}; fix the value(s) named") from None

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """Voxel size in mm per axis: ``fov_mm / size``."""
        return tuple(f / n for f, n in zip(self.fov_mm, self.size))


def grid_affine(config: PhantomConfig) -> np.ndarray:
    """The (4, 4) RAS+ voxel-to-world affine of the phantom grid (module docstring)."""
    voxel = np.asarray(config.voxel_mm, dtype=np.float64)
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = -voxel * (np.asarray(config.size) // 2)
    return affine


def world_axes(config: PhantomConfig) -> list[np.ndarray]:
    """World mm of the voxel centres along each axis: three 1D float32 arrays of lengths ``size``."""
    return [((np.arange(n) - n // 2) * v).astype(np.float32) for n, v in zip(config.size, config.voxel_mm)]
