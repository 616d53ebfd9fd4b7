"""The ``image`` kind: a C-channel 2D or 3D image diffused in pixel space with the Gaussian process.

Also home of `ImageValues`, the raw-input handling both image kinds share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import metavoxel as mv


class ImageSpecBase(mv.VariableSpec):
    channels: int = Field(1, ge=1, description="Image channels (e.g. 1 for T1w).")
    shape: list[int] = Field(min_length=2, max_length=3, description="Voxel grid of the model, e.g. [96, 112, 96].")
    preprocess: mv.PreprocessSpec | None = Field(None, description=(
        "Bring input NIfTIs onto the model grid (orient, resample, crop/pad, percentile-scale); "
        "null: input files must already be on the grid."))
    prediction: mv.Prediction = mv.prediction_field()

    @model_validator(mode="after")
    def _positive(self) -> ImageSpecBase:
        if any(s < 1 for s in self.shape):
            raise ValueError(f"shape must be positive, got {self.shape}")
        if self.preprocess is not None and len(self.preprocess.spacing) != len(self.shape):
            raise ValueError(f"preprocess.spacing has {len(self.preprocess.spacing)} values but shape has "
                             f"{len(self.shape)}; give one spacing per axis")
        return self


class ImageSpec(ImageSpecBase):
    """A pixel-space image."""

    kind: Literal["image"]
    intensity_range: tuple[float, float] = Field((0.0, 1.0), description="[lo, hi] intensities mapped to [-1, 1].")
    clip_denoised: bool = Field(True, description="Clip predicted clean images to intensity_range while sampling.")


class ImageValues:
    """Raw images -> a voxel tensor (B, C, *shape): tensors, arrays, NIfTI paths; None or all-NaN = missing."""

    name: str
    channels: int
    shape: tuple[int, ...]
    preprocessor: mv.Preprocessor | None = None

    def prepare(self, text: str) -> mv.PreparedImage:
        """A NIfTI file on the model grid, with what writing results back into its own grid needs."""
        if self.preprocessor is None:
            raise mv.InputError(f"{self.name}: this model has no preprocess section, so input files must already "
                                "be on the model grid; add variables[].preprocess to the spec to accept any scan")
        return self.preprocessor(text)

    def parse(self, text: str) -> torch.Tensor:
        """(C, *shape) voxels of a NIfTI file: preprocessed onto the model grid when the spec says how."""
        if self.preprocessor is not None:
            return self._check(self.prepare(text).tensor, repr(text))
        data, _affine = mv.read_nifti(text, spatial_dims=len(self.shape), what=self.name)
        return self._check(torch.from_numpy(data), f"{text!r}")

    def _check(self, image: torch.Tensor, source: str) -> torch.Tensor:
        expected = (self.channels, *self.shape)
        if tuple(image.shape) != expected:
            raise mv.InputError(f"{self.name}: {source} has shape {tuple(image.shape)} but the model expects "
                                f"(channels, *grid) = {expected}; resample and crop it to the model grid first")
        return image.float()

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(raw, np.ndarray):
            raw = torch.from_numpy(raw)
        if isinstance(raw, torch.Tensor):
            if raw.dim() == len(self.shape) + 1:
                raw = raw[None]  # one record: (C, *shape) -> (1, C, *shape)
            if tuple(raw.shape[1:]) != (self.channels, *self.shape):
                raise mv.InputError(f"{self.name}: expected a tensor (B, {self.channels}, {', '.join(map(str, self.shape))}),"
                                    f" got {tuple(raw.shape)}")
            images = raw.detach().float()
        else:
            items = [raw] if isinstance(raw, (str, Path)) or raw is None else list(raw)
            blank = torch.full((self.channels, *self.shape), float("nan"))
            images = torch.stack([blank if item is None else self._record(item, i) for i, item in enumerate(items)])
        present = torch.isfinite(images).flatten(1).all(dim=1)
        return torch.nan_to_num(images, nan=0.0).to(device), present.to(device)

    def _record(self, item: Any, i: int) -> torch.Tensor:
        if isinstance(item, (str, Path)):
            return self.parse(str(item))
        return self._check(torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item),
                           f"record {i}")

    def format(self, values: torch.Tensor) -> list[str]:
        return [f"<image {tuple(v.shape)}>" for v in values]

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        """Voxel-wise mean and SD over samples: tensors (N, C, *shape)."""
        sd = samples.std(dim=1) if samples.shape[1] > 1 else torch.zeros_like(samples[:, 0])
        return {"mean": samples.mean(dim=1), "sd": sd}


class PixelImage(ImageValues, mv.GaussianVariable):
    """values (B, C, *shape) in [lo, hi] <-> z = 2 (v - lo)/(hi - lo) - 1 of the same shape."""

    kind = "image"

    def __init__(self, name: str, channels: int, shape: tuple[int, ...], abar: torch.Tensor,
                 intensity_range: tuple[float, float] = (0.0, 1.0), clip_denoised: bool = True):
        self.name, self.channels, self.shape = name, channels, tuple(shape)
        self.lo, self.hi = map(float, intensity_range)
        self.x0_range = (-1.0, 1.0) if clip_denoised else None
        self.process = mv.GaussianProcess(abar)
        self.z_shape = (channels, *self.shape)
        self.head = mv.SpatialHead(channels=channels, shape=self.shape)

    @classmethod
    def from_spec(cls, spec: ImageSpec, ctx: mv.BuildContext) -> PixelImage:
        check_dims(spec, ctx)
        variable = cls(spec.name, spec.channels, tuple(spec.shape), ctx.schedule("gaussian"), spec.intensity_range,
                       spec.clip_denoised)
        variable.prediction = spec.prediction
        variable.preprocessor = preprocessor(spec)
        return variable

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return 2 * (values.float() - self.lo) / (self.hi - self.lo) - 1

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return self.lo + (z0.float() + 1) / 2 * (self.hi - self.lo)

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.lo + torch.rand((n, *self.z_shape), generator=generator) * (self.hi - self.lo)

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t


def preprocessor(spec: ImageSpecBase) -> mv.Preprocessor | None:
    if spec.preprocess is None:
        return None
    return mv.Preprocessor(spec.preprocess, spec.shape, spec.channels, name=spec.name)


def check_dims(spec: ImageSpecBase, ctx: mv.BuildContext) -> None:
    if len(spec.shape) != ctx.spatial_dims:
        raise mv.SpecError(f"variable {spec.name!r} has a {len(spec.shape)}D shape {spec.shape} but "
                           f"network.spatial_dims is {ctx.spatial_dims}; make them agree")


KIND = mv.VariableKind(
    name="image", spec=ImageSpec, build=PixelImage.from_spec,
    description="C-channel 2D/3D image in pixel space; Gaussian diffusion, MSE on the noise (or on v).",
    examples=({"channels": 1, "shape": [8, 12]}, {"channels": 2, "shape": [4, 6, 4], "prediction": "v"}),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
