"""Smoothed percentiles: a score's predictive percentile under a fitted Yeo-Johnson normal model, and the max of several.

An empirical percentile among n reference scores resolves only 100/n and cannot place a record beyond the
reference's range: with n = 60 its "99th percentile" is the maximum, exceeded by a record like them with
probability 1/61. Instead the reference's scores v_1..v_n are modelled as normal after a monotone transform, and a
new score's percentile is the model's predictive probability that a record like them scores lower, which extends
beyond the sample:

    y = (v - c)/s                       c, s: the reference's mean and SD (the transform is not scale-free)
    ψ_λ(y) = ((y + 1)^λ - 1)/λ          y >= 0  (log(y + 1) at λ = 0)
           = -((1 - y)^(2-λ) - 1)/(2-λ) y < 0   (-log(1 - y) at λ = 2)       Yeo & Johnson 2000
    ψ_λ(y_i) ~ N(μ, σ²), flat priors on μ, log σ and λ (a grid of [0, 2], step 0.01)    as Box & Cox 1964, §4

so that, with m_λ and d_λ the mean and SD (ddof 1) of ψ_λ(y_i) and S_λ = (n - 1) d_λ²,

    w_λ ∝ exp((λ - 1) Σ_i sign(y_i) log(1 + |y_i|)) · S_λ^(-(n-1)/2)                     posterior of λ
    P(v) = 100 · Σ_λ w_λ · F_(n-1)((ψ_λ(y) - m_λ) / (d_λ √(1 + 1/n)))                    predictive percentile

F_ν the CDF of Student's t with ν degrees of freedom: the exact prediction distribution of a normal sample's next
value when its mean and SD are estimated (a plug-in normal quantile from 60 records is exceeded about 1.2% of the
time for a nominal 1%), averaged over the transform's posterior (a single fitted λ would add the same kind of
excess). λ is kept in [0, 2], where ψ_λ maps onto the whole real line, so P is increasing in v, in (0, 100), and
a record far beyond the reference gets a percentile near 100, never a bounded one. The normal score of a
percentile is u = Φ⁻¹(P/100), computed from the upper tail so that it stays exact far out.

Several statistics (parts) are combined by their maximum: a record is as atypical as its worse statistic. The
normal scores u = (u_1..u_K) of records like the reference are modelled as N(0, R), R their correlation over the
reference (a Gaussian copula), and the combined percentile of a record with max_k u_k = m is 100 · P(max_k U_k < m),
U ~ N(0, R): exact for K = 1, from a fixed set of draws (seeded: the same for every call) for K > 1. A threshold
on it then flags about its nominal rate whatever K and however correlated the statistics are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MaxOfNormalScores", "NormalScores", "normal_percentile", "student_t_sf", "yeo_johnson"]

#: The grid of λ (flat prior).
LAMBDAS = np.linspace(0.0, 2.0, 201)
#: Draws of U ~ N(0, R) behind a combined percentile (its Monte-Carlo SE at the 99th: about 0.03).
DRAWS = 100_000


def normal_percentile(u: np.ndarray) -> np.ndarray:
    """100 · Φ(u), exact in the tails (float64)."""
    return 100.0 * torch.special.ndtr(torch.as_tensor(np.asarray(u, dtype=np.float64))).numpy()


def yeo_johnson(y: np.ndarray, lam: float) -> np.ndarray:
    """ψ_λ(y) (module docstring), for any real y; increasing in y."""
    y = np.asarray(y, dtype=np.float64)
    pos, neg = np.maximum(y, 0.0), np.minimum(y, 0.0)
    with np.errstate(over="ignore"):  # a score beyond float64 after the power: +-inf, still in order
        up = np.log1p(pos) if abs(lam) < 1e-12 else np.expm1(lam * np.log1p(pos)) / lam
        down = np.log1p(-neg) if abs(lam - 2.0) < 1e-12 else np.expm1((2.0 - lam) * np.log1p(-neg)) / (2.0 - lam)
    return np.where(y >= 0, up, -down)


def _beta_fraction(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """The continued fraction of the incomplete beta function (modified Lentz; Press et al., Numerical Recipes §6.4)."""
    tiny = 1e-300
    c = np.ones_like(x)
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
    h = d.copy()
    for m in range(1, 400):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
            c = 1.0 + aa / np.where(np.abs(c) < tiny, tiny, c)
            step = d * c
            h *= step
        if np.all(np.abs(step - 1.0) < 1e-15):
            break
    return h


def _incomplete_beta(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """The regularised incomplete beta function I_x(a, b), x in [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    inner = np.clip(x, 1e-300, 1 - 1e-16)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * np.log(inner) + b * np.log1p(-inner))
    front = np.exp(log_front)
    low = x < (a + 1.0) / (a + b + 2.0)
    value = np.where(low, front * _beta_fraction(a, b, np.where(low, inner, 0.0)) / a,
                     1.0 - front * _beta_fraction(b, a, np.where(low, 0.0, 1.0 - inner)) / b)
    return np.where(x <= 0.0, 0.0, np.where(x >= 1.0, 1.0, value))


