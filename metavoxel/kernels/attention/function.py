"""Autograd Function joining the Triton forward and backward of the fused attention."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class FlashAttentionFunction(torch.autograd.Function):
    """softmax(q k^T * scale) v with a recomputing backward; saves q, k, v, o and the logsumexp (B, H, N)."""

    @staticmethod
    def forward(ctx, q, k, v, scale):  # type: ignore[override]
        from metavoxel.kernels.attention.forward import attention_forward

        o, lse = attention_forward(q, k, v, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_o):  # type: ignore[override]
        from metavoxel.kernels.attention.backward import attention_backward

        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(grad_o, q, k, v, o, lse, ctx.scale, need_dq=ctx.needs_input_grad[0])
        return dq, dk, dv, None
