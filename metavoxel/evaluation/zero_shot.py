"""The MetaVoxel paper's zero-shot protocol on a test set: one joint model, many questions.

Roles name the model's image, continuous (e.g. age) and categorical (e.g. sex) variables. With the test
records' raw values in hand, each question is one call of the RePaint sampler with a different subset of
variables fixed:

- regression (paper Table 1): the continuous variable sampled S times with the image and the categorical
  variable fixed; prediction = mean of the samples;
- classification (Table 1): the categorical variable sampled with the image and the continuous one fixed;
  prediction = majority of the samples, probabilities = sample frequencies;
- flexible conditioning (Table 2): the continuous variable under (I, C), (I), (C) and (∅), against the
  training-set population mean, each with MAE ± SD and the mean sample variance;
- likelihood classification: `metavoxel.diffusion.class_scores`, temperature fitted on validation records.

Samples are returned alongside the metrics so that subsets (e.g. the first 1 or 3 of 10 samples, which
are independent draws) give the sample-count ablation without sampling again.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metavoxel.diffusion import JointModel, class_probabilities, class_scores, fit_temperature
from metavoxel.errors import InputError, did_you_mean
from metavoxel.variables.capabilities import HasCategories
from metavoxel.variables.protocol import SpatialHead
from metavoxel.evaluation.scalar_metrics import classification_metrics, regression_metrics

__all__ = ["CONDITIONING_SETS", "CalibrationWarning", "Roles", "categorical_truth", "conditioning_table", "likelihood_classification",
           "sample_variable"]

#: The search interval of the likelihood classifier's temperature (`fit_temperature`'s defaults).
TEMPERATURE_LIMITS = (1e-3, 1e5)


class CalibrationWarning(UserWarning):
    """The likelihood classifier's temperature could not be fitted (it ran to a limit of its search)."""


#: Table 2's conditioning sets, named by what is given: I = image, C = the categorical variable (sex).
CONDITIONING_SETS = ("I,C", "I", "C", "none")


@dataclass(frozen=True)
class Roles:
    """Which variable of the model plays which part in the protocol."""

    image: str = "image"
    continuous: str = "age"
    categorical: str = "sex"

    def check(self, model: JointModel) -> Roles:
        """Each role names a variable of the model of the right sort (an image; a continuous scalar; a second
        scalar, categorical or continuous), and no variable plays two roles; InputError (one line) otherwise."""
        for role, name in (("image", self.image), ("continuous", self.continuous), ("categorical", self.categorical)):
            if name not in model.variables:
                hint = did_you_mean(name, model.variables)
                raise InputError(f"the {role} variable {name!r} is not in this model{hint} ({', '.join(model.variables)}); "
                                 f"name it with --{role}")
        images = [n for n, v in model.variables.items() if isinstance(v.head, SpatialHead)]
        scalars = [n for n in model.variables if n not in images]
        if self.image not in images:
            raise InputError(f"--image {self.image!r} is not an image variable; choose one of {', '.join(images) or 'none'}")
        continuous = [n for n in scalars if not isinstance(model.variables[n], HasCategories)]
        if self.continuous not in continuous:
            raise InputError(f"--continuous {self.continuous!r} is not a continuous variable; choose one of "
                             f"{', '.join(continuous) or 'none'}")
        if self.categorical not in scalars or self.categorical == self.continuous:
            others = [n for n in scalars if n != self.continuous]
            raise InputError(f"--categorical {self.categorical!r} must be a scalar variable other than the continuous "
                             f"one ({self.continuous}); choose one of {', '.join(others) or 'none'}")
        return self

    def given(self, conditioning: str) -> list[str]:
        """Variables fixed under a Table 2 conditioning set (see `CONDITIONING_SETS`)."""
        return {"I,C": [self.image, self.categorical], "I": [self.image], "C": [self.categorical], "none": []}[conditioning]


@dataclass
class Sampled:
    """S samples per subject of one variable (N, S), and the seconds the sampling took."""

    samples: torch.Tensor
    seconds: float


def sample_variable(model: JointModel, test: Mapping[str, Any], target: str, given: list[str], *, num_samples: int,
                    steps: int | None = None, seed: int = 0, batch_size: int | None = None, precision: str = "fp32",
                    progress: Callable[[int, int], None] | None = None,
                    seeds: Sequence[int] | None = None, grid: str | None = None) -> Sampled:
    """``target`` sampled ``num_samples`` times per test record with ``given`` fixed: (N, S) values.

    ``seeds`` (one per record, e.g. `metavoxel.data.records.subject_seed`) make each record's samples
    independent of the others and of ``batch_size``; without them one generator seeded by ``seed`` serves all.
    ``grid``: the sampling grid's spacing (default: the model's).
    """
    start = time.perf_counter()
    n = len(test[target]) if target in test else len(next(iter(test.values())))
    fix = {name: test[name] for name in given}
    result = model.sample(fix=fix or None, num_subjects=None if fix else n, num_samples=num_samples, steps=steps,
                          seed=seed, batch_size=batch_size, precision=precision, progress=progress, seeds=seeds,
                          grid=grid)
    samples = result.samples[target]
    return Sampled(samples.reshape(samples.shape[0], samples.shape[1]), time.perf_counter() - start)


def continuous_truth(name: str, raw: Any) -> torch.Tensor:
    """Raw continuous values -> (N,) float64; InputError (one line) when a record has none."""
    missing = sum(1 for v in raw if v is None or (isinstance(v, float) and math.isnan(v)))
    if missing:
        raise InputError(f"{name}: {missing} test record(s) have no value; evaluation needs every record's truth — "
                         "drop them from the test set")
    return torch.as_tensor([float(v) for v in raw], dtype=torch.float64)


