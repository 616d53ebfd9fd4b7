"""Fused attention with a backend switch (the Triton flash kernel or PyTorch SDPA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from metavoxel.kernels.attention.function import FlashAttentionFunction
from metavoxel.kernels.attention.reference import attention_reference
from metavoxel.kernels.dispatch import choose, device_problem

__all__ = ["attention", "attention_reference"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_HEAD_DIM = 128
MAX_GRID = 65535  # CUDA's limit on the second and third grid dimensions


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None, backend: str | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale) v for q (B, H, N, d) and k, v (B, H, M, d); returns (B, H, N, d).

    Differentiable on every backend. The Triton kernel (flash attention forward and backward, Dao 2023)
    runs fp32/fp16/bf16 with any N, M >= 1 and d <= 128 (d need not be a power of two); the torch backend
    is ``F.scaled_dot_product_attention``.

    Args:
        q: (B, H, N, d) queries.
        k: (B, H, M, d) keys.
        v: (B, H, M, d) values.
        scale: logit scale, default 1/sqrt(d).
        backend: ``auto`` | ``triton`` | ``torch`` (default from ``METAVOXEL_KERNELS``).
    """
    _check_shapes(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)

    def problem(explicit: bool) -> str | None:
        dtypes = {q.dtype, k.dtype, v.dtype}
        if len(dtypes) > 1:
            return f"q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); cast them to one dtype"
        if q.dtype not in _DTYPES:
            return f"dtype {q.dtype} is not float32/float16/bfloat16"
        if q.shape[-1] > MAX_HEAD_DIM or v.shape[-1] != q.shape[-1]:
            return f"head dims q {q.shape[-1]}, v {v.shape[-1]} must be equal and <= {MAX_HEAD_DIM}"
        if 0 in q.shape or 0 in k.shape:
            return "an input is empty"
        if q.shape[0] * q.shape[1] > MAX_GRID:
            return f"B * H = {q.shape[0] * q.shape[1]} exceeds the kernel grid's {MAX_GRID}"
        if q.is_cuda and q.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        return device_problem((q, k, v), explicit)

    if choose("attention", backend, problem) == "torch":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return FlashAttentionFunction.apply(q, k, v, scale)


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"attention expects q (B, H, N, d), k and v (B, H, M, d); got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}; reshape to 4-D (batch, heads, sequence, head dim)"
        )
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; q and k "
            "need the same (B, H, ., d), k and v the same (B, H, M, .)"
        )
