"""Readable PyTorch reference for the fused noising kernel: the specification the kernel must match."""

from __future__ import annotations

import torch


def compute_dtype(like: torch.Tensor) -> torch.dtype:
    """The references compute in float32, or float64 for float64 inputs."""
    return torch.promote_types(like.dtype, torch.float32)


def per_sample(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) coefficient in ``compute_dtype(like)``, shaped (B, 1, ..., 1) to broadcast against ``like``."""
    return coef.to(compute_dtype(like)).reshape(-1, *([1] * (like.dim() - 1)))


def q_sample_reference(x0: torch.Tensor, abar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, per sample (eq. 4 of Ho et al. 2020), in float32 (or float64).

    Args:
        x0: (B, ...) clean values of one variable.
        abar: (B,) cumulative alpha of each sample's timestep.
        eps: standard normal noise shaped like ``x0``.

    Returns:
        x_t, shaped like ``x0`` in its dtype.
    """
    a = per_sample(abar, x0)  # (B, 1, ..., 1)
    return (a.sqrt() * x0.to(a.dtype) + (1 - a).sqrt() * eps.to(a.dtype)).to(x0.dtype)