def categorical_truth(model: JointModel, name: str, raw: Any) -> torch.Tensor:
    """Raw category labels -> class indices (N,), through the variable's own parser."""
    values, present = model.variables[name].values(raw, "cpu")
    if not bool(present.all()):
        raise InputError(f"{name}: {int((~present).sum())} test record(s) have no value; evaluation needs every "
                         "record's truth — drop them from the test set")
    return values.long().reshape(-1)


def conditioning_table(model: JointModel, test: Mapping[str, Any], roles: Roles, population_mean: float, *,
                       num_samples: int, steps: int | None = None, seed: int = 0, batch_size: int | None = None,
                       precision: str = "fp32", progress: Callable[[str, int, int], None] | None = None,
                       reuse: Mapping[str, Sampled] | None = None, seeds: Sequence[int] | None = None,
                       grid: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Sampled]]:
    """Paper Table 2: the continuous variable predicted under each conditioning set, plus the population mean.

    Args:
        population_mean: the training-set mean of the continuous variable (the trivial predictor).
        reuse: already drawn samples per conditioning set (e.g. the Table 1 regression for ``"I,C"``).

    Returns:
        (rows, samples): one row per conditioning set with ``given``, ``mae``, ``mae_sd``,
        ``mean_sample_variance``, ``coverage`` and its real level ``coverage_level``, ``crps``,
        ``spread_skill``, ``seconds``; then the population-mean row.
    """
    truth = torch.as_tensor(test[roles.continuous], dtype=torch.float64)
    tick = progress or (lambda phase, done, total: None)
    rows, drawn = [], dict(reuse or {})
    for conditioning in CONDITIONING_SETS:
        if conditioning not in drawn:
            drawn[conditioning] = sample_variable(
                model, test, roles.continuous, roles.given(conditioning), num_samples=num_samples, steps=steps,
                seed=seed, batch_size=batch_size, precision=precision, seeds=seeds, grid=grid,
                progress=lambda d, t, c=conditioning: tick(f"{roles.continuous} | {c}", d, t))
        sampled = drawn[conditioning]
        metrics = regression_metrics(sampled.samples[:, :num_samples], truth)
        rows.append({"given": conditioning, **_pick(metrics), "seconds": sampled.seconds})
    constant = torch.full((len(truth), 1), float(population_mean), dtype=torch.float64)
    metrics = regression_metrics(constant, truth)
    rows.append({"given": "population mean", **_pick(metrics), "mean_sample_variance": 0.0, "seconds": 0.0})
    return rows, drawn


def _pick(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("mae", "mae_sd", "mean_sample_variance", "coverage", "coverage_level", "crps",
                                    "spread_skill")}


def likelihood_classification(model: JointModel, test: Mapping[str, Any], val: Mapping[str, Any], target: str,
                              given: list[str], *, timesteps: int = 25, seed: int = 0, batch_size: int = 64,
                              progress: Callable[[int, int], None] | None = None,
                              seeds: Sequence[int] | None = None,
                              val_seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Classify ``target`` by likelihood on ``test``; the temperature is fitted on ``val``.

    ``seeds``/``val_seeds``: one per record of ``test``/``val`` (see `class_scores`).

    Returns the `classification_metrics` of the calibrated probabilities, plus ``temperature``,
    ``seconds`` (test scoring only) and ``probs`` (N, K).
    """
    classes = list(model.variables[target].categories)
    val_scores = class_scores(model, {g: val[g] for g in given}, target, timesteps=timesteps, seed=seed,
                              batch_size=batch_size, seeds=val_seeds)
    val_truth = categorical_truth(model, target, val[target])
    tau = fit_temperature(val_scores, val_truth, lo=TEMPERATURE_LIMITS[0], hi=TEMPERATURE_LIMITS[1])
    at_limit = _warn_at_limit(tau, val_truth, classes, target)
    start = time.perf_counter()
    scores = class_scores(model, {g: test[g] for g in given}, target, timesteps=timesteps, seed=seed,
                          batch_size=batch_size, progress=progress, seeds=seeds)
    seconds = time.perf_counter() - start
    probs = class_probabilities(scores, tau)
    metrics = classification_metrics(categorical_truth(model, target, test[target]), probs=probs, classes=classes)
    return {**metrics, "temperature": tau, "temperature_at_limit": at_limit, "seconds": seconds, "probs": probs}


def _warn_at_limit(tau: float, truth: torch.Tensor, classes: list[str], target: str) -> bool:
    """Warn (one line) when τ sits at a limit of its search: the validation records did not determine it."""
    lo, hi = TEMPERATURE_LIMITS
    if not (abs(math.log(tau / lo)) < 0.01 or abs(math.log(hi / tau)) < 0.01):
        return False
    present = sorted({classes[int(k)] for k in truth})
    if len(present) == 1:
        why, fix = (f"the validation split has {len(truth)} record(s), all of class {present[0]}",
                    "use a validation split holding every class")
    else:
        why, fix = (f"the {len(truth)} validation record(s) of classes {', '.join(present)} do not determine it",
                    "use more validation records, or a model whose class scores separate them")
    warnings.warn(f"likelihood classification of {target}: the temperature ran to its limit τ = {tau:.3g} ({why}), "
                  f"so its probabilities are not calibrated; {fix}", CalibrationWarning, stacklevel=2)
    return True
