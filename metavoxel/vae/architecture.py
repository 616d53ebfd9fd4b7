"""The KL-VAE architecture: which autoencoder network to build and with what arguments, declared by a `VAESpec`.

Two networks, both from MONAI:

- ``AutoencoderKL`` (``monai.networks.nets``): the latent-diffusion autoencoder (Rombach et al. 2022) that
  `metavoxel train-vae` trains and the brain LDM bundle ships (trained with MONAI GenerativeModels).
- ``AutoencoderKlMaisi`` (``monai.apps.generation.maisi``): MAISI's memory-lean variant (Guo et al. 2024),
  the same blocks with tensor-split convolutions and group norms.

`build_vae` is the one place a VAE is built. The fields that change what the weights compute are the
*architecture* (`VAESpec.architecture`); the others (gradient checkpointing, flash attention, MAISI's
splitting and cache-clearing) only change memory and speed, so a spec may set them differently from the VAE
folder it loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["EXECUTION_FIELDS", "MAISI_FIELDS", "NETWORKS", "VAESpec", "build_vae"]

#: Arguments only AutoencoderKlMaisi takes; None means MAISI's own default (``MAISI_DEFAULTS``).
MAISI_FIELDS = ("num_splits", "dim_split", "norm_float16", "print_info", "save_mem")
MAISI_DEFAULTS: dict[str, Any] = {"num_splits": 16, "dim_split": 0, "norm_float16": False, "print_info": False,
                                  "save_mem": True}
#: Fields that change memory use and speed, never the numbers a set of weights computes (norm_float16 does).
EXECUTION_FIELDS = ("use_checkpoint", "use_flash_attention", "num_splits", "dim_split", "print_info", "save_mem")


class VAESpec(BaseModel):
    """Architecture of the KL-VAE: the MONAI network and its constructor arguments (MONAI's names)."""

    model_config = ConfigDict(extra="forbid")
    network: Literal["AutoencoderKL", "AutoencoderKlMaisi"] = Field(
        "AutoencoderKL", description="monai.networks.nets.AutoencoderKL, or MAISI's AutoencoderKlMaisi "
        "(monai.apps.generation.maisi).")
    channels: list[int] = Field(default_factory=lambda: [64, 128, 256], min_length=2,
                                description="Feature channels per level; len - 1 halvings of the grid.")
    latent_channels: int = Field(4, ge=1)
    num_res_blocks: int | list[int] = Field(2, description="Residual blocks per level: one number, or one per level.")
    attention_levels: list[bool] | None = Field(None, description="Default: no attention at any level.")
    norm_num_groups: int = Field(32, ge=1)
    norm_eps: float = Field(1e-6, gt=0, description="Group-norm epsilon.")
    nonlocal_attention: bool | tuple[bool, bool] = Field(
        False, description="Self-attention in the middle blocks: one flag, or (encoder, decoder).")
    use_convtranspose: bool = Field(False, description="Transposed convolutions to upsample (else nearest + conv).")
    include_fc: bool | None = Field(None, description="Output projection in attention blocks (None: the network's "
                                    "default, True for AutoencoderKL, False for AutoencoderKlMaisi).")
    use_combined_linear: bool = Field(False, description="One qkv projection in attention blocks.")
    use_flash_attention: bool = Field(False, description="PyTorch's fused attention (speed only).")
    use_checkpoint: bool = Field(False, description="Gradient checkpointing (memory only; MAISI: use_checkpointing).")
    num_splits: int | None = Field(None, ge=1, description="AutoencoderKlMaisi: tensor splits per convolution.")
    dim_split: int | None = Field(None, ge=0, le=2, description="AutoencoderKlMaisi: the spatial axis split.")
    norm_float16: bool | None = Field(None, description="AutoencoderKlMaisi: group-norm output in float16 (cast back "
                                      "to the input's dtype by metavoxel, so the VAE also runs without autocast).")
    print_info: bool | None = Field(None, description="AutoencoderKlMaisi: log tensor sizes.")
    save_mem: bool | None = Field(None, description="AutoencoderKlMaisi: empty the CUDA cache between splits.")

    @model_validator(mode="after")
    def _consistent(self) -> VAESpec:
        levels = len(self.channels)
        if self.attention_levels is not None and len(self.attention_levels) != levels:
            raise ValueError("attention_levels needs one flag per entry of channels")
        if isinstance(self.num_res_blocks, list) and len(self.num_res_blocks) != levels:
            raise ValueError("num_res_blocks needs one number per entry of channels (or one number for all)")
        if any(n < 1 for n in self.res_blocks):
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every VAE channel count must be divisible by norm_num_groups={self.norm_num_groups}")
        if self.network != "AutoencoderKlMaisi":
            given = [f for f in MAISI_FIELDS if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{given[0]} is an argument of AutoencoderKlMaisi only; set network: "
                                 "AutoencoderKlMaisi or remove it")
        return self

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def res_blocks(self) -> list[int]:
        n = self.num_res_blocks
        return list(n) if isinstance(n, list) else [n] * len(self.channels)

    def architecture(self) -> dict[str, Any]:
        """Every field that changes what a set of weights computes, with defaults filled in, so that two specs
        of the same network compare equal however they were written (``attention_levels: null`` equals all
        False, ``num_res_blocks: 2`` equals ``[2, 2, 2]``, ...)."""
        return {name: value for name, value in self.resolved().items() if name not in EXECUTION_FIELDS}

    def resolved(self) -> dict[str, Any]:
        """Every field with the network's own defaults filled in (None for MAISI's fields on AutoencoderKL)."""
        maisi = self.network == "AutoencoderKlMaisi"
        encoder, decoder = ((self.nonlocal_attention,) * 2 if isinstance(self.nonlocal_attention, bool)
                            else self.nonlocal_attention)
        resolved = {
            "network": self.network, "channels": list(self.channels), "latent_channels": self.latent_channels,
            "num_res_blocks": self.res_blocks,
            "attention_levels": list(self.attention_levels or [False] * len(self.channels)),
            "norm_num_groups": self.norm_num_groups, "norm_eps": float(self.norm_eps),
            "nonlocal_attention": [bool(encoder), bool(decoder)], "use_convtranspose": self.use_convtranspose,
            "include_fc": (not maisi) if self.include_fc is None else self.include_fc,
            "use_combined_linear": self.use_combined_linear, "use_flash_attention": self.use_flash_attention,
            "use_checkpoint": self.use_checkpoint,
        }
        for name in MAISI_FIELDS:
            value = getattr(self, name)
            resolved[name] = (MAISI_DEFAULTS[name] if value is None else value) if maisi else None
        return resolved


def _attention_options(r: dict[str, Any], **defaults: bool) -> dict[str, bool]:
    """The attention-block options that differ from the network's defaults: the only ones passed, so a default
    architecture builds on MONAI releases that predate these arguments."""
    defaults = {"use_combined_linear": False, "use_flash_attention": False, **defaults}
    return {name: r[name] for name, default in defaults.items() if r[name] != default}


def _autoencoder_kl(spatial_dims: int, channels: int, r: dict[str, Any]) -> torch.nn.Module:
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(
        spatial_dims=spatial_dims, in_channels=channels, out_channels=channels, channels=tuple(r["channels"]),
        latent_channels=r["latent_channels"], num_res_blocks=tuple(r["num_res_blocks"]),
        attention_levels=tuple(r["attention_levels"]), norm_num_groups=r["norm_num_groups"], norm_eps=r["norm_eps"],
        with_encoder_nonlocal_attn=r["nonlocal_attention"][0], with_decoder_nonlocal_attn=r["nonlocal_attention"][1],
        use_checkpoint=r["use_checkpoint"], use_convtranspose=r["use_convtranspose"],
        **_attention_options(r, include_fc=True),
    )


def _autoencoder_kl_maisi(spatial_dims: int, channels: int, r: dict[str, Any]) -> torch.nn.Module:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi, MaisiGroupNorm3D

    vae = AutoencoderKlMaisi(
        spatial_dims=spatial_dims, in_channels=channels, out_channels=channels, num_channels=tuple(r["channels"]),
        latent_channels=r["latent_channels"], num_res_blocks=tuple(r["num_res_blocks"]),
        attention_levels=tuple(r["attention_levels"]), norm_num_groups=r["norm_num_groups"], norm_eps=r["norm_eps"],
        with_encoder_nonlocal_attn=r["nonlocal_attention"][0], with_decoder_nonlocal_attn=r["nonlocal_attention"][1],
        use_checkpointing=r["use_checkpoint"], use_convtranspose=r["use_convtranspose"],
        num_splits=r["num_splits"], dim_split=r["dim_split"], **_attention_options(r, include_fc=False),
        norm_float16=r["norm_float16"], print_info=r["print_info"], save_mem=r["save_mem"],
    )
    if r["norm_float16"]:
        # MAISI runs under CUDA autocast, where the next convolution accepts the float16 norm output; cast it
        # back to the input's dtype so the VAE also runs in float32 (CPU, no autocast). The float16 rounding of
        # the normalised activations, which is what the weights were trained with, is kept.
        for module in vae.modules():
            if isinstance(module, MaisiGroupNorm3D):
                module.register_forward_hook(_to_input_dtype)
    return vae


def _to_input_dtype(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return output.to(inputs[0].dtype)


#: network name -> builder(spatial_dims, image channels, resolved fields) -> the MONAI module.
NETWORKS: dict[str, Callable[[int, int, dict[str, Any]], torch.nn.Module]] = {
    "AutoencoderKL": _autoencoder_kl,
    "AutoencoderKlMaisi": _autoencoder_kl_maisi,
}


def build_vae(spatial_dims: int, channels: int, spec: VAESpec) -> torch.nn.Module:
    """The MONAI autoencoder ``spec`` declares, with random weights.

    Args:
        spatial_dims: 2 or 3 (AutoencoderKlMaisi: 3 only).
        channels: image channels (the VAE's in_channels and out_channels).
        spec: the architecture.

    Returns:
        a module with ``encode(x) -> (mu, sigma)`` and ``decode(z)``: x (B, channels, *grid) ->
        mu (B, latent_channels, *grid / spec.downsample_factor).
    """
    return NETWORKS[spec.network](spatial_dims, channels, spec.resolved())
