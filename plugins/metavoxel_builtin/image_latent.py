"""The ``image_latent`` kind: an image passed through a frozen 3D/2D KL-VAE (MONAI ``AutoencoderKL`` or MAISI's
``AutoencoderKlMaisi``), diffused with the Gaussian process in the VAE's latent space (latent diffusion, Rombach
et al. 2022).

z0 = scale_factor * mu(x): the posterior mean, so encoding is deterministic. ``weights`` names a VAE folder
(written by `metavoxel train-vae` or `metavoxel import-vae`) or the ``vae.safetensors`` in one; the architecture
and the scale factor are read from its ``vae.json`` unless the spec gives them, and a spec file that gives others
is refused, since latents encoded with one factor or network and decoded with another are wrong. The spec a run
saves records the resolved architecture and factor, so the run rebuilds without the folder.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Literal

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
    vae: mv.VAESpec | None = Field(None, description=(
        "The VAE's architecture. Default: the one recorded in the VAE folder that weights points at (VAESpec's "
        "defaults without one). Fields given here override the record's: memory and speed settings freely; an "
        "architecture field that disagrees with the record is refused."))
    scale_factor: float | None = Field(None, gt=0, description=(
        "Latent scale (1/std of the training latents). Default: the one recorded in the VAE folder's vae.json (1 "
        "without weights; an imported VAE has none until `encode`/`train` compute it on the cohort). A spec file "
        "giving another value than that record is refused."))
    weights: str | None = Field(None, description=(
        "A VAE folder (vae.safetensors + vae.json, written by train-vae or import-vae) or a .safetensors file, "
        "relative to the spec file's folder; random if absent (tests only)."))

    @model_validator(mode="after")
    def _vae_record(self, info: ValidationInfo) -> ImageLatentSpec:
        """Resolve ``weights`` against the spec file's folder and take the architecture and scale factor from the
        VAE folder's record; then check the grid fits the VAE.

        ``spec_dir`` in the validation context marks a spec the user wrote (`ModelSpec.from_file`): there an
        architecture, channel count or factor that disagrees with the record is refused, and preprocessing
        that differs from what the VAE expects is refused or warned about (`metavoxel.input_mismatches`).
        Without it (a stored run's spec, which records the resolved architecture and factor) the record is only
        read to fill what is missing, so a run rebuilds without its VAE folder.
        """
        spec_dir = (info.context or {}).get("spec_dir")
        record = None
        if self.weights is not None:
            if spec_dir is not None and not Path(self.weights).is_absolute():
                self.weights = str((Path(spec_dir) / self.weights).resolve())
            record = mv.read_vae_record(self.weights)
            if record is None and Path(self.weights).is_dir():
                raise ValueError(f"weights {self.weights!r} is a folder without vae.json; point it at a VAE folder "
                                 "written by train-vae or import-vae, or at a .safetensors file")
            if record is not None:
                self.weights = str(record.weights)
        if record is not None and (self.vae is None or spec_dir is not None):
            self._check_geometry(record)
            recorded = mv.VAESpec.model_validate(record.architecture)
            if self.vae is None:
                self.vae = recorded
            else:  # the fields the spec gives over the record's: execution settings, or the same architecture
                given = self.vae.model_dump(include=self.vae.model_fields_set)
                self.vae = mv.VAESpec.model_validate({**recorded.model_dump(), **given})
                _same_architecture(self.vae, recorded, record.meta_file)
        if self.vae is None:
            self.vae = mv.VAESpec()
        self._fits_vae()
        if record is not None and record.scale_factor is not None:
            if self.scale_factor is None:
                self.scale_factor = record.scale_factor
            elif spec_dir is not None and not _same_factor(self.scale_factor, record.scale_factor):
                raise ValueError(f"scale_factor {self.scale_factor:g} disagrees with {record.scale_factor:.4f} "
                                 f"recorded in {str(record.meta_file)!r} for these weights; remove scale_factor to "
                                 "use the record (latents scaled by one factor and decoded by another are wrong)")
        if record is not None and record.expects is not None and spec_dir is not None:
            refusals, notes = mv.input_mismatches(mv.ExpectedInput.model_validate(record.expects), self.shape,
                                                  self.preprocess, where=repr(str(record.folder)))
            if refusals:
                raise ValueError(refusals[0])
            for note in notes:
                warnings.warn(f"{self.name}: {note}", mv.VAEInputWarning, stacklevel=2)
        return self

    def _check_geometry(self, record: mv.VAERecord) -> None:
        if record.channels != self.channels:
            raise ValueError(f"channels {self.channels} disagrees with the {record.channels} image channel(s) the VAE "
                             f"in {str(record.folder)!r} was built for; set channels: {record.channels}")
        if record.spatial_dims != len(self.shape):
            raise ValueError(f"shape {self.shape} is {len(self.shape)}D but the VAE in {str(record.folder)!r} is "
                             f"{record.spatial_dims}D; give a {record.spatial_dims}D shape")

    def _fits_vae(self) -> None:
        f = self.vae.downsample_factor
        if any(s % f for s in self.shape):
            raise ValueError(f"shape {self.shape} must be divisible by the VAE downsampling factor {f}; "
                             f"crop or pad the grid")
        if self.vae.network == "AutoencoderKlMaisi":
            if len(self.shape) != 3:
                raise ValueError(f"vae.network AutoencoderKlMaisi is 3D only, but shape {self.shape} is 2D; use "
                                 "AutoencoderKL")
            # MAISI splits one axis into num_splits pieces in every convolution; at the coarsest level a piece
            # under 3 voxels fails inside MONAI (measured on MONAI 1.6.1), so say so here, in one line.
            resolved = self.vae.resolved()
            splits, axis = resolved["num_splits"], resolved["dim_split"]
            coarse = self.shape[axis] // f
            if splits > 1 and coarse // splits < 3:
                raise ValueError(f"vae.num_splits {splits} cuts axis {axis} of the {coarse}-voxel coarsest grid into "
                                 f"pieces under 3 voxels, which MAISI's split convolutions cannot run; set vae."
                                 f"num_splits to at most {max(1, coarse // 3)} (it changes memory use only)")


def _same_architecture(given: mv.VAESpec, recorded: mv.VAESpec, meta_file: Path) -> None:
    """Refuse a spec's ``vae`` (merged over the folder's) that computes something else than the folder's, naming the
    first field that differs; fields that change only memory and speed (`metavoxel.vae.architecture.
    EXECUTION_FIELDS`) may differ."""
    mine, theirs = given.architecture(), recorded.architecture()
    for name in mine:
        if mine[name] != theirs[name]:
            raise ValueError(f"vae.{name} {mine[name]!r} disagrees with {theirs[name]!r} recorded in {str(meta_file)!r} "
                             f"for these weights; remove vae.{name} from the spec to use the VAE folder's")


def _same_factor(given: float, recorded: float) -> bool:
    """A factor copied by hand from train-vae's output (4 decimals) agrees with the record."""
    return math.isclose(given, recorded, rel_tol=1e-3) or round(recorded, 4) == given


def load_vae_weights(vae: torch.nn.Module, path: str | Path, name: str) -> None:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise mv.CheckpointError(f"{name}: VAE weights {str(path)!r} do not exist; train them with "
                                 "`metavoxel train-vae`, import them with `metavoxel import-vae`, or fix weights in "
                                 "the spec")
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
            if mv.read_vae_record(spec.weights) is not None:
                raise mv.SpecError(f"{spec.name}: the VAE folder of {spec.weights!r} records no latent scale factor yet "
                                   "(an imported VAE); `metavoxel encode` or `metavoxel train` computes it on the "
                                   "cohort's training split and records it there, or set the variable's scale_factor")
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
    description="Image encoded by a frozen KL-VAE (MONAI AutoencoderKL or AutoencoderKlMaisi); Gaussian diffusion on "
                "the latent (eps or v).",
    examples=({"channels": 1, "shape": [8, 8, 8],
               "vae": {"channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4}},),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
