"""Triton backward of the fused attention: delta, then dK/dV over key blocks, then dQ over query blocks.

With P = exp2(s - lse) recomputed from the forward's logsumexp (log2 units) and
``delta = rowsum(dO * O)`` (Dao 2023, "FlashAttention-2", Alg. 2)::

    dV = P^T dO          dP = dO V^T          dS = P * (dP - delta)
    dK = scale * dS^T Q  dQ = scale * dS K

dK/dV and dQ run as two kernels (each recomputes P) so no program needs atomics and the result is
deterministic. When key blocks are few (cross-attention to a handful of tokens) the dK/dV query loop is
split over ``blocks.split`` programs writing float32 partials that are summed afterwards.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from metavoxel.kernels.attention.blocks import Blocks, backward_blocks, kernel_options
from metavoxel.kernels.attention.forward import LOG2E
from metavoxel.kernels.attention.tiles import load_tile, store_tile
from metavoxel.kernels.dispatch import check_interpretable


@triton.jit
def _delta_kernel(
    O, DO, DELTA, H, N,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_gb, stride_gh, stride_gn, stride_gd,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    o = load_tile(O + b * stride_ob + h * stride_oh, offs_m, offs_d, stride_on, stride_od, N,
                  HEAD_DIM, BLOCK_D, True).to(tl.float32)
    do = load_tile(DO + b * stride_gb + h * stride_gh, offs_m, offs_d, stride_gn, stride_gd, N,
                   HEAD_DIM, BLOCK_D, True).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * N + offs_m, tl.sum(o * do, 1), mask=offs_m < N)


@triton.jit
def _dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, qk_scale, scale, H, N, M, m_blocks_per_split,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_gb, stride_gh, stride_gn, stride_gd,
    stride_dks, stride_dkb, stride_dkh, stride_dkm, stride_dkd,
    stride_dvs, stride_dvb, stride_dvh, stride_dvm, stride_dvd,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    split = tl.program_id(2)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_gb + h * stride_gh
    row_stats = bh.to(tl.int64) * N

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = load_tile(K + b * stride_kb + h * stride_kh, offs_n, offs_d, stride_km, stride_kd, M,
                  HEAD_DIM, BLOCK_D, True)  # (BLOCK_N, BLOCK_D)
    v = load_tile(V + b * stride_vb + h * stride_vh, offs_n, offs_d, stride_vm, stride_vd, M,
                  HEAD_DIM, BLOCK_D, True)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)

    m_lo = split * m_blocks_per_split * BLOCK_M
    m_hi = tl.minimum(m_lo + m_blocks_per_split * BLOCK_M, N)
    for start_m in range(m_lo, m_hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q = load_tile(q_base, offs_m, offs_d, stride_qn, stride_qd, N, HEAD_DIM, BLOCK_D, True)  # (BLOCK_M, BLOCK_D)
        do = load_tile(do_base, offs_m, offs_d, stride_gn, stride_gd, N, HEAD_DIM, BLOCK_D, True)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        # Rows past N get lse = +inf, hence P = 0: they add nothing.
        lse = tl.load(LSE + row_stats + offs_m, mask=offs_m < N, other=float("inf"))
        delta = tl.load(DELTA + row_stats + offs_m, mask=offs_m < N, other=0.0)
        p_t = tl.exp2(tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale - lse[None, :])  # (BLOCK_N, BLOCK_M)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)

    dk_base = DK + split.to(tl.int64) * stride_dks + b * stride_dkb + h * stride_dkh
    dv_base = DV + split.to(tl.int64) * stride_dvs + b * stride_dvb + h * stride_dvh
    store_tile(dk_base, dk * scale, offs_n, offs_d, stride_dkm, stride_dkd, M, HEAD_DIM, BLOCK_D)
    store_tile(dv_base, dv, offs_n, offs_d, stride_dvm, stride_dvd, M, HEAD_DIM, BLOCK_D)


@triton.jit
def _dq_block(dq, q, do, lse, delta, k_base, v_base, start_n, M,
              stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              MASK_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = load_tile(k_base, offs_n, offs_d, stride_km, stride_kd, M, HEAD_DIM, BLOCK_D, MASK_N)  # (BLOCK_N, BLOCK_D)
    v = load_tile(v_base, offs_n, offs_d, stride_vm, stride_vd, M, HEAD_DIM, BLOCK_D, MASK_N)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    p = tl.exp2(tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale - lse[:, None])  # (BLOCK_M, BLOCK_N)
    if MASK_N:
        p = tl.where(offs_n[None, :] < M, p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)


@triton.jit
def _dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, qk_scale, scale, H, N, M,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_km, stride_kd,
    stride_vb, stride_vh, stride_vm, stride_vd,
    stride_gb, stride_gh, stride_gn, stride_gd,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = load_tile(Q + b * stride_qb + h * stride_qh, offs_m, offs_d, stride_qn, stride_qd, N,
                  HEAD_DIM, BLOCK_D, True)  # (BLOCK_M, BLOCK_D)
    do = load_tile(DO + b * stride_gb + h * stride_gh, offs_m, offs_d, stride_gn, stride_gd, N,
                   HEAD_DIM, BLOCK_D, True)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    row_stats = bh.to(tl.int64) * N
    # Rows past N: q = dO = 0 and lse = delta = 0, so dS = 0 there and nothing is stored.
    lse = tl.load(LSE + row_stats + offs_m, mask=offs_m < N, other=0.0)
    delta = tl.load(DELTA + row_stats + offs_m, mask=offs_m < N, other=0.0)

    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    m_full = (M // BLOCK_N) * BLOCK_N
    for start_n in range(0, m_full, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, delta, k_base, v_base, start_n, M,
                       stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
                       HEAD_DIM, BLOCK_N, BLOCK_D, False, UPCAST, PRECISION)
    if m_full < M:
        dq = _dq_block(dq, q, do, lse, delta, k_base, v_base, m_full, M,
                       stride_km, stride_kd, stride_vm, stride_vd, qk_scale,
                       HEAD_DIM, BLOCK_N, BLOCK_D, True, UPCAST, PRECISION)
    store_tile(DQ + b * stride_dqb + h * stride_dqh, dq * scale, offs_m, offs_d, stride_dqn, stride_dqd, N,
               HEAD_DIM, BLOCK_D)


def attention_backward(
    grad_o: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    scale: float,
    *,
    need_dq: bool = True,
    blocks: Blocks | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Launch the backward; returns (dq or None, dk, dv) shaped and typed like q, k, v."""
    check_interpretable(_dkdv_kernel, q.device)
    batch, heads, n, d = q.shape
    m = k.shape[2]
    blocks = blocks or backward_blocks(n, m, d, q.dtype, batch * heads, q.device)
    options = kernel_options(q, blocks)
    bm, bn, bd = blocks.block_m, blocks.block_n, blocks.block_d

    delta = torch.empty((batch, heads, n), dtype=torch.float32, device=q.device)
    _delta_kernel[(triton.cdiv(n, bm), batch * heads)](
        o, grad_o, delta, heads, n, *o.stride(), *grad_o.stride(),
        HEAD_DIM=d, BLOCK_M=bm, BLOCK_D=bd, num_warps=4,
    )

    m_blocks = triton.cdiv(n, bm)
    split = max(1, min(blocks.split, m_blocks))
    per_split = triton.cdiv(m_blocks, split)
    split = triton.cdiv(m_blocks, per_split)  # no empty splits
    if split == 1:
        dk, dv = torch.empty_like(k), torch.empty_like(v)  # (B, H, M, d)
        dk_strides, dv_strides = (0, *dk.stride()), (0, *dv.stride())
    else:
        dk = torch.empty((split, *k.shape), dtype=torch.float32, device=q.device)  # (S, B, H, M, d) partials
        dv = torch.empty_like(dk)
        dk_strides, dv_strides = dk.stride(), dv.stride()
    _dkdv_kernel[(triton.cdiv(m, bn), batch * heads, split)](
        q, k, v, grad_o, lse, delta, dk, dv, scale * LOG2E, scale, heads, n, m, per_split,
        *q.stride(), *k.stride(), *v.stride(), *grad_o.stride(), *dk_strides, *dv_strides,
        HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, **options,
    )
    if split > 1:
        dk, dv = dk.sum(0).to(k.dtype), dv.sum(0).to(v.dtype)

    dq = None
    if need_dq:
        dq = torch.empty_like(q)
        _dq_kernel[(triton.cdiv(n, bm), batch * heads)](
            q, k, v, grad_o, lse, delta, dq, scale * LOG2E, scale, heads, n, m,
            *q.stride(), *k.stride(), *v.stride(), *grad_o.stride(), *dq.stride(),
            HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, **options,
        )
    return dq, dk, dv
