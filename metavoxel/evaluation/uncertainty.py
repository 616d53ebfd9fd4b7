"""Is the spread of the samples right? Scores of S sampled values per subject against the truth, in float64.

Each score has a known value for a calibrated sampler (the truth ``y_i`` exchangeable with the samples
``x_i1..x_iS``), so a measured figure can be read against it at the S it was measured with:

- rank (PIT) histogram (Anderson 1996; Hamill 2001): the rank of ``y_i`` among its samples is uniform on
  0..S, so the counts per rank are flat; the chi-square statistic against ``N/(S+1)`` per rank, with S
  degrees of freedom, tests it. A U shape is overconfidence (too narrow), a hump underconfidence, a slope bias.
- CRPS (Gneiting & Raftery 2007, eq. 21, the energy form ``E|X - y| - 1/2 E|X - X'|``), in the variable's
  units; lower is better, and it rewards sharpness and calibration together.
- spread-skill: squared error of the sample mean over the sample variance times ``(1 + 1/S)`` (Fortin et
  al. 2014); 1 for a calibrated sampler at any S.
- coverage of the order-statistic interval of `metavoxel.variables.summaries` next to its real level, the
  coverage a calibrated sampler reaches at that S (the ceiling).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from metavoxel.errors import InputError
from metavoxel.variables.summaries import (DEFAULT_LEVEL, interval_level, interval_rank, level_label,
                                          order_statistic_interval)

__all__ = ["COVERAGE_SAMPLES", "coverage_note", "crps_ensemble", "gaussian_crps", "interval_coverage", "truth_ranks",
           "rank_histogram", "spread_skill", "uncertainty_metrics"]

#: Samples per subject from which evaluate's coverage is of an interval at the requested 90% or just above.
COVERAGE_SAMPLES = 20


def _pair(samples: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = samples.detach().cpu().to(torch.float64)
    x = x[:, None] if x.ndim == 1 else x  # (N, S)
    y = truth.detach().cpu().to(torch.float64).reshape(-1)  # (N,)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"uncertainty scores: expected samples (N, S) and truth (N,) for the same N >= 1 subjects, "
                         f"got {tuple(samples.shape)} and {tuple(truth.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise InputError("uncertainty scores: samples or truth hold NaN or infinite values; drop those subjects first")
    return x, y


def truth_ranks(samples: torch.Tensor, truth: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """(N,) rank of each truth among its S samples, ties broken at random (seeded): see `rank_histogram`.

    Raises:
        InputError: shapes that do not match, or non-finite values.
    """
    x, y = _pair(samples, truth)
    below = (x < y[:, None]).sum(dim=1)  # (N,)
    ties = (x == y[:, None]).sum(dim=1)  # (N,)
    generator = torch.Generator().manual_seed(seed)
    extra = torch.floor(torch.rand(len(y), generator=generator, dtype=torch.float64) * (ties + 1)).long()
    return below + extra


def rank_histogram(samples: torch.Tensor, truth: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """Counts of the truth's rank among its samples, and a chi-square test of their uniformity.

    ``r_i = #{s: x_is < y_i} + U_i``, with ``U_i`` uniform on 0..#{s: x_is = y_i} (ties, e.g. samples clipped
    to a range bound, are broken at random as in Hamill 2001, with a seeded generator). For a calibrated
    sampler ``r_i`` is uniform on 0..S, so with ``c_j = #{i: r_i = j}`` and ``e = N/(S+1)``::

        chi2 = sum_j (c_j - e)^2 / e,   S degrees of freedom,   p = Q(S/2, chi2/2)

    (``Q`` the regularised upper incomplete gamma function). The p-value is approximate when ``e < 5``.

    Args:
        samples: (N, S) sampled values.
        truth: (N,) true values.
        seed: seed of the tie-breaking.

    Returns:
        ``counts`` (S + 1 ints; rank 0: the truth below every sample), ``expected`` (e), ``chi2``, ``dof`` (S)
        and ``p_value``.
    """
    x, y = _pair(samples, truth)
    n, s = x.shape
    counts = torch.bincount(truth_ranks(x, y, seed=seed), minlength=s + 1).double()  # (S + 1,)
    expected = n / (s + 1)
    chi2 = float(((counts - expected) ** 2).sum() / expected)
    p_value = float(torch.special.gammaincc(torch.tensor(s / 2, dtype=torch.float64),
                                            torch.tensor(chi2 / 2, dtype=torch.float64)))
    return {"counts": [int(c) for c in counts], "expected": expected, "chi2": chi2, "dof": s, "p_value": p_value}


def crps_ensemble(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-subject CRPS of S samples, the unbiased ("fair") energy-form estimator.

    Gneiting & Raftery 2007 (eq. 21) write the CRPS of a distribution F as ``E|X - y| - 1/2 E|X - X'|``
    with X, X' independent draws of F. From S samples, each expectation is estimated without bias::

        crps_i = (1/S) sum_s |x_is - y_i|  -  1/(2 S (S-1)) sum_{s != s'} |x_is - x_is'|

    so its mean over subjects estimates the CRPS of the sampler's own distribution at any S (Ferro 2014);
    it is never negative (``|x_s - x_s'| <= |x_s - y| + |x_s' - y|`` bounds the pair term by the first);
    the pair sum is ``2 sum_j (2j - S - 1) x_i(j)`` over the sorted samples, O(S log S). For S = 1 the pair
    term does not exist and ``crps_i = |x_i1 - y_i|``, the CRPS of a point forecast.

    Args:
        samples: (N, S) sampled values.
        truth: (N,) true values.

    Returns:
        (N,) float64 CRPS, in the variable's units.
    """
    x, y = _pair(samples, truth)
    s = x.shape[1]
    error = (x - y[:, None]).abs().mean(dim=1)  # (N,)
    if s == 1:
        return error
    ordered = x.sort(dim=1).values  # (N, S)
    weights = 2 * torch.arange(1, s + 1, dtype=torch.float64) - s - 1  # (S,): 2j - S - 1
    pairs = 2 * (ordered * weights).sum(dim=1)  # (N,) sum over ordered pairs s != s'
    return error - pairs / (2 * s * (s - 1))


