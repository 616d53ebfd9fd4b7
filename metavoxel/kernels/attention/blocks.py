"""Block sizes and launch options of the attention kernels, chosen by heuristics (no autotuning).

Row blocks shrink (down to 16) when a grid of (row blocks x batch x heads) would not fill one wave of
the streaming multiprocessors (short sequences, batch 1); the dK/dV backward splits the query loop
across programs when key blocks are few (cross-attention to a handful of tokens) and sums the partials
afterwards. Under the interpreter blocks stay small so CPU tests exercise several blocks and the masked
tails. The GPU choices are untuned starting points: `benchmarks/kernels/bench_attention.py` measures them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from metavoxel.kernels.dispatch import interpreter_enabled

MIN_BLOCK = 16  # tl.dot needs every tile dimension >= 16


@dataclass(frozen=True)
class Blocks:
    """Tile sizes of one launch: query rows, key rows, padded head dim, key-loop split and warp layout."""

    block_m: int
    block_n: int
    block_d: int
    split: int = 1
    num_warps: int = 4
    num_stages: int = 2


def padded_head_dim(d: int) -> int:
    """The head dim rounded up to a power of two >= 16 (masked loads fill the padding with zeros)."""
    return max(MIN_BLOCK, 1 << (d - 1).bit_length())


@functools.lru_cache(maxsize=16)
def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _fit(block: int, length: int) -> int:
    """Shrink a block to the smallest power of two >= 16 covering ``length`` when that is smaller."""
    return max(MIN_BLOCK, min(block, 1 << max(length - 1, 0).bit_length()))


def _fill(block: int, length: int, other_programs: int, sms: int) -> int:
    """Halve a row block (down to 16) while the grid would not fill one wave of the SMs."""
    while block > MIN_BLOCK and -(-length // block) * other_programs < sms:
        block //= 2
    return block


def forward_blocks(n: int, m: int, d: int, dtype: torch.dtype, batch_heads: int, device: torch.device) -> Blocks:
    """Forward tiles for q (.., N, d) against M keys."""
    block_d = padded_head_dim(d)
    if interpreter_enabled() and device.type == "cpu":
        return Blocks(_fit(32, n), _fit(16, m), block_d)
    wide = dtype == torch.float32 or block_d > 64
    block_m, block_n = (128, 32) if dtype == torch.float32 else (128, 64)
    block_m = _fill(_fit(block_m, n), n, batch_heads, _sm_count(device))
    block_n = _fit(block_n, m)
    num_warps = 8 if (wide and block_m >= 128) else 4
    return Blocks(block_m, block_n, block_d, num_warps=num_warps, num_stages=2 if wide else 3)


def backward_blocks(n: int, m: int, d: int, dtype: torch.dtype, batch_heads: int, device: torch.device) -> Blocks:
    """Backward tiles: ``block_n`` key rows per dK/dV program, ``block_m`` query rows per step and per dQ program.

    ``split`` > 1 divides each dK/dV program's query loop over that many programs when key blocks are few.
    """
    block_d = padded_head_dim(d)
    if interpreter_enabled() and device.type == "cpu":
        return Blocks(_fit(16, n), _fit(16, m), block_d)
    small = dtype == torch.float32 or block_d > 64
    block = 32 if dtype == torch.float32 else 64
    sms = _sm_count(device)
    block_m = _fill(_fit(block, n), n, batch_heads, sms)  # rows of a dQ program
    block_n = _fill(_fit(block, m), m, batch_heads, sms)  # rows of a dK/dV program
    key_programs = -(-m // block_n) * batch_heads
    query_blocks = -(-n // block_m)
    # Aim for one wave of programs, each still looping over at least four query blocks.
    split = max(1, min(-(-sms // key_programs), query_blocks // 4))
    return Blocks(block_m, block_n, block_d, split=split, num_warps=8 if small else 4, num_stages=2 if small else 3)


def kernel_options(q: torch.Tensor, blocks: Blocks) -> dict:
    """Compile-time options shared by the attention kernels.

    ``UPCAST`` computes bf16 tiles in float32 under the interpreter, whose NumPy arithmetic has no bfloat16.
    ``PRECISION`` follows PyTorch's float32 matmul setting: TF32 tensor cores only when the user allows them.
    """
    interpreted = q.device.type == "cpu"
    exact = q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
    return {
        "UPCAST": interpreted and q.dtype == torch.bfloat16,
        "PRECISION": "ieee" if exact else "tf32",  # ignored for fp16/bf16 tiles
        "num_warps": blocks.num_warps,
        "num_stages": blocks.num_stages,
    }
