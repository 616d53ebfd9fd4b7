"""Readable PyTorch reference for the fused sampler step: the specification the kernel must match."""

from __future__ import annotations

import torch

from metavoxel.kernels.noising.reference import per_sample


def ddim_repaint_step_reference(
    x_t: torch.Tensor,
    eps_hat: torch.Tensor,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    *,
    eta: float = 0.0,
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    z1: torch.Tensor | None = None,
    z2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step t -> s < t (eq. 12 of Song et al. 2021) with the RePaint overwrite (Lugmayr et al. 2022).

    In float32 (float64 for float64 inputs), per sample::

        x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)
        sigma  = eta sqrt((1 - a_s) / (1 - a_t)) sqrt(1 - a_t / a_s)
        x_s    = sqrt(a_s) x0_hat + sqrt(max(1 - a_s - sigma^2, 0)) eps_hat + sigma z1
        k_s    = sqrt(a_s) known + sqrt(1 - a_s) z2              # the known value re-noised to s
        x_s    = mask k_s + (1 - mask) x_s   where mask > 0       # x_s untouched (known unread) elsewhere

    Args:
        x_t: (B, ...) current values of one variable.
        eps_hat: predicted noise shaped like ``x_t``.
        a_t: (B,) cumulative alpha at the current level t (< 1).
        a_s: (B,) cumulative alpha at the next level s (1.0 at the final step).
        eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like).
        known: values known for this variable, broadcastable to ``x_t``; needed with ``mask``.
        mask: where ``known`` holds, in [0, 1] and broadcastable to ``x_t``; None = nothing known.
        z1: standard normal shaped like ``x_t``; needed when ``eta != 0``.
        z2: standard normal shaped like ``x_t``; needed with ``mask``.

    Returns:
        ``(x_s, x0_hat)``, each shaped like ``x_t`` in its dtype.
    """
    at, as_ = per_sample(a_t, x_t), per_sample(a_s, x_t)  # (B, 1, ..., 1)
    x, eps = x_t.to(at.dtype), eps_hat.to(at.dtype)
    x0_hat = (x - (1 - at).sqrt() * eps) / at.sqrt()
    sigma = eta * ((1 - as_) / (1 - at)).sqrt() * (1 - at / as_).sqrt()
    x_s = as_.sqrt() * x0_hat + (1 - as_ - sigma * sigma).clamp_min(0).sqrt() * eps
    if eta != 0:
        if z1 is None:
            raise ValueError("z1 is required when eta != 0")
        x_s = x_s + sigma * z1.to(at.dtype)
    if mask is not None:
        if known is None or z2 is None:
            raise ValueError("known and z2 are required with a mask")
        m = mask.to(at.dtype)
        k_s = as_.sqrt() * known.to(at.dtype) + (1 - as_).sqrt() * z2.to(at.dtype)
        x_s = torch.where(m > 0, m * k_s + (1 - m) * x_s, x_s)
    return x_s.to(x_t.dtype), x0_hat.to(x_t.dtype)
