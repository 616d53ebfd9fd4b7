"""Image preprocessing: a NIfTI scan in any orientation -> a float32 tensor on the model grid.

Conventions:

* World space is nibabel's RAS+ millimetres (+x Right, +y Anterior, +z Superior). An affine maps integer
  voxel indices, at voxel centres, to world: ``(x, y, z, 1) = A @ (i, j, k, 1)``. Affines are 4×4 as in
  NIfTI; a 2D image lives in a world x–y plane (see `metavoxel.io.resample.spatial_affine`); a scan's 2D
  model grid keeps the scan's plane (z of its field-of-view centre), generated 2D images sit at z = 0.
* Tensors are channel-first: (C, *shape).
* **The model lattice** (`model_grid_affine`): axes along ``orientation`` (default RAS), ``spacing`` mm
  apart, voxel ``shape // 2`` at the world origin — so every voxel centre lies at a whole multiple of the
  spacing (images registered to a standard space and sampled on whole millimetres, like MNI152 at 1 mm or
  2 mm, are copied without interpolation). Generated images are written on this grid.
* **A scan's model grid** (`Preprocessor.grid_affine`): the lattice shifted by whole voxels so that voxel
  ``shape // 2`` is the lattice point nearest the centre of the scan's field of view (``center:
  field_of_view``), or the lattice itself (``center: world_origin``). It is fixed in world coordinates, so
  the same anatomy stored as RAS, LAS, LPS, oblique or with anisotropic voxels lands on the same grid and
  gives the same tensor up to interpolation error.

The pipeline, built from MONAI transforms on a ``MetaTensor`` that carries the affine:

1. read with nibabel (`metavoxel.io.nifti.read_nifti`: checks, channel-first) -> ``MetaTensor(data, affine)``;
2. ``Orientation(orientation)``: flips and transposes only, no interpolation;
3. ``SpatialResample`` onto the scan's model grid (one interpolation). This does the work of ``Spacing`` +
   centred ``ResizeWithPadOrCrop`` in one step: ``Spacing`` starts its grid at a corner of the input's
   bounding box, so a centred crop lands up to a voxel away depending on the field of view's size and
   parity (different for the same anatomy in LPS or oblique), and two steps would interpolate twice.
   Voxels outside the scan's field of view are 0;
4. ``ScaleIntensityRangePercentiles``: per channel, percentile ``lo`` -> 0 and ``hi`` -> 1, clipped to
   [0, 1], computed on the resampled tensor; the two values are recorded so results can be mapped back.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator

from metavoxel.errors import InputError, SpecError
from metavoxel.io.nifti import read_nifti
from metavoxel.io.resample import embed_affine, spatial_affine, voxel_sizes

__all__ = ["PreparedImage", "PreprocessSpec", "Preprocessor", "SourceGrid", "SpacingWarning", "model_grid_affine"]

# axis code -> (world axis, direction); nibabel's labels, also passed to MONAI's Orientation
_AXES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class SpacingWarning(UserWarning):
    """An input's voxel size is far from the spacing the model works at."""


class PreprocessSpec(BaseModel):
    """How a scan is brought onto the model grid; stored in the model's spec."""

    model_config = ConfigDict(extra="forbid")
    orientation: str = Field("RAS", description="Axis codes of the model grid (nibabel letters), e.g. RAS or LPS.")
    spacing: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=2, max_length=3,
                                         description="Voxel size of the model grid in mm, one value per axis.")
    percentiles: tuple[float, float] | None = Field(
        (0.5, 99.5), description="Intensity percentiles mapped to 0 and 1 (clipped), per channel; null: no scaling.")
    spacing_warning_ratio: float = Field(2.0, gt=1.0, description="Warn when an input voxel size differs from the "
                                         "spacing by more than this factor on any axis.")
    interpolation: Literal["linear", "nearest"] = Field("linear", description="Resampling interpolation.")
    center: Literal["field_of_view", "world_origin"] = Field(
        "field_of_view", description="Centre the grid on the scan's field of view, or on the world origin "
        "(for images registered to a standard space).")

    @field_validator("orientation")
    @classmethod
    def _axis_codes(cls, value: str) -> str:
        codes = value.upper()
        if len(codes) != 3 or set(codes) - set(_AXES) or len({_AXES[c][0] for c in codes}) != 3:
            raise ValueError(f"orientation {value!r} must be three axis codes, one of R/L, one of A/P and one of "
                             "S/I, e.g. 'RAS' or 'LPS'")
        return codes

    @model_validator(mode="after")
    def _percentile_order(self) -> PreprocessSpec:
        if self.percentiles is not None:
            lo, hi = self.percentiles
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {list(self.percentiles)}")
        return self


