"""How much of the metadata signal a VAE's reconstructions keep: a linear probe, raw vs reconstructed.

A ridge probe is fitted on the **raw training images** and evaluated twice on the same held-out subjects:
on their raw images and on the VAE's reconstructions ``decode(mu(x))``. A continuous variable (e.g. age)
is scored by mean absolute error, a categorical one (e.g. sex) by accuracy; the figure of merit is
``mae_recon / mae_raw`` (1: the probe sees as much in the reconstructions as in the raw images).

Features, two views of each image: ``pooled`` — the image average-pooled to a small grid (``grid``,
default 6³ = 216 per channel; where things are, e.g. head size) — and ``histogram`` — the fraction of
voxels in each of 32 intensity bins over [0, 1] (linear binning; how much of each tissue and at what
contrast, blind to position, so misregistration does not hide it) — and ``both`` side by side. Each is
standardised with the training mean and SD. Ridge regression (Hoerl & Kennard 1970) in closed form, with
the penalty chosen from a log grid by exact leave-one-out error on the training images (the PRESS
residuals ``e_i / (1 - H_ii)``, Allen 1974); the view is chosen per variable the same way, by the smallest
leave-one-out error. A categorical variable is a ridge regression on one-hot targets whose largest output
is the predicted class (a regularised least-squares classifier).

A second probe, when the training images' reconstructions are given, is **refitted on reconstructions**:
fitted on the reconstructed training images (view and penalty by leave-one-out, as above) and scored on
the reconstructed held-out images. The two answer different questions. The raw-fitted probe asks whether
a reader of real images can read the reconstructions: a reconstruction that keeps the signal but shifts or
blurs the intensities (so its histogram leaves the raw images' range) fails it. The refitted probe asks
whether the signal is still there, linearly, in whatever intensities the VAE produces, which is what a
model trained on the latents can learn from. A large raw-fit ratio with a refit ratio near 1 means "the
signal survives, the intensities moved"; both large means "the signal is gone".

What it can and cannot show: the probe is linear in coarse intensities and their histogram, so it is a
*lower bound* on the signal either image carries. A ratio near 1 says the reconstructions keep what this
probe can read, not that they keep everything (fine texture and sub-pooling detail may be lost unseen).
A raw MAE no better than the training-mean baseline (``mae_baseline``) says the probe reads nothing, and
its ratio then means nothing either. Reconstructions whose features fall outside the raw training images'
(e.g. blurred histograms) are extrapolated linearly and can score far worse than the baseline: read that
as "the signal is gone", not as predictions. With tens of held-out subjects the figures carry sampling
noise of several percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from metavoxel.errors import InputError

__all__ = ["FEATURE_VIEWS", "ProbeResult", "RidgeProbe", "intensity_histogram", "pooled_features", "signal_probe"]

#: Ridge penalties tried, relative to the number of training images (a log grid).
PENALTIES = tuple(10.0 ** k for k in range(-3, 5))
#: The feature views a probe chooses from (module docstring).
FEATURE_VIEWS = ("pooled", "histogram", "both")


def pooled_features(images: torch.Tensor, grid: Sequence[int] | int = 6) -> torch.Tensor:
    """Average-pool each image to ``grid`` and flatten: the probe's features.

    Args:
        images: (N, C, *shape) float images (2D or 3D).
        grid: the pooled grid, one size per spatial axis (an int: the same on every axis).

    Returns:
        (N, C * prod(grid)) float64 features.
    """
    spatial = images.ndim - 2
    if spatial not in (2, 3):
        raise InputError(f"pooled_features takes (N, C, *shape) images with 2 or 3 spatial axes, got shape "
                         f"{tuple(images.shape)}; give a batch of images")
    size = (grid,) * spatial if isinstance(grid, int) else tuple(grid)
    pool = torch.nn.functional.adaptive_avg_pool3d if spatial == 3 else torch.nn.functional.adaptive_avg_pool2d
    return pool(images.float(), size).flatten(1).double()  # (N, C * prod(grid))


def intensity_histogram(images: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """The fraction of each image's voxels in ``bins`` equal intensity bins over [0, 1], per channel.

    Linear binning: a voxel between two bin centres splits its unit weight between them in proportion to
    its distance, so the histogram moves smoothly with the intensities (values outside [0, 1] count in the
    end bins).

    Args:
        images: (N, C, *shape) images with values in [0, 1].

    Returns:
        (N, C * bins) float64; each channel's bins sum to 1.
    """
    x = images.double().flatten(2)  # (N, C, V)
    position = (x * bins - 0.5).clamp(0, bins - 1)  # (N, C, V) in bin-centre units
    lower = position.floor().clamp(max=bins - 2).long() if bins > 1 else torch.zeros_like(position, dtype=torch.long)
    upper_weight = (position - lower).clamp(0, 1) if bins > 1 else torch.zeros_like(position)
    out = torch.zeros(*x.shape[:2], bins + 1, dtype=torch.float64)  # (N, C, bins + 1), the last one spare
    out.scatter_add_(2, lower, 1 - upper_weight)
    out.scatter_add_(2, lower + 1, upper_weight)
    return (out[..., :bins] / x.shape[2]).flatten(1)  # (N, C * bins)


def _features(images: torch.Tensor, view: str, grid: Sequence[int] | int) -> torch.Tensor:
    if view == "pooled":
        return pooled_features(images, grid)
    if view == "histogram":
        return intensity_histogram(images)
    return torch.cat([pooled_features(images, grid), intensity_histogram(images)], 1)


class RidgeProbe:
    """Ridge regression of (N, K) targets on (N, F) features with a leave-one-out-chosen penalty.

    ``fit`` standardises the features (training mean and SD; constant features are dropped by their zero
    SD), centres the targets, and for each penalty ``lam * N`` in `PENALTIES` computes, from the SVD
    ``X = U S V^T``, the hat matrix diagonal ``H_ii = 1/N + sum_j U_ij^2 s_j^2 / (s_j^2 + lam N)`` and the
    leave-one-out residuals ``(y_i - y_hat_i) / (1 - H_ii)``; the penalty with the smallest mean squared
    leave-one-out residual (summed over the K targets) is kept.
    """

    def __init__(self, penalties: Sequence[float] = PENALTIES) -> None:
        self.penalties = tuple(penalties)
        self.penalty: float | None = None
        self.loo_error = math.inf  # mean squared leave-one-out residual at the chosen penalty

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> RidgeProbe:
        """Fit on (N, F) features and (N, K) or (N,) targets; returns self."""
        x, y = features.double(), targets.double().reshape(len(features), -1)  # (N, F), (N, K)
        n = len(x)
        if n < 3:
            raise InputError(f"the probe needs at least 3 training images, got {n}; train on more images")
        self.mean, sd = x.mean(0), x.std(0)
        self.scale = torch.where(sd > 1e-12, 1.0 / sd.clamp_min(1e-12), torch.zeros_like(sd))
        self.offset = y.mean(0)  # (K,)
        xs, yc = (x - self.mean) * self.scale, y - self.offset  # (N, F), (N, K)
        u, s, vh = torch.linalg.svd(xs, full_matrices=False)  # (N, r), (r,), (r, F)
        uty = u.T @ yc  # (r, K)
        best = (math.inf, None)
        for lam in self.penalties:
            shrink = s**2 / (s**2 + lam * n)  # (r,)
            fitted = u @ (shrink[:, None] * uty)  # (N, K)
            leverage = 1.0 / n + (u**2 * shrink).sum(1)  # (N,) diagonal of the hat matrix, intercept included
            loo = (yc - fitted) / (1.0 - leverage).clamp_min(1e-9)[:, None]  # (N, K)
            error = loo.pow(2).mean().item()
            if error < best[0]:
                best = (error, lam)
        self.loo_error, self.penalty = best
        coef = s / (s**2 + self.penalty * n)  # (r,)
        self.weight = vh.T @ (coef[:, None] * uty)  # (F, K)
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> (N, K) predictions (float64)."""
        if self.penalty is None:
            raise InputError("the probe is not fitted; call fit(features, targets) first")
        return ((features.double() - self.mean) * self.scale) @ self.weight + self.offset


