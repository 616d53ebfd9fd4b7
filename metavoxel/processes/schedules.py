"""Noise schedules and the one time convention of metavoxel.

Time is an integer step index ``t`` in ``0..T``: ``t = 0`` is clean data (``abar[0] = 1``), ``t = T`` is
the end of the forward process, and training draws ``t`` uniformly from ``1..T``. Every schedule here
returns the cumulative signal level ``abar`` as a float64 tensor of length ``T + 1`` indexed by ``t``.

- Gaussian processes read ``abar_t`` as the signal variance: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
- Discrete (D3PM uniform) processes read ``abar_t`` as the probability that the state is still the
  original category rather than a fresh uniform draw: ``q(x_t | x0) = abar_t e_x0 + (1 - abar_t) / K``.
"""

from __future__ import annotations

import math

import torch

from metavoxel.errors import SpecError

__all__ = ["SCHEDULES", "make_schedule"]


def linear(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """DDPM's linear betas (Ho et al. 2020); abar_t = prod_{i<=t} (1 - beta_i)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return _from_betas(betas)


def scaled_linear(T: int, beta_start: float = 0.0015, beta_end: float = 0.0195) -> torch.Tensor:
    """Latent diffusion's schedule (Rombach et al. 2022): betas linear in sqrt space."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    return _from_betas(betas)


def cosine(T: int, s: float = 0.008, max_beta: float | None = None) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): abar(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2).

    Without ``max_beta``, ``abar_T`` is exactly 0, so a discrete process reaches its uniform prior at
    ``t = T``. A Gaussian process needs abar_t > 0 (it divides by sqrt(abar_t)); with ``max_beta`` the
    per-step betas are clipped as in Nichol & Dhariwal (0.999), keeping every level positive.
    """
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = (f / f[0]).clamp(0.0, 1.0)
    abar[-1] = 0.0
    abar = torch.cummin(abar, dim=0).values  # monotone despite rounding
    if max_beta is None:
        return abar
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
    return _from_betas(betas)


def _from_betas(betas: torch.Tensor) -> torch.Tensor:
    abar = torch.cumprod(1.0 - betas, dim=0)
    return torch.cat([torch.ones(1, dtype=torch.float64), abar])  # (T + 1,), abar[0] = 1


SCHEDULES = {"linear": linear, "scaled_linear": scaled_linear, "cosine": cosine}


def make_schedule(name: str, T: int, **params: float) -> torch.Tensor:
    """The ``abar`` table (float64, length ``T + 1``) of the named schedule."""
    if name not in SCHEDULES:
        raise SpecError(f"unknown schedule {name!r}: expected one of {', '.join(sorted(SCHEDULES))}")
    if T < 1:
        raise SpecError(f"the number of diffusion steps T must be >= 1, got {T}")
    return SCHEDULES[name](T, **params)
