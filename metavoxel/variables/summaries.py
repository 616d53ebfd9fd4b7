"""Summaries over the sample axis that scalar kinds share (``Variable.summarize`` builds on them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["class_summary", "interval_summary"]


def interval_summary(samples: torch.Tensor) -> dict[str, Any]:
    """mean, SD (over samples; 0 for one sample) and the 90% interval [5th, 95th percentile], per subject.

    Args:
        samples: (N, S) values.
    """
    s = samples.double()
    sd = s.std(dim=1, correction=1) if s.shape[1] > 1 else torch.zeros(s.shape[0], dtype=s.dtype)
    q = torch.quantile(s, torch.tensor([0.05, 0.95], dtype=s.dtype), dim=1)  # (2, N)
    return {"mean": s.mean(dim=1).tolist(), "sd": sd.tolist(), "lower": q[0].tolist(), "upper": q[1].tolist()}


def class_summary(indices: torch.Tensor, labels: Sequence[str]) -> tuple[dict[str, Any], torch.Tensor]:
    """Class frequencies over samples and the majority label (ties go to the lower index), per subject.

    Args:
        indices: (N, S) class indices.
        labels: the K class names.

    Returns:
        ({"probs": (N, K) as lists, "majority": [label]}, the (N, K) frequency tensor).
    """
    probs = torch.nn.functional.one_hot(indices.long(), len(labels)).sum(dim=1).double() / indices.shape[1]  # (N, K)
    return {"probs": probs.tolist(), "majority": [labels[int(i)] for i in probs.argmax(dim=1)]}, probs
