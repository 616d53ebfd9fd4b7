"""Random streams of the diffusion kernels.

The Triton kernels draw standard normals in-kernel with Philox (``tl.randn``): element ``j`` of the
packed ``(B, F)`` rows, ``j = b * F + column``, uses the counter ``offset + j`` under key ``seed``. Two calls
with the same seed and overlapping counter ranges draw the same numbers, so give each call a fresh seed
(the default, ``seed=None``, draws one from torch's default generator, which `torch.manual_seed`
controls), or advance ``offset`` by ``B * F`` per call.

The torch backend draws with ``torch.randn`` instead (from a generator seeded with ``seed`` and
``offset`` when a seed is given), so the two backends give different but equally distributed noise;
only the explicit-noise path compares exactly across backends.
"""

from __future__ import annotations

import torch

_SEED_LIMIT = 2**62


def resolve_seed(seed: int | None) -> int:
    """The Philox key: ``seed`` itself, or a fresh one from torch's default generator when None."""
    if seed is None:
        return int(torch.randint(0, _SEED_LIMIT, (), dtype=torch.int64).item())
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed}")
    return seed


def resolve_offset(offset: int) -> int:
    """The Philox counter base, checked to leave room for the counters of a call."""
    offset = int(offset)
    if not 0 <= offset < 2**62:
        raise ValueError(f"offset must be an integer in [0, 2**62), got {offset}")
    return offset


def torch_generator(device: torch.device, seed: int | None, offset: int, stream: int = 0) -> torch.Generator | None:
    """A generator for the torch path keyed by (seed, offset, stream); None uses torch's global stream."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    # Mix the three ints into one 63-bit seed (splitmix-style) so nearby seeds give unrelated streams.
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + int(offset) * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB)
    gen.manual_seed(mixed % (2**63))
    return gen


def torch_normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, in its dtype and on its device."""
    return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
