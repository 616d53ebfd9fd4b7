"""Readable PyTorch reference for the fused noising kernel: the specification the kernel must match."""

from __future__ import annotations

import torch


def per_sample(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) coefficient as float32 (B, 1, ..., 1) broadcasting against ``like`` (B, ...)."""
    return coef.float().reshape(-1, *([1] * (like.dim() - 1)))


def q_sample_reference(x0: torch.Tensor, abar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, per sample (eq. 4 of Ho et al. 2020), in float32.

    Args:
        x0: (B, ...) clean values of one variable.
        abar: (B,) cumulative alpha of each sample's timestep.
        eps: standard normal noise shaped like ``x0``.

    Returns:
        x_t, shaped like ``x0`` in its dtype.
    """
    a = per_sample(abar, x0)  # (B, 1, ..., 1)
    return (a.sqrt() * x0.float() + (1 - a).sqrt() * eps.float()).to(x0.dtype)
