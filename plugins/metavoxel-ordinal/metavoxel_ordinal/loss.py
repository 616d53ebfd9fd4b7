"""The ordinal kind's training loss: cross-entropy plus the ranked probability score of the x0 logits.

loss(x0) = CE(p̂, x0) + w · CRPS(p̂, x0) / (v_{K-1} - v_0),
CRPS(p̂, x0) = Σ_{k<K-1} (F̂_k - 1[x0 <= k])² (v_{k+1} - v_k),   F̂_k = Σ_{j<=k} p̂_j,

the continuous ranked probability score of the predicted distribution on the level values v (Gneiting
& Raftery 2007). For a point prediction it is |v̂ - v_x0|: predicting CDR 2 for a true 0.5 costs
more than predicting 1. Both terms are strictly proper scoring rules, so their sum is still minimised
in expectation by the true x0 posterior, and the reverse step (which trusts p̂) stays unbiased. An
expected-absolute-distance term would not be proper: it is minimised by a point mass at the median and
would make samples over-confident.
"""

from __future__ import annotations

import torch

__all__ = ["ordinal_crps", "ordinal_loss"]


def ordinal_crps(logits: torch.Tensor, x0: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """CRPS (B,) of softmax(logits) (B, K) against level indices x0 (B,), in the units of ``levels`` (K,)."""
    probs = torch.softmax(logits.float(), dim=-1)  # (B, K)
    cdf = torch.cumsum(probs, dim=-1)[:, :-1]  # (B, K - 1)
    K = probs.shape[-1]
    step = (torch.arange(K - 1, device=x0.device)[None] >= x0.long()[:, None]).float()  # (B, K - 1) 1[x0 <= k]
    gaps = (levels[1:] - levels[:-1]).to(probs)  # (K - 1,)
    return ((cdf - step) ** 2 * gaps).sum(dim=-1)


def ordinal_loss(logits: torch.Tensor, x0: torch.Tensor, levels: torch.Tensor, crps_weight: float) -> torch.Tensor:
    """Per-record loss (B,): cross-entropy + crps_weight · CRPS / span of the levels."""
    ce = torch.nn.functional.cross_entropy(logits.float(), x0.long(), reduction="none")
    if crps_weight == 0:
        return ce
    span = float(levels[-1] - levels[0])
    return ce + crps_weight * ordinal_crps(logits, x0, levels) / span
