"""The strided time grid every variable walks together, and RePaint's resampling walk over it.

Time follows `metavoxel.processes.schedules` (integer steps 0..T). A grid of S steps holds
the levels ``t_i = round(T i / S)`` of positions ``i = 0..S`` (``t_0 = 0``, ``t_S = T``), evenly spaced and
strictly increasing; sampling walks from position S down to 0. Position ``i`` holds a state at level ``t_i``: the network is called at ``t_i`` and the reverse step lands at ``t_{i-1}``, so
the level of the state after each step equals the t of the next network call. (MONAI's DDIM grid
steps back by a fixed stride and can end away from 0; this one always starts at T and ends at 0.)
"""

from __future__ import annotations

import torch

from metavoxel.errors import InputError

__all__ = ["repaint_walk", "time_grid"]


def time_grid(timesteps: int, steps: int) -> torch.Tensor:
    """(steps + 1,) long: the level t_i = round(T i / S) of grid position i = 0..S."""
    if not 1 <= steps <= timesteps:
        raise InputError(f"steps must be between 1 and the model's {timesteps} diffusion steps, got {steps}")
    i = torch.arange(steps + 1, dtype=torch.long)
    return (timesteps * i + steps // 2) // steps


def repaint_walk(steps: int, jump_length: int = 1, jump_rounds: int = 1) -> list[tuple[int, int]]:
    """Moves between grid positions: (i, i - 1) is a reverse step, (i, i + j) an undo jump.

    RePaint (Lugmayr et al. 2022, Alg. 1 with jumps): after reaching each position p = S - j, S - 2j, ...
    (p > 0), jump back up j positions ``jump_rounds - 1`` times, so known and generated content
    harmonise. ``jump_rounds = 1`` is the plain walk S -> 0.
    """
    if jump_length < 1 or jump_rounds < 1:
        raise InputError(f"RePaint jump length and rounds must be >= 1, got {jump_length} and {jump_rounds}")
    remaining = {p: jump_rounds - 1 for p in range(steps - jump_length, 0, -jump_length)}
    moves, pos = [], steps
    while pos > 0:
        moves.append((pos, pos - 1))
        pos -= 1
        if remaining.get(pos, 0) > 0:
            remaining[pos] -= 1
            moves.append((pos, pos + jump_length))
            pos += jump_length
    return moves
