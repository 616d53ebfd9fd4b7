"""Triton kernel and launcher of the fused categorical k-step (imported only when Triton runs).

One program handles 16 rows of one categorical variable: each row's K logits fit one block, so the
softmax, the posterior, its normaliser and the Gumbel-max sample (and the RePaint re-noising of a known
class) all happen in registers. Variables with different K share a launch through packed logit rows.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from metavoxel.kernels.dispatch import check_interpretable
from metavoxel.kernels.rows import segment_table


@triton.jit
def _logaddexp(a, b):
    top = tl.maximum(a, b)
    top = tl.where(top == float("-inf"), 0.0, top)  # both -inf (padding lanes): -inf, not NaN
    return top + tl.log(tl.exp(a - top) + tl.exp(b - top))


@triton.jit
def _gumbel(u):
    return -tl.log(-tl.log(u))


@triton.jit
def _categorical_step_kernel(
    LOGITS, XT, AT, AS, KNOWN, MASK, G1, G2, XS, LOGP, TABLE,
    batch, n_vars, width, seed, offset,
    stride_logits, stride_xt, stride_atb, stride_atv, stride_asb, stride_asv,
    stride_known, stride_mask, stride_g1, stride_g2, stride_xs, stride_logp,
    HAS_MASK: tl.constexpr, GIVEN_GUMBEL: tl.constexpr, WRITE_LOGP: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    var = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    live = rows < batch
    rows = rows.to(tl.int64)
    start = tl.load(TABLE + var)
    n_classes = tl.load(TABLE + n_vars + var)
    classes = tl.arange(0, BLOCK_K)
    inside = live[:, None] & (classes[None, :] < n_classes)  # (BLOCK_B, BLOCK_K)
    cols = start + classes[None, :]
    k = n_classes.to(tl.float32)

    a_t = tl.load(AT + rows * stride_atb + var * stride_atv, mask=live, other=0.5).to(tl.float32)[:, None]
    a_s = tl.load(AS + rows * stride_asb + var * stride_asv, mask=live, other=1.0).to(tl.float32)[:, None]
    r = a_t / a_s
    x_t = tl.load(XT + rows * stride_xt + var, mask=live, other=0)[:, None]

    logits = tl.load(LOGITS + rows[:, None] * stride_logits + cols, mask=inside, other=float("-inf")).to(tl.float32)
    top = tl.max(logits, 1)[:, None]
    top = tl.where(top == float("-inf"), 0.0, top)  # dead rows: keep them NaN-free
    log_softmax = logits - (top + tl.log(tl.sum(tl.exp(logits - top), 1))[:, None])
    log_q1 = tl.log(tl.where(classes[None, :] == x_t, r, 0.0) + (1.0 - r) / k)
    log_q2 = _logaddexp(tl.log(a_s) + log_softmax, tl.log((1.0 - a_s) / k))
    log_p = tl.where(inside, log_q1 + log_q2, float("-inf"))
    top = tl.max(log_p, 1)[:, None]
    top = tl.where(top == float("-inf"), 0.0, top)
    log_p = log_p - (top + tl.log(tl.sum(tl.exp(log_p - top), 1))[:, None])

    if GIVEN_GUMBEL:
        g1 = tl.load(G1 + rows[:, None] * stride_g1 + cols, mask=inside, other=0.0).to(tl.float32)
    else:
        # One Philox call per (row, packed column) gives both uniforms: the step's and the re-noising's.
        u1, u2, _, _ = tl.rand4x(seed, offset + rows[:, None] * width + cols)
        g1 = _gumbel(u1)
    x_s = tl.argmax(tl.where(inside, log_p + g1, float("-inf")), 1)

    if HAS_MASK:
        if GIVEN_GUMBEL:
            g2 = tl.load(G2 + rows[:, None] * stride_g2 + cols, mask=inside, other=0.0).to(tl.float32)
        else:
            g2 = _gumbel(u2)
        known = tl.load(KNOWN + rows * stride_known + var, mask=live, other=0)[:, None]
        log_k = tl.log(tl.where(classes[None, :] == known, a_s, 0.0) + (1.0 - a_s) / k)
        x_k = tl.argmax(tl.where(inside, log_k + g2, float("-inf")), 1)
        fixed = tl.load(MASK + rows * stride_mask + var, mask=live, other=0)
        x_s = tl.where(fixed != 0, x_k, x_s)

    tl.store(XS + rows * stride_xs + var, x_s.to(tl.int64), mask=live)
    if WRITE_LOGP:
        tl.store(LOGP + rows[:, None] * stride_logp + cols, log_p, mask=inside)


def categorical_step_rows(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    sizes: tuple[int, ...],
    *,
    known: torch.Tensor | None,
    mask: torch.Tensor | None,
    gumbel: torch.Tensor | None,
    gumbel_known: torch.Tensor | None,
    seed: int,
    offset: int,
    return_log_probs: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch on packed rows: logits (B, sum K), x_t/known/mask (B, V), a_t/a_s (B, 1 | V) → x_s (B, V) int64."""
    check_interpretable(_categorical_step_kernel, logits.device)
    batch, width = logits.shape
    n_vars = len(sizes)
    x_s = torch.empty((batch, n_vars), dtype=torch.int64, device=logits.device)
    log_p = torch.empty((batch, width), dtype=torch.float32, device=logits.device) if return_log_probs else None
    table = segment_table(sizes, logits.device)

    def arg(t: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        return (logits, 0) if t is None else (t, t.stride(0))

    (kn, s_kn), (mk, s_mk), (g1, s_g1), (g2, s_g2), (lp, s_lp) = map(arg, (known, mask, gumbel, gumbel_known, log_p))
    block_b = 16
    _categorical_step_kernel[(n_vars, triton.cdiv(batch, block_b))](
        logits, x_t, a_t, a_s, kn, mk, g1, g2, x_s, lp, table,
        batch, n_vars, width, seed, offset,
        logits.stride(0), x_t.stride(0), a_t.stride(0), a_t.stride(1) if a_t.shape[1] > 1 else 0,
        a_s.stride(0), a_s.stride(1) if a_s.shape[1] > 1 else 0,
        s_kn, s_mk, s_g1, s_g2, x_s.stride(0), s_lp,
        HAS_MASK=mask is not None, GIVEN_GUMBEL=gumbel is not None, WRITE_LOGP=return_log_probs,
        BLOCK_B=block_b, BLOCK_K=max(16, triton.next_power_of_2(max(sizes))), num_warps=4,
    )
    return x_s, log_p