def _check_geometry(spec: PreprocessSpec, shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise SpecError(f"the image grid must be 2 or 3 positive sizes, got {list(shape)}")
    if len(spec.spacing) != len(shape):
        raise SpecError(f"preprocess.spacing has {len(spec.spacing)} values {spec.spacing} but the image grid "
                        f"{list(shape)} is {len(shape)}D; give one spacing per axis, e.g. {[1.0] * len(shape)}")
    if len(shape) == 2 and {_AXES[c][0] for c in spec.orientation[:2]} != {0, 1}:
        raise SpecError(f"preprocess.orientation {spec.orientation!r}: a 2D grid lies in the world x-y plane, so its "
                        "first two codes must be R/L and A/P (e.g. 'RAS')")
    return shape


def model_grid_affine(spec: PreprocessSpec, shape: Sequence[int]) -> np.ndarray:
    """The canonical 4×4 affine of the model grid, given to generated images.

    Axes follow ``spec.orientation`` (RAS by default: a diagonal affine), ``spec.spacing`` mm apart, and
    voxel ``shape // 2`` sits at the world origin (0, 0, 0) — the centre voxel for odd sizes, the first
    voxel past the middle for even sizes — so every voxel centre lies at a whole multiple of the spacing.
    A 2D grid lies in the plane z = 0.

    Args:
        spec: the preprocessing spec (orientation and spacing are used).
        shape: the model grid, (X, Y) or (X, Y, Z).

    Returns:
        (4, 4) float64 voxel-to-world affine.
    """
    shape = _check_geometry(spec, shape)
    d = len(shape)
    linear = np.zeros((d, d))
    for k, code in enumerate(spec.orientation[:d]):
        axis, sign = _AXES[code]
        linear[axis, k] = sign * spec.spacing[k]
    affine = np.eye(d + 1)
    affine[:d, :d] = linear
    affine[:d, d] = -linear @ (np.asarray(shape) // 2)
    return embed_affine(affine)


@dataclass(frozen=True, eq=False)
class SourceGrid:
    """Where a prepared image came from: enough to write results back in the scan's own grid.

    Attributes:
        path: the file read.
        affine: (4, 4) voxel-to-world affine of the file as stored.
        shape: spatial shape of the file's grid, (X, Y) or (X, Y, Z).
        header: a copy of the file's nibabel header (codes, units, description are reused on write-back).
    """

    path: Path
    affine: np.ndarray
    shape: tuple[int, ...]
    header: Any


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """A scan on the model grid.

    Attributes:
        tensor: (C, *shape) float32 on the model grid.
        affine: (4, 4) world affine of ``tensor``'s grid (this scan's model grid), as MONAI reports it.
        source: the original file's grid and header.
        intensity_range: (C, 2) float64 raw intensities mapped to 0 and 1, or None if not scaled.
        interpolation: the interpolation used, reused when mapping results back.
    """

    tensor: torch.Tensor
    affine: np.ndarray
    source: SourceGrid
    intensity_range: np.ndarray | None
    interpolation: Literal["linear", "nearest"] = "linear"


class Preprocessor:
    """Reads NIfTI scans onto the model grid with the MONAI pipeline described in the module docstring.

    Args:
        spec: the preprocessing spec.
        shape: the model grid (the image variable's ``shape``), 2 or 3 sizes.
        channels: channels the image must have (a 4D file holds them on its last axis).
        name: the variable's name, used in messages.
    """

    def __init__(self, spec: PreprocessSpec, shape: Sequence[int], channels: int = 1, *, name: str = "image"):
        from monai.transforms import Orientation, ScaleIntensityRangePercentiles, SpatialResample

        self.spec, self.shape, self.channels, self.name = spec, _check_geometry(spec, shape), int(channels), name
        self.spatial_dims = len(self.shape)
        self.lattice = model_grid_affine(spec, self.shape)
        self.orient = Orientation(axcodes=spec.orientation[:self.spatial_dims], labels=_LABELS)
        self.resample = SpatialResample(mode="bilinear" if spec.interpolation == "linear" else "nearest",
                                        padding_mode="zeros", dtype=torch.float32)
        self.scale = None if spec.percentiles is None else ScaleIntensityRangePercentiles(
            lower=spec.percentiles[0], upper=spec.percentiles[1], b_min=0.0, b_max=1.0, clip=True, channel_wise=True)

    def grid_affine(self, source_affine: np.ndarray, source_shape: Sequence[int]) -> np.ndarray:
        """The 4×4 model grid for a scan: the lattice shifted by whole voxels onto the scan's field of view.

        Args:
            source_affine: the scan's 4×4 voxel-to-world affine.
            source_shape: the scan's spatial shape.
        """
        if self.spec.center == "world_origin":
            return self.lattice.copy()
        d = self.spatial_dims
        middle = (np.asarray(source_shape, dtype=np.float64) - 1) / 2
        centre = spatial_affine(source_affine, d) @ np.r_[middle, 1.0]
        lattice = spatial_affine(self.lattice, d)
        nearest = np.round(np.linalg.solve(lattice, centre)[:d])  # lattice index of the point nearest the centre
        lattice[:d, d] += lattice[:d, :d] @ (nearest - np.asarray(self.shape) // 2)
        grid = embed_affine(lattice)
        if d == 2:  # keep the scan's slice position: the plane z of its field-of-view centre
            grid[2, 3] = (np.asarray(source_affine, dtype=np.float64) @ np.r_[middle, 0.0, 1.0])[2]
        return grid

    def __call__(self, path: str | Path) -> PreparedImage:
        """Read one scan onto the model grid.

        Raises:
            InputError: the file is missing, not NIfTI, corrupt, of the wrong dimensionality or channel count,
                or constant on the model grid (nothing to scale).
        """
        import nibabel as nib
        from monai.data import MetaTensor
        from monai.transforms.utils_pytorch_numpy_unification import percentile

        path = Path(path)
        data, affine = read_nifti(path, spatial_dims=self.spatial_dims, what=self.name)  # (C, *src), (4, 4)
        if data.shape[0] != self.channels:
            raise InputError(f"{self.name}: {str(path)!r} has {data.shape[0]} channel(s) {tuple(data.shape[1:])} "
                             f"but the model expects {self.channels}; give a file with {self.channels} channel(s) "
                             "on its last axis")
        source = SourceGrid(path=path, affine=affine, shape=tuple(data.shape[1:]),
                            header=nib.load(str(path)).header.copy())
        image = MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(affine))
        oriented = self.orient(image)
        self._check_spacing(path, oriented.affine)
        grid = self.grid_affine(affine, source.shape)
        target = spatial_affine(grid, self.spatial_dims)
        resampled = self.resample(oriented, dst_affine=torch.from_numpy(target), spatial_size=self.shape)
        keep = [*range(self.spatial_dims), 3]
        reported = grid.copy()  # the world affine MONAI tracked; for 2D, the plane's z comes from the grid
        reported[np.ix_(keep, keep)] = spatial_affine(resampled.affine, self.spatial_dims)
        intensity_range = None
        if self.scale is not None:
            plain = resampled.as_tensor()
            intensity_range = np.array([[float(percentile(c, q)) for q in self.spec.percentiles] for c in plain])
            flat = intensity_range[:, 1] <= intensity_range[:, 0]
            if flat.any():
                lo, hi = self.spec.percentiles
                raise InputError(f"{self.name}: {str(path)!r} is constant on the model grid (percentiles {lo:g} and "
                                 f"{hi:g} are both {intensity_range[flat][0, 0]:g}); check the file holds the scan and "
                                 "covers the model grid, or set preprocess.percentiles to null")
            resampled = self.scale(resampled)
        tensor = (resampled.as_tensor() if isinstance(resampled, MetaTensor) else torch.as_tensor(resampled))
        tensor = tensor.to(torch.float32).contiguous()  # a plain tensor: the affine lives in PreparedImage
        return PreparedImage(tensor=tensor, affine=reported, source=source, intensity_range=intensity_range,
                             interpolation=self.spec.interpolation)

    def _check_spacing(self, path: Path, oriented_affine: torch.Tensor) -> None:
        sizes = voxel_sizes(oriented_affine, self.spatial_dims)  # per model axis after reorientation
        spacing = np.asarray(self.spec.spacing)
        ratio = np.maximum(sizes / spacing, spacing / sizes)
        if (ratio > self.spec.spacing_warning_ratio).any():
            k = int(np.argmax(ratio))
            warnings.warn(
                f"{self.name}: {str(path)!r} has voxels of {_mm(sizes)} mm but the model works at {_mm(spacing)} mm "
                f"(a factor {ratio[k]:.2g} on axis {self.spec.orientation[k]}, above spacing_warning_ratio "
                f"{self.spec.spacing_warning_ratio:g}); it is resampled anyway, but results on scans this far from "
                "the training resolution may be unreliable", SpacingWarning, stacklevel=3)


def _mm(values: np.ndarray) -> str:
    return "×".join(f"{v:.3g}" for v in values)
