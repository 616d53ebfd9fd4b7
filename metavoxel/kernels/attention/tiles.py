"""Tile loads and stores shared by the attention kernels (imported only when Triton runs).

Masks are chosen at compile time: a row mask only where a block may run past the sequence, a head-dim
mask only when ``HEAD_DIM`` is not a power of two, so full tiles load without predicates.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_tile(base, offs_r, offs_d, stride_r, stride_d, n_rows,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_R: tl.constexpr):
    """A (rows, BLOCK_D) tile; rows past ``n_rows`` and columns past ``HEAD_DIM`` read as zero."""
    ptrs = base + offs_r[:, None] * stride_r + offs_d[None, :] * stride_d
    if MASK_R:
        if HEAD_DIM == BLOCK_D:
            tile = tl.load(ptrs, mask=offs_r[:, None] < n_rows, other=0.0)
        else:
            tile = tl.load(ptrs, mask=(offs_r[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if HEAD_DIM == BLOCK_D:
            tile = tl.load(ptrs)
        else:
            tile = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return tile


@triton.jit
def store_tile(base, tile, offs_r, offs_d, stride_r, stride_d, n_rows,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Store a (rows, BLOCK_D) tile, skipping rows past ``n_rows`` and columns past ``HEAD_DIM``."""
    ptrs = base + offs_r[:, None] * stride_r + offs_d[None, :] * stride_d
    if HEAD_DIM == BLOCK_D:
        tl.store(ptrs, tile.to(base.dtype.element_ty), mask=offs_r[:, None] < n_rows)
    else:
        tl.store(ptrs, tile.to(base.dtype.element_ty), mask=(offs_r[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM))
