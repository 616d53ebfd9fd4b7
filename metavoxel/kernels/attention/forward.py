"""Triton forward of the fused attention: online softmax over key blocks, storing the logsumexp.

One program computes ``BLOCK_M`` query rows of one (batch, head): it streams K and V in ``BLOCK_N`` blocks,
keeping the running row max ``m``, the running normaliser ``l`` and the unnormalised output in registers
(Dao et al. 2022, "FlashAttention", Alg. 1, with the rescaling of Dao 2023, "FlashAttention-2").
Logits are kept in log2 units (``qk_scale = scale * log2(e)``) so each exponential is one ``exp2``. The
stored ``lse`` (B, H, N) is also in log2 units; the backward recomputes P = exp2(s - lse) from it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from metavoxel.kernels.attention.blocks import Blocks, forward_blocks, kernel_options
from metavoxel.kernels.attention.tiles import load_tile, store_tile
from metavoxel.kernels.dispatch import check_interpretable

LOG2E = 1.4426950408889634


@triton.jit
def _attend_block(acc, m_i, l_i, q, k_base, v_base, start_n, M,
                  stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
                  HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                  MASK_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = load_tile(k_base, offs_n, offs_d, stride_km, stride_kd, M, HEAD_DIM, BLOCK_D, MASK_N)  # (BLOCK_N, BLOCK_D)
    if UPCAST:
        k = k.to(tl.float32)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
    if MASK_N:
        s = tl.where(offs_n[None, :] < M, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = load_tile(v_base, offs_n, offs_d, stride_vm, stride_vd, M, HEAD_DIM, BLOCK_D, MASK_N)  # (BLOCK_N, BLOCK_D)
    if UPCAST:
        v = v.to(tl.float32)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, m_new, l_i


@triton.jit
def _attention_forward_kernel(
    Q, K, V, O, LSE, qk_scale, H, N, M,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = load_tile(q_base, offs_m, offs_d, stride_qn, stride_qd, N, HEAD_DIM, BLOCK_D, not EVEN_N)
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    # Full key blocks without predicates, then one masked tail block.
    m_full = (M // BLOCK_N) * BLOCK_N
    for start_n in range(0, m_full, BLOCK_N):
        acc, m_i, l_i = _attend_block(acc, m_i, l_i, q, k_base, v_base, start_n, M,
                                      stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
                                      HEAD_DIM, BLOCK_N, BLOCK_D, False, UPCAST, PRECISION)
    if m_full < M:
        acc, m_i, l_i = _attend_block(acc, m_i, l_i, q, k_base, v_base, m_full, M,
                                      stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
                                      HEAD_DIM, BLOCK_N, BLOCK_D, True, UPCAST, PRECISION)

    acc = acc / l_i[:, None]
    o_base = O + b * stride_ob + h * stride_oh
    store_tile(o_base, acc, offs_m, offs_d, stride_on, stride_od, N, HEAD_DIM, BLOCK_D)
    tl.store(LSE + bh.to(tl.int64) * N + offs_m, m_i + tl.log2(l_i), mask=offs_m < N)


def attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, blocks: Blocks | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward: q (B, H, N, d), k, v (B, H, M, d) → (o (B, H, N, d), lse (B, H, N) float32, log2 units)."""
    check_interpretable(_attention_forward_kernel, q.device)
    batch, heads, n, d = q.shape
    m = k.shape[2]
    blocks = blocks or forward_blocks(n, m, d, q.dtype, batch * heads, q.device)
    o = torch.empty_like(q, memory_format=torch.contiguous_format)  # (B, H, N, d)
    lse = torch.empty((batch, heads, n), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(n, blocks.block_m), batch * heads)
    _attention_forward_kernel[grid](
        q, k, v, o, lse, scale * LOG2E, heads, n, m,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        HEAD_DIM=d, BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n, BLOCK_D=blocks.block_d,
        EVEN_N=n % blocks.block_m == 0, **kernel_options(q, blocks),
    )
    return o, lse
