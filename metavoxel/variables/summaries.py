"""Summaries over the sample axis that scalar kinds share (``Variable.summarize`` builds on them).

The interval of a continuous summary is an order-statistic interval whose level is what S samples can
honestly support, not a fixed "90%".

With ``x_(1) <= ... <= x_(S)`` the sorted samples of one subject and ``y`` the truth, if the S samples and
``y`` are exchangeable (a calibrated sampler: ``y`` is one more draw from the same distribution) and
continuous, the rank of ``y`` among the S + 1 values is uniform on {0, ..., S}, so::

    P(x_(k) <= y <= x_(S+1-k)) = (S + 1 - 2k) / (S + 1)

(the classical order-statistic interval; the split-conformal interval of Vovk et al. 2005 and
Lei et al. 2018 takes its bounds the same way). From S = 3 samples even [min, max] is only a 50% interval;
the 5th-95th percentile of 3 samples, once printed as a "90% interval", lies inside it and covers about 46%.

The rule (`interval_rank`): for a requested level ``a``, take the largest k with
``(S + 1 - 2k)/(S + 1) >= a``, i.e. ``k = floor((S + 1)(1 - a)/2)`` — the narrowest such interval, whose
level is ``a`` or just above (the conformal guarantee). When S is too small for that (k = 0, i.e.
``S < (1 + a)/(1 - a)``: fewer than 19 samples for 90%), k = 1: the interval from the minimum to the
maximum, whose level ``(S - 1)/(S + 1)`` is below ``a``. Either way the summary carries the level it really
has (``level``), and whoever prints the interval names that level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from metavoxel.errors import InputError

__all__ = ["class_summary", "interval_level", "interval_rank", "interval_summary", "level_label",
           "order_statistic_interval", "samples_for_level"]

#: The level an interval summary asks for when none is given.
DEFAULT_LEVEL = 0.9


def _check(num_samples: int, level: float) -> None:
    if num_samples < 1:
        raise InputError(f"an interval needs at least one sample, got num_samples={num_samples}")
    if not 0.0 < level < 1.0:
        raise InputError(f"the interval level must be in (0, 1), got {level!r}; e.g. 0.9 for a 90% interval")


def interval_rank(num_samples: int, level: float = DEFAULT_LEVEL) -> int:
    """k of the interval ``[x_(k), x_(S+1-k)]`` (1-based order statistics) chosen for ``level`` from S samples.

    ``k = max(1, floor((S + 1)(1 - level)/2))``: the narrowest symmetric order-statistic interval whose
    calibrated coverage ``(S + 1 - 2k)/(S + 1)`` is at least ``level``, or the widest one (k = 1, minimum to
    maximum) when S samples cannot reach ``level``.
    """
    _check(num_samples, level)
    k = math.floor((num_samples + 1) * (1 - level) / 2 + 1e-9)  # 1e-9: (19 + 1) * 0.1 / 2 is 0.999...
    return min(max(k, 1), (num_samples + 1) // 2)


def interval_level(num_samples: int, level: float = DEFAULT_LEVEL) -> float:
    """The level the interval of `interval_rank` really has: ``(S + 1 - 2k)/(S + 1)``.

    It is the probability that a calibrated sampler's interval covers the truth (the ceiling of the
    measured coverage): 0.5 for S = 3, 0.9 for S = 19, 0.905 for S = 20 at a requested 0.9; 0 for S = 1.
    """
    k = interval_rank(num_samples, level)
    return (num_samples + 1 - 2 * k) / (num_samples + 1)


def samples_for_level(level: float = DEFAULT_LEVEL) -> int:
    """The fewest samples whose min-max interval reaches ``level``: ``ceil((1 + level)/(1 - level))`` (19 for 0.9)."""
    _check(1, level)
    return math.ceil((1 + level) / (1 - level) - 1e-9)


def order_statistic_interval(samples: torch.Tensor, level: float = DEFAULT_LEVEL
                             ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The interval of `interval_rank` for every subject.

    Args:
        samples: (N, S) values.
        level: the requested level in (0, 1).

    Returns:
        (lower (N,), upper (N,), the interval's real level `interval_level`).
    """
    s = samples.shape[1]
    k = interval_rank(s, level)
    ordered = samples.sort(dim=1).values  # (N, S)
    return ordered[:, k - 1], ordered[:, s - k], interval_level(s, level)


def level_label(level: float) -> str:
    """A level as a percentage that never rounds to a rounder claim: 0.5 -> '50%', 0.9048 -> '90.5%'."""
    percent = 100 * level
    return f"{percent:.0f}%" if abs(percent - round(percent)) < 1e-9 else f"{percent:.1f}%"


def interval_summary(samples: torch.Tensor, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """mean, SD (over samples; 0 for one sample) and an order-statistic interval with its real level, per subject.

    The interval is `order_statistic_interval` for the requested ``level`` (see the module docstring): from
    3 samples it is [min, max] with ``level`` 0.5, and it reaches 0.9 from 19 samples on.

    Args:
        samples: (N, S) values.
        level: the requested level in (0, 1).

    Returns:
        ``mean``, ``sd``, ``lower``, ``upper``, ``level`` (the interval's real level) and ``num_samples`` (S),
        each a list with one entry per subject.
    """
    s = samples.double()
    n, count = s.shape
    sd = s.std(dim=1, correction=1) if count > 1 else torch.zeros(n, dtype=s.dtype)
    lower, upper, real = order_statistic_interval(s, level)
    return {"mean": s.mean(dim=1).tolist(), "sd": sd.tolist(), "lower": lower.tolist(), "upper": upper.tolist(),
            "level": [real] * n, "num_samples": [count] * n}


def class_summary(indices: torch.Tensor, labels: Sequence[str]) -> tuple[dict[str, Any], torch.Tensor]:
    """Class frequencies over samples, the majority label (ties go to the lower index) and S, per subject.

    The frequencies are counts over S samples (multiples of 1/S), not calibrated probabilities: with S = 3
    the only possible values are 0, 1/3, 2/3 and 1.

    Args:
        indices: (N, S) class indices.
        labels: the K class names.

    Returns:
        ({"probs": (N, K) as lists, "majority": [label], "num_samples": [S]}, the (N, K) frequency tensor).
    """
    n, count = indices.shape
    probs = torch.nn.functional.one_hot(indices.long(), len(labels)).sum(dim=1).double() / count  # (N, K)
    return {"probs": probs.tolist(), "majority": [labels[int(i)] for i in probs.argmax(dim=1)],
            "num_samples": [count] * n}, probs
