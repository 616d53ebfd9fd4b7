"""`JointUNet`: one LDM-style U-Net that denoises the images and the clinical scalars together.

Spatial variables (and one constant channel per scalar input feature, built by the engine) enter as the
input channels; each scalar variable also enters as a cross-attention token. The decoder predicts the
spatial variables; one head per scalar variable reads the bottleneck. Architecture after Rombach et al.
2022 ("High-Resolution Image Synthesis with Latent Diffusion Models"), generic over 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding, zero_module
from torch import nn

from metavoxel.errors import InputError
from metavoxel.nn.attention import Attention, check_backend
from metavoxel.nn.levels import DecoderLevel, EncoderLevel, MiddleBlock, ResAttnBlock, build_downsample, build_upsample
from metavoxel.nn.scalars import ScalarHead, TokenEmbedding

__all__ = ["JointUNet"]


def _check_config(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    token_features: Sequence[int],
    head_features: Sequence[int],
    channels: Sequence[int],
    attention_levels: Sequence[bool],
    num_res_blocks: int,
    num_head_channels: int,
    norm_num_groups: int,
    cross_attention_dim: int,
) -> None:
    """Raise `InputError` with a one-line what/got/fix message on the first bad constructor argument."""
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}; set it to the grid's dimensionality")
    for name, value in [
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("num_res_blocks", num_res_blocks),
        ("num_head_channels", num_head_channels),
        ("norm_num_groups", norm_num_groups),
        ("cross_attention_dim", cross_attention_dim),
    ]:
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}; fix network.{name}")
    if len(channels) == 0 or any(not isinstance(c, int) or c < 1 for c in channels):
        raise InputError(
            f"channels must be a non-empty list of positive integers, got {list(channels)}; fix network.channels"
        )
    if len(attention_levels) != len(channels):
        raise InputError(
            f"attention_levels needs one flag per entry of channels ({len(channels)}: {list(channels)}), "
            f"got {len(attention_levels)}: {list(attention_levels)}; "
            "make network.attention_levels as long as network.channels"
        )
    bad = [c for c in channels if c % norm_num_groups]
    if bad:
        raise InputError(
            f"every entry of channels must be divisible by norm_num_groups={norm_num_groups}, got {list(channels)} "
            f"({bad} are not); change network.channels or network.norm_num_groups"
        )
    # Attention runs at the flagged levels and always in the middle block (width channels[-1]).
    attended = sorted({c for c, flag in zip(channels, attention_levels) if flag} | {channels[-1]})
    bad = [c for c in attended if c % num_head_channels]
    if bad:
        raise InputError(
            f"the widths with attention {attended} must be divisible by num_head_channels={num_head_channels} "
            f"(heads = width // num_head_channels), got {bad} not divisible; change network.channels or "
            "network.num_head_channels"
        )
    if len(token_features) != len(head_features):
        raise InputError(
            f"token_features and head_features need one entry per scalar variable each, got "
            f"{len(token_features)} tokens {list(token_features)} and {len(head_features)} heads "
            f"{list(head_features)}; list the same scalar variables in both"
        )
    for name, widths in [("token_features", token_features), ("head_features", head_features)]:
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise InputError(
                f"{name} entries must be positive integers (1 for a continuous variable, K for a K-class "
                f"categorical), got {list(widths)}; fix the scalar variables' widths"
            )


class JointUNet(nn.Module):
    """LDM-style U-Net over a grid plus scalar tokens, with one bottleneck head per scalar variable.

    conv_in → encoder levels (``num_res_blocks`` residual blocks with timestep embedding; at attention
    levels each followed by a self- + cross-attention transformer block; stride-2 downsample between
    levels) → middle block (residual, attention, residual) → decoder levels with skip connections
    (``num_res_blocks + 1`` blocks; ×2 upsample between levels) → GroupNorm → SiLU → zero-initialised
    conv_out. Every prediction is exactly zero at initialisation.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels C_in of the input grid.
        out_channels: channels C_out of the spatial prediction.
        token_features: width of each scalar variable's raw token (1 continuous, K categorical); may be
            empty for an image-only model (no cross-attention, no heads).
        head_features: width of each scalar variable's prediction, same order as ``token_features``.
        channels: width of each resolution level; the grid is halved ``len(channels) - 1`` times, so
            every spatial size must be divisible by ``2 ** (len(channels) - 1)``.
        attention_levels: per level, whether to add attention; the middle block always has it.
        num_res_blocks: residual blocks per encoder level (the decoder has one more).
        num_head_channels: width of each attention head; heads = level width // num_head_channels.
        norm_num_groups: GroupNorm groups; must divide every entry of ``channels``.
        cross_attention_dim: width the scalar tokens are projected to.
        attention_backend: ``auto`` | ``triton`` | ``torch`` or ``None`` (``METAVOXEL_KERNELS``, else auto).

    Raises:
        InputError: on an inconsistent configuration; the message names the argument and the fix.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        token_features: Sequence[int],
        head_features: Sequence[int],
        channels: Sequence[int] = (32, 64, 64),
        attention_levels: Sequence[bool] = (False, True, True),
        num_res_blocks: int = 1,
        num_head_channels: int = 32,
        norm_num_groups: int = 8,
        cross_attention_dim: int = 64,
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        _check_config(
            spatial_dims, in_channels, out_channels, token_features, head_features, channels,
            attention_levels, num_res_blocks, num_head_channels, norm_num_groups, cross_attention_dim,
        )  # fmt: skip
        backend = check_backend(attention_backend)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = tuple(channels)
        self.token_features = tuple(token_features)
        self.head_features = tuple(head_features)
        self.downsample_factor = 2 ** (len(self.channels) - 1)

        time_embed_dim = 4 * self.channels[0]
        self.time_embed = nn.Sequential(
            nn.Linear(self.channels[0], time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        self.token_embedding: TokenEmbedding | None = None
        context_dim: int | None = None
        if self.token_features:
            self.token_embedding = TokenEmbedding(self.token_features, time_embed_dim, cross_attention_dim)
            context_dim = cross_attention_dim

        def block(c_in: int, c_out: int, attend: bool) -> ResAttnBlock:
            return ResAttnBlock(
                spatial_dims, c_in, c_out, time_embed_dim, norm_num_groups, attend, num_head_channels, context_dim,
                backend,
            )  # fmt: skip

        self.conv_in = Convolution(
            spatial_dims, in_channels, self.channels[0], kernel_size=3, padding=1, conv_only=True
        )
        skip_widths = [self.channels[0]]
        width = self.channels[0]
        encoder = []
        for level, (c, attend) in enumerate(zip(self.channels, attention_levels)):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(block(width, c, attend))
                width = c
                skip_widths.append(width)
            downsample = None
            if level < len(self.channels) - 1:
                downsample = build_downsample(spatial_dims, width)
                skip_widths.append(width)
            encoder.append(EncoderLevel(blocks, downsample))
        self.encoder = nn.ModuleList(encoder)

        self.middle = MiddleBlock(
            spatial_dims, width, time_embed_dim, norm_num_groups, num_head_channels, context_dim, backend
        )
        self.heads = nn.ModuleList(
            ScalarHead(spatial_dims, width, f, time_embed_dim, norm_num_groups) for f in self.head_features
        )

        decoder = []
        for level in reversed(range(len(self.channels))):
            c, attend = self.channels[level], attention_levels[level]
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(block(width + skip_widths.pop(), c, attend))
                width = c
            decoder.append(DecoderLevel(blocks, build_upsample(spatial_dims, width) if level > 0 else None))
        self.decoder = nn.ModuleList(decoder)

        self.norm_out = nn.GroupNorm(norm_num_groups, width, eps=1e-6)
        self.act_out = nn.SiLU()
        self.conv_out = zero_module(
            Convolution(spatial_dims, width, out_channels, kernel_size=3, padding=1, conv_only=True)
        )

    # ----------------------------------------------------------------- attention backend
    def attention_modules(self) -> Iterator[Attention]:
        """Every attention module of the network (self and cross)."""
        return (m for m in self.modules() if isinstance(m, Attention))

    @property
    def attention_backend(self) -> str | None:
        """The backend the attention modules ask for (they always agree unless set one by one)."""
        return next((m.backend for m in self.attention_modules()), None)

    def set_attention_backend(self, name: str | None) -> None:
        """Switch every attention module to ``name``: ``auto`` | ``triton`` | ``torch`` or ``None``.

        Raises:
            InputError: if ``name`` is not a known backend.
        """
        name = check_backend(name)
        for module in self.attention_modules():
            module.backend = name

    # ----------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and return ``t`` as a (B,) tensor."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            expected = ", ".join(["B", str(self.in_channels)] + [f"S{i}" for i in range(self.spatial_dims)])
            raise InputError(
                f"JointUNet expected input ({expected}), got shape {tuple(x.shape)}; build the grid with "
                f"{self.in_channels} channels and {self.spatial_dims} spatial dims"
            )
        spatial = tuple(x.shape[2:])
        f = self.downsample_factor
        if any(s % f for s in spatial):
            fixed = tuple(-(-s // f) * f for s in spatial)
            raise InputError(
                f"JointUNet with channels {list(self.channels)} halves the grid {len(self.channels) - 1} times, "
                f"so every spatial size must be divisible by {f}, got spatial shape {spatial}; crop or pad the grid "
                f"(e.g. pad to {fixed}) or use fewer levels in network.channels"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise InputError(
                f"timesteps t must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}; pass one step per example"
            )
        return t

    def _embed(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B,) steps -> (B, 4 * channels[0]) timestep embedding."""
        return self.time_embed(get_timestep_embedding(t, self.channels[0]).to(dtype))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, tokens: Sequence[torch.Tensor] = (),
        token_levels: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Predict the spatial variables and every scalar variable.

        Args:
            x: (B, in_channels, *spatial) input grid; spatial sizes divisible by ``downsample_factor``.
            t: (B,) timesteps of the grid, integer steps 0..T as long or float (a 0-d tensor is broadcast).
            tokens: one (B, token_features[i]) tensor per scalar variable; empty for an image-only model.
            token_levels: one (B,) step per scalar variable (its own noise level: the token and the head
                of variable i are told t_i); None gives every token and head the grid's ``t``.

        Returns:
            ``(spatial, scalars)``: spatial (B, out_channels, *spatial) and a list with one
            (B, head_features[i]) tensor per scalar variable.

        Raises:
            InputError: on a shape the network cannot take; the message says the fix.
        """
        t = self._check_input(x, t)
        dtype = self.time_embed[0].weight.dtype
        temb = self._embed(t, dtype)  # (B, 4 * channels[0])
        token_temb = [temb] * len(self.heads)
        if token_levels is not None:
            if len(token_levels) != len(self.heads):
                raise InputError(f"expected {len(self.heads)} token levels (one per scalar variable), got "
                                 f"{len(token_levels)}; pass one (B,) step per scalar token")
            token_temb = [self._embed(self._check_input(x, level), dtype) for level in token_levels]
        context = None
        if self.token_embedding is not None:
            shared = token_levels is None
            context = self.token_embedding(tokens, temb if shared else torch.stack(token_temb, dim=1))  # (B, S, D)
        elif len(tokens):
            raise InputError(
                f"this JointUNet was built without scalar variables (token_features=[]), got {len(tokens)} tokens; "
                "pass no tokens or rebuild with token_features"
            )

        h = self.conv_in(x)  # (B, channels[0], *spatial)
        skips = [h]
        for level in self.encoder:
            h = level(h, temb, context, skips)
        h = self.middle(h, temb, context)  # (B, channels[-1], *spatial / downsample_factor)
        scalars = [head(h, e) for head, e in zip(self.heads, token_temb)]
        for level in self.decoder:
            h = level(h, temb, context, skips)
        return self.conv_out(self.act_out(self.norm_out(h))), scalars
