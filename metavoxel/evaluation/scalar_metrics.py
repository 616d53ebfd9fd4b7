"""Metrics of sampled clinical variables against the truth: regression (continuous) and classification
(categorical), computed in float64 from S posterior samples per subject.

Regression: the point prediction is the sample mean ``y_hat_i = mean_s y_is``; the spread of the samples is
judged by CRPS, the spread-skill ratio and the coverage of an order-statistic interval next to the level it
really has at S samples (`metavoxel.evaluation.uncertainty`).

Classification: the point prediction is the majority vote of the samples, or ``argmax_k p_ik`` without
samples; probabilities come from the sample frequencies (`sample_frequencies`) or from a model. Calibration
is the expected calibration error of Guo et al. 2017 (eq. 3) over 10 equal-width confidence bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metavoxel.errors import InputError
from metavoxel.evaluation.uncertainty import crps_ensemble, interval_coverage, spread_skill

__all__ = ["calibration_curve", "classification_metrics", "regression_metrics", "sample_frequencies"]

ArrayLike = torch.Tensor | np.ndarray | Sequence

# Probabilities below this are clipped in the NLL so one confident mistake gives a large, finite loss.
NLL_FLOOR = 1e-12


def _float64(values: ArrayLike, what: str, ndim: tuple[int, ...]) -> torch.Tensor:
    x = values if torch.is_tensor(values) else torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    x = x.detach().cpu().to(torch.float64)
    if x.ndim not in ndim:
        raise InputError(f"{what}: expected {' or '.join(f'{d}-D' for d in ndim)} values, got shape "
                         f"{tuple(x.shape)}; give one row per subject")
    if x.shape[0] == 0:
        raise InputError(f"{what}: no subjects; give at least one")
    if not torch.isfinite(x).all():
        raise InputError(f"{what}: {int((~torch.isfinite(x)).sum())} values are NaN or infinite; "
                         "drop subjects with missing values before scoring")
    return x


def _indices(values: ArrayLike, what: str, ndim: int, num_classes: int) -> torch.Tensor:
    x = _float64(values, what, (ndim,))
    if (x != x.round()).any() or (x < 0).any() or (x >= num_classes).any():
        bad = x[(x != x.round()) | (x < 0) | (x >= num_classes)][0].item()
        raise InputError(f"{what}: expected class indices in 0..{num_classes - 1}, got {bad!r}; "
                         "map class labels to indices first")
    return x.long()


def regression_metrics(samples: ArrayLike, truth: ArrayLike, *, level: float = 0.9) -> dict[str, float]:
    """Point and interval accuracy of sampled continuous values.

    With ``y_hat_i = mean_s y_is``, ``e_i = y_hat_i - t_i`` and ``y_i(1) <= ... <= y_i(S)`` the sorted samples::

        mae = mean |e_i|      rmse = sqrt(mean e_i^2)      bias = mean e_i
        coverage = mean 1[y_i(k) <= t_i <= y_i(S+1-k)],   coverage_level = (S + 1 - 2k)/(S + 1)

    with k chosen for the requested ``level`` by `metavoxel.variables.summaries.interval_rank`;
    ``coverage_level`` is what a calibrated sampler covers (0.5 for S = 3 whatever ``level`` says).

    Args:
        samples: (N, S) sampled values, S samples per subject; (N,) is read as S = 1.
        truth: (N,) true values.
        level: the requested level of the interval scored by ``coverage``, in (0, 1).

    Returns:
        ``mae``, ``mae_sd`` (unbiased SD of |e_i| over subjects; NaN if N = 1), ``rmse``, ``bias``,
        ``pearson_r`` (between y_hat and t; NaN if either is constant or N < 2), ``mean_sample_variance``
        (mean over subjects of the unbiased variance of the S samples; NaN if S = 1), ``coverage`` and
        ``coverage_level`` (NaN if S < 2), ``crps`` (`crps_ensemble`, mean over subjects), ``spread_skill``
        (`spread_skill`; NaN if S = 1) and ``n`` (N).
    """
    y = _float64(samples, "regression samples", (1, 2))
    y = y[:, None] if y.ndim == 1 else y  # (N, S)
    t = _float64(truth, "regression truth", (1,))
    if t.shape[0] != y.shape[0]:
        raise InputError(f"regression metrics: samples have {y.shape[0]} subjects but truth has {t.shape[0]}; "
                         "give samples (N, S) and truth (N,) for the same subjects")
    if not 0.0 < level < 1.0:
        raise InputError(f"regression metrics: level must be in (0, 1), got {level!r}; e.g. 0.9 for a 90% interval")
    n = y.shape[0]
    error = y.mean(dim=1) - t  # (N,)
    absolute = error.abs()
    nan = float("nan")
    interval = interval_coverage(y, t, level=level)
    spread = spread_skill(y, t)
    return {
        "mae": float(absolute.mean()),
        "mae_sd": float(absolute.std(unbiased=True)) if n > 1 else nan,
        "rmse": float(error.square().mean().sqrt()),
        "bias": float(error.mean()),
        "pearson_r": _pearson(y.mean(dim=1), t),
        "mean_sample_variance": spread["mean_sample_variance"],
        "coverage": interval["coverage"],
        "coverage_level": interval["coverage_level"],
        "crps": float(crps_ensemble(y, t).mean()),
        "spread_skill": spread["spread_skill"],
        "n": n,
    }


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def sample_frequencies(samples: ArrayLike, num_classes: int) -> torch.Tensor:
    """Class frequencies of S sampled class indices per subject: ``p_ik = (1/S) sum_s 1[y_is = k]``.

    Args:
        samples: (N, S) class indices in 0..num_classes-1.
        num_classes: K.

    Returns:
        (N, K) float64 probabilities; each row sums to 1.
    """
    if num_classes < 1:
        raise InputError(f"sample_frequencies: num_classes must be >= 1, got {num_classes}")
    y = _indices(samples, "classification samples", 2, num_classes)
    counts = torch.zeros(y.shape[0], num_classes, dtype=torch.float64)
    counts.scatter_add_(1, y, torch.ones_like(y, dtype=torch.float64))  # (N, K)
    return counts / y.shape[1]


def _probabilities(probs: ArrayLike, n: int, num_classes: int) -> torch.Tensor:
    p = _float64(probs, "classification probs", (2,))
    if p.shape != (n, num_classes):
        raise InputError(f"classification probs: expected shape ({n}, {num_classes}) (subjects, classes), got "
                         f"{tuple(p.shape)}; give one probability per class for every subject")
    if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-4):
        raise InputError("classification probs: every row must be non-negative and sum to 1 (within 1e-4); "
                         "apply softmax to logits first")
    return p


def calibration_curve(truth: ArrayLike, probs: ArrayLike, bins: int = 10) -> list[tuple[float, float, int]]:
    """Reliability-diagram points: confidence ``c_i = max_k p_ik`` binned into ``bins`` equal-width bins
    ``(b/bins, (b+1)/bins]`` (confidence 0 goes to the first bin); the prediction is ``argmax_k p_ik``
    (ties: the lower class index).

    Args:
        truth: (N,) class indices.
        probs: (N, K) probabilities.
        bins: number of bins.

    Returns:
        one ``(mean confidence, accuracy, count)`` per non-empty bin, in increasing confidence.
    """
    if bins < 1:
        raise InputError(f"calibration_curve: bins must be >= 1, got {bins}")
    p = _float64(probs, "classification probs", (2,))
    t = _indices(truth, "classification truth", 1, p.shape[1])
    p = _probabilities(p, t.shape[0], p.shape[1])
    confidence, predicted = p.max(dim=1)  # (N,), (N,): max returns the first maximal index
    correct = (predicted == t).double()
    # (N,) bin index; the 1e-9 keeps a confidence on a bin edge (0.6 * 10 = 6.000000000000001) in its bin
    which = (torch.ceil(confidence * bins - 1e-9).long() - 1).clamp(0, bins - 1)
    curve = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            curve.append((float(confidence[members].mean()), float(correct[members].mean()), count))
    return curve


def _majority(samples: torch.Tensor, probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.zeros(samples.shape[0], num_classes, dtype=torch.float64)
    counts.scatter_add_(1, samples, torch.ones_like(samples, dtype=torch.float64))  # (N, K)
    tied = counts == counts.max(dim=1, keepdim=True).values
    # Among the most frequent classes, the larger probability wins; argmax then takes the lower index.
    return torch.where(tied, probs, torch.full_like(probs, -1.0)).argmax(dim=1)


def _auroc(truth: torch.Tensor, probs: torch.Tensor) -> tuple[float, str | None]:
    from monai.metrics import compute_roc_auc

    k = probs.shape[1]
    present = sorted(int(c) for c in truth.unique())
    if len(present) < 2:
        return float("nan"), f"only class {present[0]} occurs in the truth; AUROC needs at least two classes"
    if k == 2:
        return float(compute_roc_auc(probs[:, 1], (truth == 1).long())), None
    onehot = torch.nn.functional.one_hot(truth, k)[:, present]  # (N, K present)
    per_class = compute_roc_auc(probs[:, present], onehot, average="none")
    note = None if len(present) == k else (f"classes {sorted(set(range(k)) - set(present))} do not occur in the "
                                           f"truth; macro AUROC over the {len(present)} that do")
    return float(np.mean(per_class)), note


def classification_metrics(truth: ArrayLike, *, samples: ArrayLike | None = None, probs: ArrayLike | None = None,
                           classes: int | Sequence[str]) -> dict[str, float | int | str]:
    """Accuracy, ranking and calibration of sampled (or predicted) classes.

    The point prediction is the majority vote of the samples: the most frequent class; a tie goes to the
    tied class with the larger probability ``p_ik``, and if those are equal too, to the lower class index.
    Without samples it is ``argmax_k p_ik`` (ties: the lower index). With samples but no ``probs``, the
    probabilities are the sample frequencies. Then, with ``y_i`` the true class::

        prob_accuracy = mean_i p_{i,y_i}          nll = -mean_i log max(p_{i,y_i}, 1e-12)
        brier = mean_i sum_k (p_ik - 1[k = y_i])^2   (Brier 1950; in [0, 2])
        ece = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|  (10 bins, see `calibration_curve`)

    AUROC is MONAI's ``compute_roc_auc``: on ``p_i1`` for two classes, else the one-vs-rest macro average
    over the classes that occur in the truth.

    Args:
        truth: (N,) class indices.
        samples: (N, S) sampled class indices.
        probs: (N, K) class probabilities.
        classes: K, or the K class names.

    Returns:
        ``accuracy``, ``prob_accuracy``, ``auroc``, ``ece``, ``nll``, ``brier``, ``n``; plus ``auroc_reason``
        when AUROC is NaN (a single class in the truth) or averages over fewer than K classes.
    """
    num_classes = classes if isinstance(classes, int) else len(classes)
    if num_classes < 2:
        raise InputError(f"classification metrics: expected at least 2 classes, got {classes!r}; "
                         "give the number of classes or their names")
    t = _indices(truth, "classification truth", 1, num_classes)
    if samples is None and probs is None:
        raise InputError("classification metrics: got neither samples nor probs; give sampled class indices "
                         "(N, S), probabilities (N, K), or both")
    y = None if samples is None else _indices(samples, "classification samples", 2, num_classes)
    if y is not None and y.shape[0] != t.shape[0]:
        raise InputError(f"classification metrics: samples have {y.shape[0]} subjects but truth has "
                         f"{t.shape[0]}; give samples (N, S) for the same subjects")
    p = sample_frequencies(y, num_classes) if probs is None else _probabilities(probs, t.shape[0], num_classes)
    predicted = p.argmax(dim=1) if y is None else _majority(y, p, num_classes)  # (N,)
    p_true = p.gather(1, t[:, None])[:, 0]  # (N,)
    onehot = torch.nn.functional.one_hot(t, num_classes).double()  # (N, K)
    n = t.shape[0]
    curve = calibration_curve(t, p)
    auroc, reason = _auroc(t, p)
    out: dict[str, float | int | str] = {
        "accuracy": float((predicted == t).double().mean()),
        "prob_accuracy": float(p_true.mean()),
        "auroc": auroc,
        "ece": sum(count / n * abs(acc - conf) for conf, acc, count in curve),
        "nll": float(-p_true.clamp_min(NLL_FLOOR).log().mean()),
        "brier": float((p - onehot).square().sum(dim=1).mean()),
        "n": n,
    }
    if reason is not None:
        out["auroc_reason"] = reason
    return out
