"""Triton kernel and launcher of the fused noising step (imported only when Triton runs).

One program handles one row ``b`` and one block of columns of one variable in the packed ``(B, F)`` rows
(see `metavoxel.kernels.rows`), so ``sqrt(abar[b, i])`` is a scalar of the program and the whole batch of
variables is one launch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from metavoxel.kernels.dispatch import check_interpretable
from metavoxel.kernels.rows import block_table

BLOCK = 1024


@triton.jit
def _q_sample_kernel(
    X0, EPS_IN, XT, EPS_OUT, ABAR, TABLE,
    n_blocks, width, seed, offset,
    stride_x0, stride_eps_in, stride_xt, stride_eps_out, stride_ab, stride_av,
    GIVEN_EPS: tl.constexpr, BLOCK: tl.constexpr,
):
    blk = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    var = tl.load(TABLE + blk)
    cols = tl.load(TABLE + n_blocks + blk) + tl.arange(0, BLOCK)
    inside = cols < tl.load(TABLE + 2 * n_blocks + blk)

    abar = tl.load(ABAR + row * stride_ab + var * stride_av).to(tl.float32)
    signal = tl.sqrt_rn(abar)
    noise = tl.sqrt_rn(1.0 - abar)

    x0 = tl.load(X0 + row * stride_x0 + cols, mask=inside, other=0.0).to(tl.float32)
    if GIVEN_EPS:
        eps = tl.load(EPS_IN + row * stride_eps_in + cols, mask=inside, other=0.0).to(tl.float32)
    else:
        # Philox counter = offset + flat index in the packed rows: a fixed stream per (seed, element).
        eps = tl.randn(seed, offset + row * width + cols)
        tl.store(EPS_OUT + row * stride_eps_out + cols, eps.to(EPS_OUT.dtype.element_ty), mask=inside)
    x_t = signal * x0 + noise * eps
    tl.store(XT + row * stride_xt + cols, x_t.to(XT.dtype.element_ty), mask=inside)


def q_sample_rows(
    x0: torch.Tensor,
    abar: torch.Tensor,
    sizes: tuple[int, ...],
    eps: torch.Tensor | None,
    seed: int,
    offset: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch on packed rows: x0 (B, F), abar (B, 1 | V) float32, eps (B, F) or None → (x_t, eps) (B, F)."""
    check_interpretable(_q_sample_kernel, x0.device)
    batch, width = x0.shape
    x_t = torch.empty((batch, width), dtype=x0.dtype, device=x0.device)
    eps_out = torch.empty_like(x_t) if eps is None else eps
    table = block_table(sizes, BLOCK, x0.device)
    n_blocks = table.shape[1]
    _q_sample_kernel[(n_blocks, batch)](
        x0, eps_out, x_t, eps_out, abar, table,
        n_blocks, width, seed, offset,
        x0.stride(0), eps_out.stride(0), x_t.stride(0), eps_out.stride(0),
        abar.stride(0), abar.stride(1) if abar.shape[1] > 1 else 0,
        GIVEN_EPS=eps is not None, BLOCK=BLOCK, num_warps=4,
    )
    return x_t, eps_out
