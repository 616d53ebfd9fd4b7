"""Readable PyTorch reference for the fused categorical k-step: the specification the kernel must match."""

from __future__ import annotations

import torch


def gumbel_like(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U) shaped like ``logits``, in float32."""
    u = torch.rand(logits.shape, device=logits.device, generator=generator)
    return -torch.log(-torch.log(u))


def categorical_step_reference(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    gumbel: torch.Tensor,
    *,
    known: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    gumbel_known: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One k-step t -> s < t of uniform-transition discrete diffusion (Austin et al. 2021; Hoogeboom et al. 2021).

    In log space, per sample, with K classes, r = a_t / a_s and the network's x0 logits::

        log p(x_s | x_t) = log(r e_{x_t} + (1 - r) / K) + log(a_s softmax(logits) + (1 - a_s) / K) - log Z
        x_s = argmax(log p + gumbel)                                  # Gumbel-max sampling
        x_s = argmax(log(a_s e_known + (1 - a_s) / K) + gumbel_known)  where mask (RePaint re-noising)

    Args:
        logits: (B, K) predicted x0 logits of one variable.
        x_t: (B,) current class indices.
        a_t: (B,) cumulative alpha at the current level t.
        a_s: (B,) cumulative alpha at the next level s (1.0 at the final step).
        gumbel: (B, K) standard Gumbel noise for the step.
        known: (B,) known class indices; needed with ``mask``.
        mask: (B,) bool, where ``known`` holds; None = nothing known.
        gumbel_known: (B, K) standard Gumbel noise for re-noising the known classes; needed with ``mask``.

    Returns:
        ``(x_s, log_p)``: (B,) int64 classes and (B, K) float32 normalised log-probabilities of the step.
    """
    k = logits.shape[-1]
    at, as_ = a_t.float()[:, None], a_s.float()[:, None]  # (B, 1)
    r = at / as_
    onehot = torch.nn.functional.one_hot(x_t.long(), k).float()  # (B, K)
    log_q1 = torch.log(r * onehot + (1 - r) / k)
    log_q2 = torch.logaddexp(torch.log(as_) + torch.log_softmax(logits.float(), -1), torch.log((1 - as_) / k))
    log_p = log_q1 + log_q2
    log_p = log_p - torch.logsumexp(log_p, -1, keepdim=True)
    x_s = torch.argmax(log_p + gumbel.float(), -1)
    if mask is not None:
        if known is None or gumbel_known is None:
            raise ValueError("known and gumbel_known are required with a mask")
        log_k = torch.log(as_ * torch.nn.functional.one_hot(known.long(), k).float() + (1 - as_) / k)
        x_s = torch.where(mask.bool(), torch.argmax(log_k + gumbel_known.float(), -1), x_s)
    return x_s, log_p
