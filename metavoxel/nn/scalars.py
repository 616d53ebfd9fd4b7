"""How the scalar variables enter the network (cross-attention tokens) and leave it (bottleneck heads).

Tokens: one per scalar variable, carrying its value, its identity and the noise level. Heads: one per
scalar variable, reading the U-Net's middle-block features and predicting exactly zero at initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, zero_module
from torch import nn

from metavoxel.errors import InputError

__all__ = ["ScalarHead", "TokenEmbedding"]


class TokenEmbedding(nn.Module):
    """Embed S scalar variables as S tokens of width D for cross-attention.

    Token i is ``e_i = W_i x_i + b_i + id_i + W_t SiLU(temb)``: its own linear projection of the raw
    feature vector (a value, or a one-hot / probability vector for a categorical), a learned identity so
    the network knows which variable it is, and the timestep embedding so attention knows the noise level.
    A shared residual MLP, ``e + MLP(e)``, then mixes value, identity and time non-linearly.

    Args:
        token_features: width of each variable's raw feature vector, one entry per token (non-empty).
        time_embed_dim: width of the timestep embedding ``temb``.
        cross_attention_dim: width D of the tokens.
    """

    def __init__(self, token_features: Sequence[int], time_embed_dim: int, cross_attention_dim: int) -> None:
        super().__init__()
        self.token_features = tuple(int(f) for f in token_features)
        self.projections = nn.ModuleList(nn.Linear(f, cross_attention_dim) for f in self.token_features)
        self.identity = nn.Parameter(torch.randn(len(self.token_features), cross_attention_dim) * 0.02)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, cross_attention_dim))
        self.mlp = nn.Sequential(
            nn.Linear(cross_attention_dim, cross_attention_dim),
            nn.SiLU(),
            nn.Linear(cross_attention_dim, cross_attention_dim),
        )

    def check(self, tokens: Sequence[torch.Tensor], batch: int) -> None:
        """Raise `InputError` unless ``tokens`` holds one (batch, token_features[i]) tensor per variable."""
        if len(tokens) != len(self.token_features):
            raise InputError(
                f"expected {len(self.token_features)} scalar tokens (one per scalar variable, widths "
                f"{list(self.token_features)}), got {len(tokens)}; pass one (B, width) tensor per scalar variable"
            )
        for i, (tok, width) in enumerate(zip(tokens, self.token_features)):
            if tuple(tok.shape) != (batch, width):
                raise InputError(
                    f"scalar token {i} must have shape (B={batch}, {width}), got {tuple(tok.shape)}; "
                    "give continuous values as (B, 1) and categoricals as (B, K) one-hot or probability vectors"
                )

    def forward(self, tokens: Sequence[torch.Tensor], temb: torch.Tensor) -> torch.Tensor:
        """Build the token set.

        Args:
            tokens: S tensors, token i of shape (B, token_features[i]).
            temb: (B, time_embed_dim) timestep embedding shared by every token, or (B, S, time_embed_dim)
                with each token's own noise level.

        Returns:
            (B, S, cross_attention_dim) tokens.
        """
        self.check(tokens, temb.shape[0])
        dtype = self.identity.dtype
        e = torch.stack([proj(tok.to(dtype)) for proj, tok in zip(self.projections, tokens)], dim=1)  # (B, S, D)
        level = self.time_proj(temb)  # (B, D) or (B, S, D)
        e = e + self.identity[None] + (level[:, None] if level.dim() == 2 else level)  # (B, S, D)
        return e + self.mlp(e)


class ScalarHead(nn.Module):
    """Predict one scalar variable from the bottleneck feature map.

    ``mean_voxels(conv_out(SiLU(GroupNorm(R(h, temb)))))`` where R is a residual block of two
    GroupNorm→SiLU→Conv blocks with a skip (1×1 conv when widths differ; the timestep embedding is added
    between them, as in the U-Net's own blocks) and ``conv_out`` is a zero-initialised 1×1 conv, so the
    head predicts exactly 0 at initialisation — the mean of a standardised diffusion target.

    Args:
        spatial_dims: 2 or 3.
        in_channels: width of the bottleneck feature map.
        out_features: width of the prediction (1 for a continuous variable, K logits for a categorical).
        temb_channels: width of the timestep embedding.
        norm_num_groups: groups of the GroupNorms; must divide ``in_channels`` and ``hidden_channels``.
        hidden_channels: width of the residual block; default ``in_channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_features: int,
        temb_channels: int,
        norm_num_groups: int,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        hidden = in_channels if hidden_channels is None else hidden_channels
        self.block = DiffusionUNetResnetBlock(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=hidden,
            temb_channels=temb_channels,
            norm_num_groups=norm_num_groups,
        )
        self.norm = nn.GroupNorm(norm_num_groups, hidden, eps=1e-6)
        self.act = nn.SiLU()
        self.conv_out = zero_module(
            Convolution(spatial_dims, hidden, out_features, kernel_size=1, padding=0, conv_only=True)
        )

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Read the prediction.

        Args:
            h: (B, in_channels, *spatial) bottleneck features.
            temb: (B, temb_channels) timestep embedding.

        Returns:
            (B, out_features).
        """
        y = self.conv_out(self.act(self.norm(self.block(h, temb))))  # (B, out_features, *spatial)
        return y.flatten(2).mean(dim=2)  # (B, out_features)