def student_t_sf(t: np.ndarray, df: float) -> np.ndarray:
    """P(T > t) for Student's t with ``df`` degrees of freedom, exact in the upper tail: ½ I_(ν/(ν+t²))(ν/2, ½)."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore"):
        half = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return np.where(t >= 0, half, 1.0 - half)


@dataclass(frozen=True)
class NormalScores:
    """A statistic's fitted predictive model (module docstring): ``percentile(v)`` and ``normal_score(v)``."""

    center: float
    scale: float
    n: int
    lams: np.ndarray  # (L,) the λ with non-negligible posterior weight
    weights: np.ndarray  # (L,) their posterior weights (sum 1)
    means: np.ndarray  # (L,) m_λ
    sds: np.ndarray  # (L,) d_λ

    @classmethod
    def fit(cls, scores: np.ndarray) -> NormalScores:
        """Fit on the reference's scores (n,), n >= 3, all finite.

        Raises:
            ValueError: fewer than 3 scores, or a non-finite one.
        """
        v = np.asarray(scores, dtype=np.float64)
        n = len(v)
        if n < 3 or not np.isfinite(v).all():
            raise ValueError(f"normal scores need at least 3 finite reference scores, got {n}")
        center, scale = float(v.mean()), float(v.std(ddof=1))
        scale = scale if scale > 0 else 1.0
        y = (v - center) / scale
        jacobian = (np.sign(y) * np.log1p(np.abs(y))).sum()
        psi = np.stack([yeo_johnson(y, lam) for lam in LAMBDAS])  # (L, n)
        means, sds = psi.mean(axis=1), psi.std(axis=1, ddof=1)
        sds = np.where(sds > 0, sds, 1e-12)
        log_w = (LAMBDAS - 1.0) * jacobian - 0.5 * (n - 1) * np.log((n - 1) * sds ** 2)
        w = np.exp(log_w - log_w.max())
        kept = w > 1e-8 * w.max()
        w = w[kept] / w[kept].sum()
        return cls(center, scale, n, LAMBDAS[kept], w, means[kept], sds[kept])

    def survival(self, scores: np.ndarray) -> np.ndarray:
        """1 - P/100: the predictive probability that a record like the reference scores higher."""
        y = (np.asarray(scores, dtype=np.float64) - self.center) / self.scale
        psi = np.stack([yeo_johnson(y, lam) for lam in self.lams])  # (L, *shape)
        spread = (self.sds * math.sqrt(1.0 + 1.0 / self.n)).reshape(-1, *([1] * y.ndim))
        t = (psi - self.means.reshape(spread.shape)) / spread
        total = np.tensordot(self.weights, student_t_sf(t, self.n - 1), axes=1)
        return np.clip(total, 0.0, 1.0)

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """P (module docstring), in [0, 100], increasing in the score."""
        return 100.0 * (1.0 - self.survival(scores))

    def normal_score(self, scores: np.ndarray) -> np.ndarray:
        """u = Φ⁻¹(P/100), from the upper tail (+inf beyond float64's reach)."""
        return -torch.special.ndtri(torch.as_tensor(self.survival(scores))).numpy()


@dataclass(frozen=True)
class MaxOfNormalScores:
    """The distribution of max_k U_k for U ~ N(0, R) (module docstring): ``percentile(m)`` = 100 · P(max U < m)."""

    k: int
    maxima: np.ndarray  # sorted draws of max_k U_k (empty for K = 1)

    @classmethod
    def fit(cls, u: np.ndarray, *, seed: int = 0) -> MaxOfNormalScores:
        """From the reference's normal scores (n, K): R is their correlation, made positive semi-definite."""
        u = np.asarray(u, dtype=np.float64)
        k = u.shape[1]
        if k == 1:
            return cls(1, np.empty(0))
        u = np.where(np.isfinite(u), u, np.nan)
        corr = np.ma.corrcoef(np.ma.masked_invalid(u), rowvar=False).filled(0.0) if len(u) > 2 else np.eye(k)
        corr = np.where(np.isfinite(corr), corr, 0.0)
        np.fill_diagonal(corr, 1.0)
        values, vectors = np.linalg.eigh(corr)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))  # R ≈ root rootᵀ
        draws = np.random.default_rng(seed).standard_normal((DRAWS, k)) @ root.T
        draws /= np.sqrt(np.maximum((root ** 2).sum(axis=1), 1e-12))  # unit variances after clipping
        return cls(k, np.sort(draws.max(axis=1)))

    def percentile(self, m: np.ndarray) -> np.ndarray:
        """100 · P(max_k U_k < m) for each m."""
        m = np.asarray(m, dtype=np.float64)
        if self.k == 1:
            return normal_percentile(m)
        return 100.0 * np.searchsorted(self.maxima, m, side="left") / len(self.maxima)