def gaussian_crps(mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """CRPS of N(mean, sd^2) at ``truth``, closed form (Gneiting & Raftery 2007, eq. 5 of Gneiting et al. 2005)::

        crps = sd * (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)),   z = (truth - mean)/sd

    Args: tensors broadcastable to one shape; ``sd > 0``.
    """
    z = (truth - mean) / sd
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def spread_skill(samples: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Squared error of the sample mean against the sample variance, corrected for the finite S.

    With ``m_i`` the mean and ``v_i`` the unbiased variance of subject i's S samples (Fortin et al. 2014)::

        skill  = mean_i (m_i - y_i)^2               spread = mean_i v_i
        spread_skill = skill / ((1 + 1/S) spread)

    For a calibrated sampler ``E (m_i - y_i)^2 = (1 + 1/S) sigma_i^2`` and ``E v_i = sigma_i^2``, so the ratio
    is 1 at any S: above 1 the samples are too narrow (overconfident), below 1 too wide (underconfident).
    Fortin et al. report the square root of the reciprocal (spread over skill); this is its inverse square.

    Args:
        samples: (N, S) sampled values, S >= 2 for a ratio.
        truth: (N,) true values.

    Returns:
        ``spread_skill`` (NaN for S = 1 or zero spread), ``mse_of_mean`` (skill), ``mean_sample_variance``
        (spread; NaN for S = 1).
    """
    x, y = _pair(samples, truth)
    s = x.shape[1]
    skill = float((x.mean(dim=1) - y).square().mean())
    if s < 2:
        return {"spread_skill": math.nan, "mse_of_mean": skill, "mean_sample_variance": math.nan}
    spread = float(x.var(dim=1, correction=1).mean())
    ratio = skill / ((1 + 1 / s) * spread) if spread > 0 else math.nan
    return {"spread_skill": ratio, "mse_of_mean": skill, "mean_sample_variance": spread}


def interval_coverage(samples: torch.Tensor, truth: torch.Tensor, *, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """How often the order-statistic interval for ``level`` covers the truth, next to what it should.

    The interval is ``[x_(k), x_(S+1-k)]`` with ``k`` from `metavoxel.variables.summaries.interval_rank`; a
    calibrated sampler covers with probability ``coverage_level = (S + 1 - 2k)/(S + 1)`` (the ceiling), e.g.
    0.5 at S = 3 and 0.905 at S = 20 for a requested 0.9. ``coverage_se`` is the binomial standard error
    ``sqrt(c (1 - c)/N)`` of the measured coverage c at the ceiling c.

    Args:
        samples: (N, S) sampled values.
        truth: (N,) true values.
        level: the requested level in (0, 1).

    Returns:
        ``coverage``, ``coverage_level``, ``coverage_se``, ``requested_level``, ``interval_rank`` (k); coverage
        and its level are NaN for S = 1 (one sample has no interval).
    """
    x, y = _pair(samples, truth)
    n, s = x.shape
    if not 0.0 < level < 1.0:
        raise InputError(f"coverage: level must be in (0, 1), got {level!r}; e.g. 0.9 for a 90% interval")
    if s < 2:
        return {"coverage": math.nan, "coverage_level": math.nan, "coverage_se": math.nan,
                "requested_level": level, "interval_rank": 1}
    lower, upper, real = order_statistic_interval(x, level)
    covered = ((lower <= y) & (y <= upper)).double().mean()
    return {"coverage": float(covered), "coverage_level": real, "coverage_se": math.sqrt(real * (1 - real) / n),
            "requested_level": level, "interval_rank": interval_rank(s, level)}


def coverage_note(num_samples: int, level: float = DEFAULT_LEVEL, flag: str = "--num-samples") -> str:
    """One sentence on what the coverage measured with S samples means, and how to measure it at ``level``."""
    if num_samples < 2:
        return f"one sample per subject has no interval; coverage needs {flag} {COVERAGE_SAMPLES}"
    k, real = interval_rank(num_samples, level), interval_level(num_samples, level)
    bounds = "the minimum to the maximum" if k == 1 else f"sorted sample {k} to sorted sample {num_samples + 1 - k}"
    text = (f"the interval from {bounds} of {num_samples} samples has level {level_label(real)}: a calibrated "
            f"sampler covers the truth {level_label(real)} of the time")
    if num_samples < COVERAGE_SAMPLES:
        text += f"; coverage of a {level_label(level)} interval needs {flag} {COVERAGE_SAMPLES}"
    return text


def uncertainty_metrics(samples: torch.Tensor, truth: torch.Tensor, *, level: float = DEFAULT_LEVEL,
                        seed: int = 0) -> dict[str, Any]:
    """Every score of this module for one continuous variable: what `metavoxel evaluate` reports.

    Returns:
        ``num_samples``, ``crps`` (mean over subjects), the keys of `spread_skill`, of `interval_coverage`,
        ``rank_histogram`` (`rank_histogram`) and ``coverage_note`` (`coverage_note`).
    """
    x, y = _pair(samples, truth)
    return {"num_samples": x.shape[1], "crps": float(crps_ensemble(x, y).mean()), **spread_skill(x, y),
            **interval_coverage(x, y, level=level), "rank_histogram": rank_histogram(x, y, seed=seed),
            "coverage_note": coverage_note(x.shape[1], level)}
