"""The strided time grid every variable walks together, and RePaint's resampling walk over it.

Time follows `metavoxel.processes.schedules` (integer steps 0..T). A grid of S steps holds levels
``t_0 = 0 < t_1 < ... < t_S = T`` of positions ``i = 0..S``; sampling walks from position S down to 0.
Position ``i`` holds a state at level ``t_i``: the network is called at ``t_i`` and the reverse step lands at
``t_{i-1}``, so the level of the state after each step equals the t of the next network call. (MONAI's DDIM
grid steps back by a fixed stride and can end away from 0; this one always starts at T and ends at 0.)

Two spacings (``GRID_SPACINGS``):
- ``uniform``: ``t_i = round(T i / S)``, the MetaVoxel paper's strided sampler.
- ``quadratic``: ``t_i = round(T (i / S)^2)``, raised where needed to stay strictly increasing (the quadratic
  time steps of DDIM, Song et al. 2021, Sec. 5 / App. D). The last reverse step returns the estimate x0_hat
  of `E[x0 | z_{t_1}]` and so drops `Var[x0 | z_{t_1}]`: at ``t_1 = T / S`` (uniform, 50 steps: t = 20) that
  is a large share of a scalar's posterior variance, and samples come out too narrow; the quadratic grid
  ends at ``t_1 = 1`` with the same number of network calls (benchmarks/RESULTS.md, "The sampling grid").
"""

from __future__ import annotations

import torch

from metavoxel.errors import InputError, OptionError

__all__ = ["GRID_SPACINGS", "check_grid", "repaint_walk", "time_grid"]

GRID_SPACINGS = ("uniform", "quadratic")


def time_grid(timesteps: int, steps: int, spacing: str = "uniform") -> torch.Tensor:
    """(steps + 1,) long: the level t_i of grid position i = 0..S, from 0 to T, strictly increasing.

    Args:
        timesteps: T; steps: S (1 <= S <= T); spacing: ``uniform`` or ``quadratic`` (module docstring).

    Raises:
        InputError: S outside [1, T], or an unknown spacing.
    """
    if not 1 <= steps <= timesteps:
        raise InputError(f"steps must be between 1 and the model's {timesteps} diffusion steps, got {steps}")
    check_grid(spacing)
    i = torch.arange(steps + 1, dtype=torch.long)
    if spacing == "uniform":
        return (timesteps * i + steps // 2) // steps
    grid = (timesteps * i * i + steps * steps // 2) // (steps * steps)  # round(T (i/S)^2), exact in integers
    # raise each level to at least one above the last; this never passes T (T >= S and the bump is linear
    # while the quadratic's top stride is about 2T/S)
    return torch.maximum(grid, torch.cummax(grid - i, dim=0).values + i)


def check_grid(spacing: str | None) -> None:
    """Refuse an unknown grid spacing (None: the model's default) with a one-line `OptionError` naming ``grid``."""
    if spacing is not None and spacing not in GRID_SPACINGS:
        raise OptionError(f"{{grid}} (the sampling grid's spacing) must be one of {', '.join(GRID_SPACINGS)}, "
                          f"got {spacing!r}", "grid")


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
