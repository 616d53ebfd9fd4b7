"""Triton kernel and launcher of the fused DDIM + RePaint step (imported only when Triton runs).

One program handles one row ``b`` and one block of columns of one variable in the packed ``(B, F)`` rows
(see `metavoxel.kernels.rows`): the per-sample coefficients are program scalars, each element is read
once and written once, and z1, z2 come from one Philox call per element.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from metavoxel.kernels.dispatch import check_interpretable
from metavoxel.kernels.rows import block_table

BLOCK = 1024


@triton.jit
def _ddim_repaint_kernel(
    XT, EPS, KNOWN, MASK, Z1, Z2, XS, X0, AT, AS, TABLE,
    n_blocks, width, eta, seed, offset,
    stride_xt, stride_eps, stride_known, stride_mask, stride_z1, stride_z2, stride_xs, stride_x0,
    stride_atb, stride_atv, stride_asb, stride_asv,
    NEED_Z1: tl.constexpr, GIVEN_Z1: tl.constexpr, HAS_MASK: tl.constexpr, GIVEN_Z2: tl.constexpr,
    WRITE_X0: tl.constexpr, BLOCK: tl.constexpr,
):
    blk = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    var = tl.load(TABLE + blk)
    cols = tl.load(TABLE + n_blocks + blk) + tl.arange(0, BLOCK)
    inside = cols < tl.load(TABLE + 2 * n_blocks + blk)

    # Per-sample scalars, in the reference's order of operations.
    a_t = tl.load(AT + row * stride_atb + var * stride_atv).to(tl.float32)
    a_s = tl.load(AS + row * stride_asb + var * stride_asv).to(tl.float32)
    root_at = tl.sqrt_rn(a_t)
    root_1mat = tl.sqrt_rn(1.0 - a_t)
    root_as = tl.sqrt_rn(a_s)
    sigma = eta * tl.sqrt_rn(tl.div_rn(1.0 - a_s, 1.0 - a_t)) * tl.sqrt_rn(1.0 - tl.div_rn(a_t, a_s))
    root_dir = tl.sqrt_rn(tl.maximum(1.0 - a_s - sigma * sigma, 0.0))

    x = tl.load(XT + row * stride_xt + cols, mask=inside, other=0.0).to(tl.float32)
    eps = tl.load(EPS + row * stride_eps + cols, mask=inside, other=0.0).to(tl.float32)
    x0 = tl.div_rn(x - root_1mat * eps, root_at)
    x_s = root_as * x0 + root_dir * eps

    if (NEED_Z1 and not GIVEN_Z1) or (HAS_MASK and not GIVEN_Z2):
        # One Box-Muller pair per element: z1 and z2 are independent standard normals.
        z1, z2, _, _ = tl.randn4x(seed, offset + row * width + cols)
    if NEED_Z1:
        if GIVEN_Z1:
            z1 = tl.load(Z1 + row * stride_z1 + cols, mask=inside, other=0.0).to(tl.float32)
        x_s = x_s + sigma * z1
    if HAS_MASK:
        if GIVEN_Z2:
            z2 = tl.load(Z2 + row * stride_z2 + cols, mask=inside, other=0.0).to(tl.float32)
        m = tl.load(MASK + row * stride_mask + cols, mask=inside, other=0).to(tl.float32)
        known = tl.load(KNOWN + row * stride_known + cols, mask=inside, other=0.0).to(tl.float32)
        k_s = root_as * known + tl.sqrt_rn(1.0 - a_s) * z2
        x_s = tl.where(m > 0, m * k_s + (1.0 - m) * x_s, x_s)

    tl.store(XS + row * stride_xs + cols, x_s.to(XS.dtype.element_ty), mask=inside)
    if WRITE_X0:
        tl.store(X0 + row * stride_x0 + cols, x0.to(X0.dtype.element_ty), mask=inside)


def ddim_repaint_rows(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    sizes: tuple[int, ...],
    *,
    eta: float,
    known: torch.Tensor | None,
    mask: torch.Tensor | None,
    z1: torch.Tensor | None,
    z2: torch.Tensor | None,
    seed: int,
    offset: int,
    return_x0: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch on packed rows: every tensor (B, F) with unit column stride, a_t/a_s (B, 1 | V) float32."""
    check_interpretable(_ddim_repaint_kernel, x_t.device)
    batch, width = x_t.shape
    x_s = torch.empty((batch, width), dtype=x_t.dtype, device=x_t.device)
    x0 = torch.empty_like(x_s) if return_x0 else None
    if mask is not None and mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)  # same bytes; Triton loads bytes more readily than i1
    table = block_table(sizes, BLOCK, x_t.device)
    n_blocks = table.shape[1]

    def arg(t: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        return (x_t, 0) if t is None else (t, t.stride(0))

    (kn, s_kn), (mk, s_mk), (r1, s_r1), (r2, s_r2), (o0, s_o0) = map(arg, (known, mask, z1, z2, x0))
    _ddim_repaint_kernel[(n_blocks, batch)](
        x_t, eps_hat, kn, mk, r1, r2, x_s, o0, a_t, a_s, table,
        n_blocks, width, float(eta), seed, offset,
        x_t.stride(0), eps_hat.stride(0), s_kn, s_mk, s_r1, s_r2, x_s.stride(0), s_o0,
        a_t.stride(0), a_t.stride(1) if a_t.shape[1] > 1 else 0,
        a_s.stride(0), a_s.stride(1) if a_s.shape[1] > 1 else 0,
        NEED_Z1=eta != 0, GIVEN_Z1=z1 is not None, HAS_MASK=mask is not None, GIVEN_Z2=z2 is not None,
        WRITE_X0=return_x0, BLOCK=BLOCK, num_warps=4,
    )
    return x_s, x0