@dataclass
class ProbeResult:
    """One variable's probe, raw vs reconstructed held-out images.

    Attributes:
        kind: ``"continuous"`` (scored by ``mae``) or ``"categorical"`` (scored by ``accuracy``).
        raw, recon: the score on the raw and on the reconstructed held-out images.
        baseline: the score of a constant guess: the training mean (MAE) or the majority class (accuracy).
        ratio: ``recon / raw`` for MAE (1 is perfect, > 1 lost signal); ``(1 - recon) / (1 - raw)``, the
            error-rate ratio, for accuracy (inf when raw is perfect and recon is not).
        features: the feature view chosen by leave-one-out error (`FEATURE_VIEWS`).
        penalty: the chosen ridge penalty (relative to the number of training images).
        train, test: images the probe was fitted and evaluated on.
        refit: the score of a probe refitted on the reconstructed training images (module docstring), on the
            reconstructed held-out images; None when no training reconstructions were given.
    """

    kind: str
    raw: float
    recon: float
    baseline: float
    features: str
    penalty: float
    train: int
    test: int
    refit: float | None = None

    def _ratio(self, score: float) -> float:
        if self.kind == "continuous":
            return score / self.raw if self.raw > 0 else (1.0 if score == 0 else math.inf)
        raw_error, error = 1.0 - self.raw, 1.0 - score
        return error / raw_error if raw_error > 0 else (1.0 if error == 0 else math.inf)

    @property
    def ratio(self) -> float:
        """The raw-fitted probe, reconstructed vs raw held-out images (the issue's figure of merit)."""
        return self._ratio(self.recon)

    @property
    def refit_ratio(self) -> float | None:
        """The refitted probe's score on reconstructions vs the raw probe's on raw images (None: no refit)."""
        return None if self.refit is None else self._ratio(self.refit)

    @property
    def metric(self) -> str:
        return "mae" if self.kind == "continuous" else "accuracy"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``<metric>_raw``, ``<metric>_recon``, ``<metric>_baseline``, ``ratio``,
        ``<metric>_refit`` and ``refit_ratio`` (None without a refit; an infinite ratio is None too), and the rest."""
        out = asdict(self)
        for key in ("raw", "recon", "baseline", "refit"):
            out[f"{self.metric}_{key}"] = out.pop(key)
        out["ratio"] = self.ratio if math.isfinite(self.ratio) else None
        refit = self.refit_ratio
        out["refit_ratio"] = refit if refit is not None and math.isfinite(refit) else None
        return out


def _present(values: Sequence[Any]) -> list[int]:
    return [i for i, v in enumerate(values) if v is not None and not (isinstance(v, float) and math.isnan(v))]


def signal_probe(train_images: torch.Tensor, train_values: dict[str, Sequence[Any]], test_images: torch.Tensor,
                 test_recon: torch.Tensor, test_values: dict[str, Sequence[Any]], *,
                 categorical: Sequence[str] = (), grid: Sequence[int] | int = 6,
                 views: Sequence[str] = FEATURE_VIEWS,
                 train_recon: torch.Tensor | None = None) -> dict[str, ProbeResult]:
    """Probe every variable of ``train_values``: fitted on raw training images, scored raw vs reconstructed;
    and, given ``train_recon``, refitted on reconstructions (module docstring).

    Args:
        train_images: (N, C, *shape) raw training images, values in [0, 1].
        train_values: variable -> N raw values (floats, or labels for a categorical variable; None or NaN
            where missing — those images are left out for that variable).
        test_images, test_recon: (M, C, *shape) raw held-out images and their reconstructions.
        test_values: variable -> M raw values, the same variables as ``train_values``.
        categorical: the variables scored as classes; every other one is regressed as a number.
        grid: the pooled feature grid (`pooled_features`).
        views: the feature views to choose from (`FEATURE_VIEWS`), by leave-one-out error.
        train_recon: (N, C, *shape) reconstructions of ``train_images``, or None (no refitted probe).

    Returns:
        variable -> `ProbeResult`; a variable with fewer than 3 training values or no held-out value is
        left out.

    Raises:
        InputError: reconstructions whose shape differs from their images', or an unknown view.
    """
    if test_images.shape != test_recon.shape:
        raise InputError(f"test_recon has shape {tuple(test_recon.shape)} but test_images "
                         f"{tuple(test_images.shape)}; give one reconstruction per held-out image")
    if train_recon is not None and train_recon.shape != train_images.shape:
        raise InputError(f"train_recon has shape {tuple(train_recon.shape)} but train_images "
                         f"{tuple(train_images.shape)}; give one reconstruction per training image")
    unknown = [v for v in views if v not in FEATURE_VIEWS]
    if unknown or not views:
        raise InputError(f"unknown probe feature views {unknown or list(views)}; "
                         f"choose from {', '.join(FEATURE_VIEWS)}")
    features = {view: [_features(x, view, grid) for x in (train_images, test_images, test_recon)] for view in views}
    refit_features = None if train_recon is None else {view: _features(train_recon, view, grid) for view in views}
    results = {}
    for name, values in train_values.items():
        if name not in test_values:
            raise InputError(f"test_values has no {name!r}; give the held-out values of every probed variable")
        fit_rows, test_rows = _present(values), _present(test_values[name])
        if len(fit_rows) < 3 or not test_rows:
            continue
        y_train, y_test = [values[i] for i in fit_rows], [test_values[name][i] for i in test_rows]
        if name in categorical:
            labels = sorted({str(v) for v in y_train})
            index = {label: k for k, label in enumerate(labels)}
            target = torch.nn.functional.one_hot(torch.tensor([index[str(v)] for v in y_train]), len(labels))
            truth = [str(v) for v in y_test]
            majority = max(labels, key=lambda label: sum(str(v) == label for v in y_train))
            baseline = sum(t == majority for t in truth) / len(truth)

            def score(probe: RidgeProbe, x: torch.Tensor) -> float:
                guess = probe.predict(x[test_rows]).argmax(1).tolist()  # (M,)
                return sum(labels[g] == t for g, t in zip(guess, truth)) / len(truth)
        else:
            target = torch.tensor([float(v) for v in y_train], dtype=torch.float64)  # (N,)
            truth_values = torch.tensor([float(v) for v in y_test], dtype=torch.float64)  # (M,)
            baseline = (target.mean() - truth_values).abs().mean().item()

            def score(probe: RidgeProbe, x: torch.Tensor) -> float:
                return (probe.predict(x[test_rows])[:, 0] - truth_values).abs().mean().item()

        fitted = {view: RidgeProbe().fit(features[view][0][fit_rows], target) for view in views}
        view = min(views, key=lambda v: fitted[v].loo_error)
        probe, (_, raw_x, recon_x) = fitted[view], features[view]
        refit = None
        if refit_features is not None:  # view and penalty chosen by the same rule, on the reconstructions
            refitted = {v: RidgeProbe().fit(refit_features[v][fit_rows], target) for v in views}
            best = min(views, key=lambda v: refitted[v].loo_error)
            refit = score(refitted[best], features[best][2])
        results[name] = ProbeResult("categorical" if name in categorical else "continuous", score(probe, raw_x),
                                    score(probe, recon_x), baseline, view, probe.penalty, len(fit_rows),
                                    len(test_rows), refit)
    return results
