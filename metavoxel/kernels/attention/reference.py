"""Readable PyTorch reference for the fused attention kernel: the specification the kernel must match."""

from __future__ import annotations

import math

import torch


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v, computed in float32.

    Args:
        q: (B, H, N, d) queries.
        k: (B, H, M, d) keys.
        v: (B, H, M, d) values.
        scale: logit scale, default 1/sqrt(d).

    Returns:
        (B, H, N, d) in the dtype of ``q``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.einsum("bhnd,bhmd->bhnm", q.float(), k.float()) * scale  # (B, H, N, M)
    return torch.einsum("bhnm,bhmd->bhnd", logits.softmax(dim=-1), v.float()).to(q.dtype)
