"""The ``image_latent`` kind: an image passed through a frozen 3D/2D KL-VAE (MONAI ``AutoencoderKL``),
diffused with the Gaussian process in the VAE's latent space (latent diffusion, Rombach et al. 2022).

z0 = scale_factor * mu(x): the posterior mean, so encoding is deterministic. The scale factor is the one
`metavoxel train-vae` recorded in the ``vae.json`` beside the weights unless the spec gives it; a spec file that
gives another one is refused, since latents encoded with one factor and decoded with another are wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import math

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, model_validator

import metavoxel as mv
from metavoxel_builtin.image import ImageSpecBase, ImageValues, check_dims, preprocessor


class ImageLatentSpec(ImageSpecBase):
    """An image diffused in the latent space of a frozen KL-VAE."""

    kind: Literal["image_latent"]
    #: v by default: an eps network's x0 estimate near t = T is worse than the training latents' mean on the
    #: demo's and the small benchmark's models, and with v their generated brains improve (FID 67 -> 58 on
    #: `small`; benchmarks/RESULTS.md, "v for latent images by default"); the paper preset names eps.
    prediction: mv.Prediction = mv.prediction_field("v")
    vae: mv.VAESpec = Field(default_factory=mv.VAESpec)
    scale_factor: float | None = Field(None, gt=0, description=(
        "Latent scale (1/std of the training latents). Default: the one `train-vae` recorded in the vae.json "
        "beside the weights (1 without weights). A spec file giving another value than that record is refused."))
    weights: str | None = Field(None, description=(
        "VAE weights (.safetensors), relative to the spec file's folder; random if absent (tests only)."))

    @model_validator(mode="after")
    def _divisible(self) -> ImageLatentSpec:
        f = self.vae.downsample_factor
        if any(s % f for s in self.shape):
            raise ValueError(f"shape {self.shape} must be divisible by the VAE downsampling factor {f}; "
                             f"crop or pad the grid")
        return self

    @model_validator(mode="after")
    def _vae_record(self, info: ValidationInfo) -> ImageLatentSpec:
        """Resolve ``weights`` against the spec file's folder and take the scale factor from the VAE's record.

        ``spec_dir`` in the validation context marks a spec the user wrote (`ModelSpec.from_file`): there a
        factor that disagrees with the record is refused. Without it (a stored run's spec) the record is only
        read to fill a missing factor.
        """
        spec_dir = (info.context or {}).get("spec_dir")
        if self.weights is None:
            return self
        if spec_dir is not None and not Path(self.weights).is_absolute():
            self.weights = str((Path(spec_dir) / self.weights).resolve())
        record = mv.recorded_scale_factor(self.weights)
        if record is None:
            return self
        recorded, where = record
        if self.scale_factor is None:
            self.scale_factor = recorded
        elif spec_dir is not None and not _same_factor(self.scale_factor, recorded):
            raise ValueError(f"scale_factor {self.scale_factor:g} disagrees with {recorded:.4f} that train-vae "
                             f"recorded in {str(where)!r} for these weights; remove scale_factor to use the record "
                             "(latents scaled by one factor and decoded by another are wrong)")
        return self


def _same_factor(given: float, recorded: float) -> bool:
    """A factor copied by hand from train-vae's output (4 decimals) agrees with the record."""
    return math.isclose(given, recorded, rel_tol=1e-3) or round(recorded, 4) == given


def load_vae_weights(vae: torch.nn.Module, path: str | Path, name: str) -> None:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise mv.CheckpointError(f"{name}: VAE weights {str(path)!r} do not exist; train them with "
                                 "`metavoxel train-vae` or fix vae weights in the spec")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise mv.CheckpointError(f"{name}: {str(path)!r} is not a readable .safetensors file ({exc})") from None
    try:
        missing, unexpected = vae.load_state_dict(state, strict=False)
    except RuntimeError:  # a tensor of another shape
        missing, unexpected = ["(shape mismatch)"], []
    if missing or unexpected:
        raise mv.CheckpointError(f"{name}: {str(path)!r} does not fit the VAE in the spec ({len(missing)} missing, "
                                 f"{len(unexpected)} unexpected tensors); check the spec's vae architecture")


class ImageLatent(ImageValues, mv.GaussianVariable):
    """values (B, C, *shape) voxels <-> z (B, latent_channels, *shape / f) through a frozen VAE."""

    kind = "image_latent"
    lossless = False  # the VAE reconstructs approximately

    def __init__(self, name: str, channels: int, shape: tuple[int, ...], vae: torch.nn.Module, factor: int,
                 latent_channels: int, abar: torch.Tensor, scale_factor: float = 1.0):
        self.name, self.channels, self.shape = name, channels, tuple(shape)
        self.vae = vae.eval().requires_grad_(False)
        self.factor, self.scale_factor = factor, float(scale_factor)
        self.process = mv.GaussianProcess(abar)
        self.z_shape = (latent_channels, *(s // factor for s in self.shape))
        self.head = mv.SpatialHead(channels=latent_channels, shape=self.z_shape[1:])

    @classmethod
    def from_spec(cls, spec: ImageLatentSpec, ctx: mv.BuildContext) -> ImageLatent:
        check_dims(spec, ctx)
        pretrained = spec.weights is not None and ctx.load_weights
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)  # random init is reproducible (and replaced when weights are loaded)
            vae = mv.build_vae(ctx.spatial_dims, spec.channels, spec.vae)
        if pretrained:
            load_vae_weights(vae, spec.weights, spec.name)
        scale = spec.scale_factor
        if scale is None and pretrained:
            raise mv.SpecError(f"{spec.name}: scale_factor is not given and there is no vae.json from train-vae beside "
                               f"{spec.weights!r} to read it from; set the variable's scale_factor (1/std of the "
                               "training latents)")
        variable = cls(spec.name, spec.channels, tuple(spec.shape), vae, spec.vae.downsample_factor,
                       spec.vae.latent_channels, ctx.schedule("gaussian"), 1.0 if scale is None else scale)
        variable.prediction = spec.prediction
        variable.preprocessor = preprocessor(spec)
        return variable

    @torch.no_grad()
    def encode(self, values: torch.Tensor) -> torch.Tensor:
        mu, _sigma = self.vae.encode(values.float())
        return mu * self.scale_factor

    @torch.no_grad()
    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z0.float() / self.scale_factor)

    def diffusion_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Voxel known-mask (B, 1|C, *shape) -> latent known-mask (B, 1, *grid).

        A latent voxel counts as unknown if any voxel under it is unknown (max-pool of the unknown
        region), and the unknown region is then dilated by one latent voxel, so generated content is
        never squeezed against the known region; known voxels are pasted back after decoding.
        """
        pool = F.max_pool3d if len(self.shape) == 3 else F.max_pool2d
        unknown = (~mask.bool()).any(dim=1, keepdim=True).float()
        unknown = pool(unknown, kernel_size=self.factor, stride=self.factor)
        unknown = pool(unknown, kernel_size=3, stride=1, padding=1)  # dilate by one latent voxel
        return unknown == 0

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((n, self.channels, *self.shape), generator=generator)

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae}


KIND = mv.VariableKind(
    name="image_latent", spec=ImageLatentSpec, build=ImageLatent.from_spec,
    description="Image encoded by a frozen KL-VAE (MONAI AutoencoderKL); Gaussian diffusion on the latent (eps or v).",
    examples=({"channels": 1, "shape": [8, 8, 8],
               "vae": {"channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4}},),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
