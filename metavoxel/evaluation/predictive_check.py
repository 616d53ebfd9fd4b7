"""Is a given continuous value plausible under the model's own predictive? A check from S predictive samples.

With y_1..y_S the model's samples of a variable given the rest of a record (its image and its other values) and y
the value the record gives, the samples are read as S draws from a normal predictive N(μ, σ²) whose mean and SD
are not known but estimated, m = mean(y_s) and s = SD(y_s) (n - 1 denominator). Were y one more draw from the
same distribution (a calibrated model, a correct value), then (the prediction interval for a new observation
of a normal sample, e.g. Geisser 1993, eq. 2.1.5; Hahn & Meeker 1991, §4.7)::

    t = (m - y) / (s · √(1 + 1/S))  ~  Student's t with S - 1 degrees of freedom

so y lies outside the central ``level`` of the predictive when P(|T_{S-1}| > |t|) < 1 - level. Against a plain
normal fit (|m - y|/s > 2.576 at 99%) this accounts for m and s being estimated from few samples: at S = 16 the
plain rule would flag about 2.5% of correct values, this one 1%. The sign follows the point check's z: positive
when the model's answer is above the given value. The normal shape is an assumption about the predictive (a
kernel density of S samples cannot resolve its 0.5% tails either); the rank of y among the samples is reported
beside it as a shape-free centile, 100 · (r + ½)/(S + 1) (`metavoxel.evaluation.brain_age.true_centile`).

The tail probability uses the closed forms of Student's t distribution function for integer degrees of freedom
(Abramowitz & Stegun 1964, 26.7.3 and 26.7.4), so no special-function library is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metavoxel.errors import InputError
from metavoxel.evaluation.brain_age import true_centile

__all__ = ["MIN_SAMPLES", "SampledCheck", "sampled_check", "student_t_tail"]

#: The fewest samples a sampled check accepts (S - 1 = 2 degrees of freedom: a finite-variance t).
MIN_SAMPLES = 3


def student_t_tail(t: Any, df: int) -> np.ndarray:
    """P(|T| >= |t|) for T ~ Student's t with ``df`` (integer >= 1) degrees of freedom, elementwise.

    A(t | ν) = P(|T| < |t|) with θ = atan(|t|/√ν) (Abramowitz & Stegun 26.7.3, 26.7.4):
    ν odd:  A = (2/π)·(θ + sin θ · Σ_{k=0}^{(ν-3)/2} c_k cos^{2k+1} θ),  c_0 = 1, c_k = c_{k-1}·2k/(2k+1);
    ν even: A = sin θ · Σ_{k=0}^{(ν-2)/2} d_k cos^{2k} θ,                 d_0 = 1, d_k = d_{k-1}·(2k-1)/(2k).

    Raises:
        InputError: ``df`` not an integer >= 1.
    """
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise InputError(f"student_t_tail: degrees of freedom must be an integer >= 1, got {df!r}")
    x = np.abs(np.asarray(t, dtype=np.float64))
    theta = np.arctan2(x, math.sqrt(df))
    sin, cos = np.sin(theta), np.cos(theta)
    if df % 2:
        total, term = np.zeros_like(x), cos.copy()
        for k in range((df - 1) // 2):  # terms cos^1, cos^3, ..., cos^(ν-2)
            total += term
            term = term * cos ** 2 * (2 * k + 2) / (2 * k + 3)
        inside = 2 / math.pi * (theta + sin * total)
    else:
        total, term = np.zeros_like(x), np.ones_like(x)
        for k in range(df // 2):  # terms cos^0, cos^2, ..., cos^(ν-2)
            total += term
            term = term * cos ** 2 * (2 * k + 1) / (2 * k + 2)
        inside = sin * total
    return np.clip(1.0 - inside, 0.0, 1.0)


@dataclass(frozen=True)
class SampledCheck:
    """One value per record (N,): the samples' ``mean`` and ``sd``, the statistic ``t`` (module docstring), its
    two-sided ``tail`` probability, the given value's ``centile`` among the samples, and ``flagged``."""

    mean: np.ndarray
    sd: np.ndarray
    t: np.ndarray
    tail: np.ndarray
    centile: np.ndarray
    flagged: np.ndarray


def sampled_check(samples: Any, values: Any, level: float = 0.99) -> SampledCheck:
    """Flag each given value outside the central ``level`` of its record's predictive (module docstring).

    Args:
        samples: (N, S) predictive samples per record, S >= `MIN_SAMPLES`, in the variable's units.
        values: (N,) the values the records give.
        level: the central fraction kept, in (0, 1).

    Returns:
        A `SampledCheck`. Samples that are all equal (s = 0) flag any value that differs from them.

    Raises:
        InputError: a shape that does not match, fewer than `MIN_SAMPLES` samples, or ``level`` outside (0, 1).
    """
    y = np.asarray(samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if y.ndim != 2 or y.shape[0] != len(v):
        raise InputError(f"sampled_check: expected samples (N, S) for N = {len(v)} values, got shape {y.shape}")
    if y.shape[1] < MIN_SAMPLES:
        raise InputError(f"sampled_check: needs at least {MIN_SAMPLES} samples per record to estimate a spread, got "
                         f"{y.shape[1]}; draw more")
    if not 0.0 < level < 1.0:
        raise InputError(f"sampled_check: level must be in (0, 1), got {level!r}; e.g. 0.99")
    s = y.shape[1]
    mean, sd = y.mean(axis=1), y.std(axis=1, ddof=1)
    gap = mean - v
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, gap / (sd * math.sqrt(1 + 1 / s)), np.where(gap == 0, 0.0, np.sign(gap) * np.inf))
    tail = student_t_tail(t, s - 1)
    return SampledCheck(mean, sd, t, tail, true_centile(y, v), tail < 1 - level)
