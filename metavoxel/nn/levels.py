"""The U-Net's resolution levels: encoder level, middle block and decoder level.

Each level stacks `ResAttnBlock` modules — MONAI's timestep-conditioned residual block, followed at attention
levels by our `SpatialTransformer` (self-attention, plus cross-attention to the scalar tokens when the
model has any). Resampling uses MONAI's strided-conv downsample and nearest-neighbour + conv upsample.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, DiffusionUnetDownsample, WrappedUpsample
from torch import nn

from metavoxel.nn.attention import SpatialTransformer

__all__ = ["DecoderLevel", "EncoderLevel", "MiddleBlock", "ResAttnBlock", "build_downsample", "build_upsample"]


class ResAttnBlock(nn.Module):
    """Residual block with timestep embedding, then (optionally) a spatial transformer block.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input width.
        out_channels: output width.
        temb_channels: width of the timestep embedding.
        norm_num_groups: groups of every GroupNorm.
        with_attention: add a `SpatialTransformer` after the residual block.
        num_head_channels: attention head width.
        context_dim: token width for cross-attention; ``None``: self-attention only.
        backend: attention kernel backend.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        norm_num_groups: int,
        with_attention: bool,
        num_head_channels: int,
        context_dim: int | None,
        backend: str | None,
    ) -> None:
        super().__init__()
        self.res = DiffusionUNetResnetBlock(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            temb_channels=temb_channels,
            norm_num_groups=norm_num_groups,
        )
        self.attn = (
            SpatialTransformer(out_channels, num_head_channels, norm_num_groups, context_dim, backend)
            if with_attention
            else None
        )

    def forward(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, out_channels, *spatial)."""
        h = self.res(h, temb)
        return h if self.attn is None else self.attn(h, context)


class EncoderLevel(nn.Module):
    """``num_res_blocks`` blocks at one resolution, then an optional stride-2 conv downsample.

    Every block output and the downsampled map are skip connections for the decoder.
    """

    def __init__(self, blocks: list[ResAttnBlock], downsample: DiffusionUnetDownsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None, skips: list[torch.Tensor]
    ) -> torch.Tensor:
        """Run the level, appending its skip connections to ``skips``; returns the level's output."""
        for block in self.blocks:
            h = block(h, temb, context)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)  # (B, C, *spatial / 2)
            skips.append(h)
        return h


class MiddleBlock(nn.Module):
    """Bottleneck: residual block, transformer block (self + cross attention), residual block."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        temb_channels: int,
        norm_num_groups: int,
        num_head_channels: int,
        context_dim: int | None,
        backend: str | None,
    ) -> None:
        super().__init__()
        common = dict(spatial_dims=spatial_dims, temb_channels=temb_channels, norm_num_groups=norm_num_groups)
        self.first = ResAttnBlock(
            in_channels=channels,
            out_channels=channels,
            with_attention=True,
            num_head_channels=num_head_channels,
            context_dim=context_dim,
            backend=backend,
            **common,
        )
        self.second = DiffusionUNetResnetBlock(in_channels=channels, out_channels=channels, **common)

    def forward(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """(B, C, *spatial) -> (B, C, *spatial)."""
        return self.second(self.first(h, temb, context), temb)


class DecoderLevel(nn.Module):
    """``num_res_blocks + 1`` blocks, each fed the previous output concatenated with one popped skip,
    then an optional nearest-neighbour ×2 upsample followed by a 3×3 conv."""

    def __init__(self, blocks: list[ResAttnBlock], upsample: WrappedUpsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.upsample = upsample

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None, skips: list[torch.Tensor]
    ) -> torch.Tensor:
        """Run the level, consuming its skip connections from the end of ``skips``."""
        for block in self.blocks:
            h = torch.cat([h, skips.pop()], dim=1)  # (B, C_h + C_skip, *spatial)
            h = block(h, temb, context)
        if self.upsample is not None:
            h = self.upsample(h)  # (B, C, *spatial * 2)
        return h


def build_downsample(spatial_dims: int, channels: int) -> DiffusionUnetDownsample:
    """A stride-2 3×3 conv that halves every spatial size (which must be even)."""
    return DiffusionUnetDownsample(spatial_dims, channels, use_conv=True, padding=1)


def build_upsample(spatial_dims: int, channels: int) -> WrappedUpsample:
    """Nearest-neighbour ×2 then a 3×3 conv (no checkerboard artefacts of a transposed conv)."""
    post_conv = Convolution(spatial_dims, channels, channels, strides=1, kernel_size=3, padding=1, conv_only=True)
    return WrappedUpsample(
        spatial_dims=spatial_dims,
        mode="nontrainable",
        in_channels=channels,
        out_channels=channels,
        interp_mode="nearest",
        scale_factor=2.0,
        post_conv=post_conv,
        align_corners=None,
    )
