"""Brain-age outputs: brain-PAD, its linear age-bias correction, the centile of the truth, and their metrics.

With a continuous target y (age), its prediction ŷ_i (the mean of the samples, or a point prediction) and the
true value y_i of record i:

- **brain-PAD** (brain-predicted age difference, Franke et al. 2010; Cole & Franke 2017)::

      PAD_i = ŷ_i - y_i

- **age-bias correction** (the linear correction of the brain-age literature: Le et al. 2018; Beheshti et al.
  2019; Smith et al. 2019; reviewed by de Lange & Cole 2020). A regression model shrinks its answers toward the
  cohort mean, so raw PAD correlates negatively with age. Fit ŷ = a + b·y by least squares on the run's
  validation split (records the model was not trained on), then::

      corrected PAD_i = ŷ_i - (a + b·y_i)            (the residual of the fit)
      corrected ŷ_i   = ŷ_i - (a + b·y_i) + y_i      (= y_i + corrected PAD_i)

  On the fitting records corrected PAD is uncorrelated with y by construction. The correction uses the true
  age, so it is for studying PAD (group differences, associations), not for predicting an unknown age. de Lange
  & Cole's variant, (ŷ - a)/b - y, is this corrected PAD divided by b (same sign and ranking, scaled up by
  1/b; unstable when b is near 0), which is why the residual form is the default here.

- **centile of the truth** among S predictive samples y_i1..y_iS::

      centile_i = 100 · (r_i + ½) / (S + 1),   r_i = #{s: y_is < y_i} + ½·#{s: y_is = y_i}

  For a calibrated model r_i is uniform on 0..S (the rank / PIT histogram), so the centile is uniform on the
  midpoints of S + 1 equal bins; it carries no regression to the mean (a low centile says the record looks
  older than it is under the model's own spread, whatever its age).

Units are the target's own (years for age).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metavoxel.errors import InputError

__all__ = ["BiasCorrection", "brain_age_metrics", "difference_columns", "true_centile"]


def _vector(values: Any, what: str) -> np.ndarray:
    x = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"{what}: expected one value per record (N,), got shape {x.shape}")
    return x


@dataclass(frozen=True)
class BiasCorrection:
    """The linear age-bias correction ŷ ≈ a + b·y fitted on validation records (module docstring).

    Attributes:
        intercept: a, in the target's units.
        slope: b (dimensionless; 1 = no regression to the mean).
        n: records it was fitted on.
        fitted_on: where they came from (e.g. ``validation split, sample mean of 3``).
        residual_sd: σ, the SD of the fit's residuals ŷ - (a + b·y) (n - 2 degrees of freedom; NaN for n = 2):
            the spread of corrected PAD among the fitting records.
    """

    intercept: float
    slope: float
    n: int
    fitted_on: str = ""
    residual_sd: float = float("nan")

    @classmethod
    def fit(cls, predicted: Any, truth: Any, *, fitted_on: str = "") -> BiasCorrection:
        """Least squares of ``predicted`` (N,) on ``truth`` (N,); InputError with fewer than 2 distinct truths."""
        p, t = _vector(predicted, "predicted"), _vector(truth, "truth")
        if p.shape != t.shape:
            raise InputError(f"bias correction: {len(p)} predictions for {len(t)} true values; give one of each per record")
        keep = np.isfinite(p) & np.isfinite(t)
        p, t = p[keep], t[keep]
        if len(t) < 2 or float(np.ptp(t)) == 0.0:
            raise InputError(f"bias correction needs at least 2 records with different true values, got {len(t)}; "
                             "use a validation split with more records")
        tc = t - t.mean()
        slope = float((tc * (p - p.mean())).sum() / (tc * tc).sum())
        intercept = float(p.mean() - slope * t.mean())
        residual = p - (intercept + slope * t)
        sd = float(np.sqrt((residual ** 2).sum() / (len(t) - 2))) if len(t) > 2 else float("nan")
        return cls(intercept, slope, int(len(t)), fitted_on, sd)

    def expected(self, truth: Any) -> np.ndarray:
        """a + b·y: the prediction the fit expects at true value y, (N,)."""
        return self.intercept + self.slope * _vector(truth, "truth")

    def corrected_pad(self, predicted: Any, truth: Any) -> np.ndarray:
        """ŷ - (a + b·y), (N,)."""
        return _vector(predicted, "predicted") - self.expected(truth)

    def corrected(self, predicted: Any, truth: Any) -> np.ndarray:
        """ŷ - (a + b·y) + y, (N,): the bias-corrected prediction."""
        return self.corrected_pad(predicted, truth) + _vector(truth, "truth")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "linear", "intercept": self.intercept, "slope": self.slope, "n": self.n,
                "fitted_on": self.fitted_on,
                "residual_sd": self.residual_sd if np.isfinite(self.residual_sd) else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiasCorrection:
        sd = data.get("residual_sd")
        return cls(float(data["intercept"]), float(data["slope"]), int(data["n"]), str(data.get("fitted_on", "")),
                   float("nan") if sd is None else float(sd))


def true_centile(samples: Any, truth: Any) -> np.ndarray:
    """100 · (r + ½)/(S + 1) with r the (mid-)rank of the truth among the S samples: (N,) in (0, 100).

    Args:
        samples: (N, S) predictive samples; truth: (N,) true values (NaN gives NaN).
    """
    y = np.asarray(samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples, dtype=np.float64)
    t = _vector(truth, "truth")
    if y.ndim != 2 or y.shape[0] != len(t):
        raise InputError(f"true_centile: expected samples (N, S) for N = {len(t)} records, got {y.shape}")
    s = y.shape[1]
    rank = (y < t[:, None]).sum(axis=1) + 0.5 * (y == t[:, None]).sum(axis=1)
    centile = 100.0 * (rank + 0.5) / (s + 1)
    return np.where(np.isfinite(t), centile, np.nan)


def difference_columns(target: str) -> dict[str, str]:
    """The TSV column of each brain-age output of ``target``: brain-age names for ``age``, generic otherwise.

    Keys: ``pad`` (ŷ - y), ``pad_corrected``, ``corrected`` (the bias-corrected prediction), ``centile``.
    """
    if target == "age":
        return {"pad": "brain_pad", "pad_corrected": "brain_pad_corrected", "corrected": "brain_age_corrected",
                "centile": "age_centile"}
    return {"pad": f"{target}_difference", "pad_corrected": f"{target}_difference_corrected",
            "corrected": f"{target}_corrected", "centile": f"{target}_centile"}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _fit_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    pad = predicted - truth
    total = float(((truth - truth.mean()) ** 2).sum())
    return {"mae": float(np.abs(pad).mean()), "r": _pearson(predicted, truth),
            "r2": 1.0 - float((pad ** 2).sum()) / total if total > 0 else float("nan"),
            "pad_mean": float(pad.mean()), "pad_age_r": _pearson(pad, truth)}


def brain_age_metrics(predicted: Any, truth: Any, correction: BiasCorrection | None = None) -> dict[str, Any]:
    """MAE, r, R² and corr(PAD, y) of predictions, before and (with ``correction``) after the bias correction.

    ``r`` is Pearson's between ŷ and y (NaN for one record or a constant); ``r2`` the coefficient of determination 1 - Σ(ŷ - y)²/Σ(y - ȳ)² (it is
    negative for predictions worse than the mean, and is not r²); ``pad_age_r`` Pearson's between PAD and y
    (negative: regression to the mean); ``pad_mean`` the mean PAD. After correction the same on the corrected
    prediction ŷ - (a + b·y) + y; its ``pad_age_r`` is near 0 when the validation fit transfers.

    Returns:
        ``{"n", "before": {...}, "after": {...} or None, "correction": {...} or None}``.
    """
    p, t = _vector(predicted, "predicted"), _vector(truth, "truth")
    if len(p) != len(t) or len(t) < 1:
        raise InputError(f"brain-age metrics need one prediction per true value, got {len(p)} and {len(t)}")
    after = None if correction is None else _fit_metrics(correction.corrected(p, t), t)
    return {"n": len(t), "before": _fit_metrics(p, t), "after": after,
            "correction": None if correction is None else correction.to_dict()}


