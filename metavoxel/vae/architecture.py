"""The KL-VAE architecture: MONAI's LDM ``AutoencoderKL``, declared by a `VAESpec`."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["VAESpec", "build_vae"]


class VAESpec(BaseModel):
    """Architecture of the AutoencoderKL (MONAI's LDM autoencoder)."""

    model_config = ConfigDict(extra="forbid")
    channels: list[int] = Field(default_factory=lambda: [64, 128, 256], min_length=2)
    latent_channels: int = Field(4, ge=1)
    num_res_blocks: int = Field(2, ge=1)
    attention_levels: list[bool] | None = Field(None, description="Default: no attention at any level.")
    norm_num_groups: int = Field(32, ge=1)
    nonlocal_attention: bool = Field(False, description="Self-attention in the encoder/decoder middle blocks.")

    @model_validator(mode="after")
    def _consistent(self) -> VAESpec:
        if self.attention_levels is not None and len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels needs one flag per entry of channels")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every VAE channel count must be divisible by norm_num_groups={self.norm_num_groups}")
        return self

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


def build_vae(spatial_dims: int, channels: int, spec: VAESpec) -> torch.nn.Module:
    from monai.networks.nets import AutoencoderKL

    levels = spec.attention_levels or [False] * len(spec.channels)
    return AutoencoderKL(
        spatial_dims=spatial_dims, in_channels=channels, out_channels=channels, channels=tuple(spec.channels),
        latent_channels=spec.latent_channels, num_res_blocks=spec.num_res_blocks, attention_levels=tuple(levels),
        norm_num_groups=spec.norm_num_groups, with_encoder_nonlocal_attn=spec.nonlocal_attention,
        with_decoder_nonlocal_attn=spec.nonlocal_attention,
    )
