"""Multi-head attention through the project's kernel, and the spatial transformer block built on it.

Every attention in the network — self-attention over voxels and cross-attention from voxels to the
scalar tokens — runs through `Attention`, which calls `metavoxel.kernels.attention` with a backend that
can be switched at run time (``auto`` | ``triton`` | ``torch``; ``None`` defers to ``METAVOXEL_KERNELS``).
"""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import zero_module
from torch import nn

from metavoxel.errors import InputError
from metavoxel.kernels import BACKENDS, attention

__all__ = ["Attention", "SpatialTransformer", "check_backend"]


def check_backend(backend: str | None) -> str | None:
    """Return ``backend`` unchanged if it names a kernel backend (or is ``None``), else raise `InputError`."""
    if backend is None or backend in BACKENDS:
        return backend
    raise InputError(
        f"attention backend must be one of {', '.join(BACKENDS)} (or None for METAVOXEL_KERNELS / auto), "
        f"got {backend!r}; pick one of those names"
    )


class Attention(nn.Module):
    """Multi-head attention ``softmax(q k^T / sqrt(d)) v`` (Vaswani et al. 2017, eq. 1) via the kernel.

    Self-attention when ``context`` is omitted, cross-attention to ``context`` otherwise.

    Args:
        query_dim: width C of the queries' input (and of the output).
        num_heads: number of heads H.
        head_dim: width d of each head; the inner width is H * d.
        context_dim: width of the keys' and values' input; ``None`` means ``query_dim`` (self-attention).
        backend: kernel backend, ``auto`` | ``triton`` | ``torch`` or ``None``; settable later via `.backend`.
    """

    def __init__(
        self,
        query_dim: int,
        num_heads: int,
        head_dim: int,
        context_dim: int | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        self._backend = check_backend(backend)

    @property
    def backend(self) -> str | None:
        """The kernel backend this module asks for (``None``: ``METAVOXEL_KERNELS`` or ``auto``)."""
        return self._backend

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = check_backend(name)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``x`` to ``context`` (or to ``x`` itself).

        Args:
            x: (B, N, query_dim) queries' input.
            context: (B, M, context_dim) keys' and values' input, or ``None`` for self-attention.

        Returns:
            (B, N, query_dim).
        """
        context = x if context is None else context
        q = self._split_heads(self.to_q(x))  # (B, H, N, d)
        k = self._split_heads(self.to_k(context))  # (B, H, M, d)
        v = self._split_heads(self.to_v(context))  # (B, H, M, d)
        out = attention(q, k, v, scale=None, backend=self._backend)  # (B, H, N, d)
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)  # (B, N, H * d)
        return self.to_out(out)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, backend={self._backend!r}"


class SpatialTransformer(nn.Module):
    """One LDM transformer block over a feature map (Rombach et al. 2022, Fig. 3).

    ``x + proj_out(T(proj_in(GroupNorm(x))))`` where T, on the flattened voxels, is pre-LayerNorm
    self-attention, then cross-attention to the tokens (when ``context_dim`` is given), then a GELU MLP,
    each with a residual. ``proj_out`` is zero-initialised, so the block starts as the identity.

    Args:
        channels: width C of the feature map.
        num_head_channels: width d of each head; heads = C // d.
        norm_num_groups: groups of the input GroupNorm.
        context_dim: width of the tokens for cross-attention; ``None`` builds no cross-attention.
        backend: kernel backend for both attentions.
    """

    def __init__(
        self,
        channels: int,
        num_head_channels: int,
        norm_num_groups: int,
        context_dim: int | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        heads = channels // num_head_channels
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norm_self = nn.LayerNorm(channels)
        self.self_attn = Attention(channels, heads, num_head_channels, backend=backend)
        self.norm_cross: nn.Module | None = None
        self.cross_attn: Attention | None = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(channels)
            self.cross_attn = Attention(channels, heads, num_head_channels, context_dim=context_dim, backend=backend)
        self.norm_ff = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Transform a feature map, attending to itself and to ``context``.

        Args:
            x: (B, C, *spatial) feature map.
            context: (B, S, context_dim) tokens; required when the block was built with ``context_dim``.

        Returns:
            (B, C, *spatial).
        """
        b, c, *spatial = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C) with N = prod(spatial)
        h = self.proj_in(h)
        h = h + self.self_attn(self.norm_self(h))
        if self.cross_attn is not None:
            if context is None:
                raise InputError(
                    "this attention block was built with cross-attention and expected tokens (B, S, D), got None; "
                    "pass the token context"
                )
            h = h + self.cross_attn(self.norm_cross(h), context)
        h = h + self.ff(self.norm_ff(h))
        h = self.proj_out(h).transpose(1, 2).reshape(b, c, *spatial)  # (B, C, *spatial)
        return x + h
