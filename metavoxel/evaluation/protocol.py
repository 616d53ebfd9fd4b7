"""Evaluate one trained model on held-out records: the questions of the MetaVoxel paper's Tables 1 and 2.

`evaluate_model` runs, for a joint model (image + continuous + categorical variable):

- regression: the continuous variable from image + categorical (MAE ± SD of the mean of S samples,
  mean sample variance); the spread of its samples judged by the rank (PIT) histogram, CRPS, the
  spread-skill ratio and interval coverage next to the level the interval really has at S
  (`metavoxel.evaluation.uncertainty`; coverage of a 90% interval needs S >= 19, so 20 is asked for);
- classification: the categorical variable from image + continuous (majority-vote accuracy; probability
  accuracy, AUROC and ECE of the sample frequencies); optionally by likelihood (deterministic, calibrated);
- flexible conditioning (Table 2): the continuous variable under (I, C), (I), (C), (∅) and the
  population mean;
- point prediction (``method="point"``, beside sampling): the regression and classification questions
  answered in at most 5 network calls per subject (`metavoxel.JointModel.point_predict`, renoise-and-read;
  a model trained with clean subsets), with their seconds per subject;
- generation: unconditional images against the real held-out images (3-plane FID/MMD with a named
  feature network, MS-SSIM diversity);
- conditional fidelity: images generated for the held-out records' (continuous, categorical) values, read
  back by task-specific baselines (`Readers`), error between requested and recovered values.

A "continuous-sex" model (the categorical role played by a continuous scalar) is classified by
thresholding its samples at the midpoint of its declared range (`metavoxel.HasValueRange`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metavoxel.data.records import subject_seed
from metavoxel.diffusion import JointModel
from metavoxel.errors import InputError
from metavoxel.evaluation.image_metrics import fid_mmd_3plane, ms_ssim_diversity
from metavoxel.evaluation.scalar_metrics import classification_metrics, regression_metrics, sample_frequencies
from metavoxel.evaluation.uncertainty import uncertainty_metrics
from metavoxel.seeds import check_seed
from metavoxel.evaluation.zero_shot import (Roles, categorical_truth, conditioning_table, continuous_truth,
                                            likelihood_classification, sample_variable)
from metavoxel.variables.capabilities import HasCategories, HasValueRange

__all__ = ["METHODS", "EvaluationOptions", "Readers", "binary_classes", "check_point", "class_samples", "class_truth",
           "conditional_fidelity", "evaluate_generation", "evaluate_model", "point_prediction"]

#: How `evaluate_model` answers the regression and classification questions: by sampling, or by sampling and
#: point prediction side by side.
METHODS = ("sample", "point")

Progress = Callable[[str, int, int], None]


@dataclass
class EvaluationOptions:
    """How much sampling the evaluation spends.

    Attributes:
        num_samples: S samples per subject for regression and classification (paper: 3; coverage of a 90%
            interval needs at least 19, see `metavoxel.evaluation.uncertainty`).
        steps: reverse steps (default: the model's).
        grid: the sampling grid's spacing, ``uniform`` or ``quadratic`` (default: the model's
            ``diffusion.grid``; `metavoxel.diffusion.grid`).
        generate: unconditional images drawn for FID/MMD (default: as many as real images).
        likelihood_timesteps: timesteps of likelihood classification (0: skip it).
        table2: run the four conditioning sets of Table 2.
        typicality: the percentile of the validation split's typicality above which `metavoxel evaluate` flags
            a record (`metavoxel.evaluation.typicality`); None: no typicality.
        method: ``sample``, or ``point`` to add point predictions (`point_prediction`) beside sampling.
            ``num_samples`` and ``steps`` shape the sampled answers only (point prediction draws no samples
            and reads its own levels); ``seed``, ``batch_size`` and ``precision`` apply to both.
    """

    roles: Roles = field(default_factory=Roles)
    num_samples: int = 3
    steps: int | None = None
    grid: str | None = None
    seed: int = 0
    batch_size: int | None = 96
    precision: str = "fp32"
    generate: int | None = None
    likelihood_timesteps: int = 25
    table2: bool = True
    method: str = "sample"
    typicality: float | None = 99.0


@dataclass
class Readers:
    """Task-specific networks that read generated images back (conditional fidelity).

    ``continuous(images, categorical_index) -> values (N,)`` and
    ``categorical(images, continuous_values) -> probabilities (N, K)``; ``name`` goes into the report.
    """

    name: str
    continuous: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    categorical: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _threshold(model: JointModel, name: str) -> float:
    """The midpoint of a continuous variable's declared range, where it is cut into two classes."""
    var = model.variables[name]
    if not isinstance(var, HasValueRange):
        raise InputError(f"the categorical role {name!r} ({var.kind}) has neither categories nor a declared value "
                         f"range; name a categorical variable with --categorical")
    lo, hi = var.value_range
    return (lo + hi) / 2


def binary_classes(model: JointModel, name: str) -> list[str]:
    """Class names of the categorical role: the variable's categories, or two levels cut at its range's midpoint."""
    var = model.variables[name]
    if isinstance(var, HasCategories):
        return list(var.categories)
    cut = _threshold(model, name)
    return [f"{name}<{cut:g}", f"{name}>={cut:g}"]


def class_truth(model: JointModel, name: str, raw: Any) -> torch.Tensor:
    """(N,) class indices of raw values: categories, or a continuous value cut at its range's midpoint."""
    if isinstance(model.variables[name], HasCategories):
        return categorical_truth(model, name, raw)
    return (torch.as_tensor(raw, dtype=torch.float64) >= _threshold(model, name)).long()


def class_samples(model: JointModel, name: str, samples: torch.Tensor) -> torch.Tensor:
    """(N, S) class indices of sampled values, as `class_truth`."""
    if isinstance(model.variables[name], HasCategories):
        return samples.long()
    return (samples.double() >= _threshold(model, name)).long()


def evaluate_model(model: JointModel, test: Mapping[str, Any], *, val: Mapping[str, Any] | None = None,
                   population_mean: float, options: EvaluationOptions | None = None, features=None,
                   readers: Readers | None = None, progress: Progress | None = None,
                   subjects: Sequence[tuple[str, str | None] | tuple[str, str | None, str | None]] | None = None,
                   val_subjects: Sequence[tuple[str, str | None] | tuple[str, str | None, str | None]] | None = None
                   ) -> dict[str, Any]:
    """Every question of the protocol on ``test`` (raw values per variable, images as (N, 1, *shape) tensors).

    Args:
        val: validation records, for the likelihood classifier's temperature (skipped without them).
        population_mean: training-set mean of the continuous variable.
        features: a `metavoxel.evaluation.features.FeatureNetwork` for FID/MMD (skipped when None).
        readers: baselines for conditional fidelity (skipped when None).
        subjects, val_subjects: (subject, session) of each test / validation record, or (subject, session,
            record) to tell several runs of one session apart (`metavoxel.data.records.record_keys`): every
            record then draws from its own generator (`metavoxel.data.records.subject_seed`), so its answers
            do not depend on which other records are evaluated beside it or on ``options.batch_size``. Without
            them one generator seeded by ``options.seed`` serves the whole set.

    Returns:
        A JSON-ready dict of metrics, plus ``"samples"``: the raw draws (tensors) for figures (``regression``
        (N, S), ``classification`` (N, S), ``table2`` {conditioning set: (N, S)}, ``likelihood_probs`` (N, K)).
    """
    options = options or EvaluationOptions()
    roles = options.roles.check(model)
    check_method(model, options.method)
    check_seed(options.seed)
    tick = progress or (lambda phase, done, total: None)
    n = len(test[roles.continuous])
    seeds = _seeds(subjects, options.seed)
    run = dict(num_samples=options.num_samples, steps=options.steps, grid=options.grid, seed=options.seed,
               batch_size=options.batch_size, precision=options.precision, seeds=seeds)
    out: dict[str, Any] = {"n_test": n, "num_samples": options.num_samples,
                           "steps": options.steps or model.spec.diffusion.sampling_steps,
                           "grid": options.grid or model.spec.diffusion.grid, "samples": {}}
    truth_c = continuous_truth(roles.continuous, test[roles.continuous])
    classes = binary_classes(model, roles.categorical)
    truth_k = class_truth(model, roles.categorical, test[roles.categorical])

    reg = sample_variable(model, test, roles.continuous, [roles.image, roles.categorical], **run,
                          progress=lambda d, t: tick(f"{roles.continuous} | image, {roles.categorical}", d, t))
    out["regression"] = {**regression_metrics(reg.samples, truth_c), "seconds_per_subject": reg.seconds / n}
    out["uncertainty"] = uncertainty_metrics(reg.samples, truth_c, seed=options.seed)
    out["samples"]["regression"] = reg.samples

    cls = sample_variable(model, test, roles.categorical, [roles.image, roles.continuous], **run,
                          progress=lambda d, t: tick(f"{roles.categorical} | image, {roles.continuous}", d, t))
    votes = class_samples(model, roles.categorical, cls.samples)
    out["classification"] = {**classification_metrics(truth_k, samples=votes, probs=sample_frequencies(votes, len(classes)),
                                                      classes=classes), "seconds_per_subject": cls.seconds / n}
    out["samples"]["classification"] = votes
    if options.method == "point":
        point = point_prediction(model, test, roles, seed=options.seed, batch_size=options.batch_size, seeds=seeds,
                                 precision=options.precision)
        out["samples"]["point"] = {"continuous": point.pop("continuous"), "probs": point.pop("probs")}
        out["point"] = point

    if options.table2:
        rows, drawn = conditioning_table(model, test, roles, population_mean, **run, progress=tick,
                                         reuse={"I,C": reg})
        out["table2"], out["population_mean"] = rows, float(population_mean)
        out["samples"]["table2"] = {given: sampled.samples for given, sampled in drawn.items()}
    if options.likelihood_timesteps and val is not None and isinstance(model.variables[roles.categorical], HasCategories):
        given = [roles.image, roles.continuous]
        result = likelihood_classification(model, test, val, roles.categorical, given,
                                           timesteps=options.likelihood_timesteps, seed=options.seed,
                                           seeds=seeds, val_seeds=_seeds(val_subjects, options.seed),
                                           progress=lambda d, t: tick("likelihood", d, t))
        out["samples"]["likelihood_probs"] = result.pop("probs")
        out["likelihood"] = {**result, "seconds_per_subject": result["seconds"] / n}
    if features is not None:
        out["generation"] = evaluate_generation(model, test[roles.image], features, options, progress=tick)
    if readers is not None:
        out["conditional_fidelity"] = conditional_fidelity(model, test, roles, readers, options, progress=tick,
                                                           seeds=_seeds(subjects, options.seed + 2))
    return out


def _seeds(subjects: Sequence[tuple] | None, seed: int) -> list[int] | None:
    """Per-record seeds of (subject, session[, record]) keys under ``seed``, or None without subjects."""
    return None if subjects is None else [subject_seed(seed, *key) for key in subjects]


def check_point(model: JointModel) -> None:
    """Raise a one-line InputError unless ``model`` was trained with clean subsets (what point prediction reads)."""
    if model.spec.diffusion.training.clean <= 0:
        raise InputError("point prediction needs a model trained with clean subsets (diffusion.training.clean > 0), "
                         "this one was not; evaluate by sampling (drop --method point) or retrain")


def check_method(model: JointModel, method: str) -> None:
    """Raise a one-line InputError for an unknown ``method``, or ``point`` on a model that cannot answer it."""
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "point":
        check_point(model)


def point_prediction(model: JointModel, test: Mapping[str, Any], roles: Roles, *, seed: int = 0,
                     batch_size: int | None = None, seeds: Sequence[int] | None = None,
                     precision: str = "fp32") -> dict[str, Any]:
    """The regression and classification questions answered by point prediction instead of sampling.

    ``roles.continuous`` from image + categorical: its posterior mean; ``roles.categorical`` from image +
    continuous: its class probabilities (a D3PM kind), or, for a continuous variable in the categorical
    role, its posterior mean cut at the midpoint of its declared range (`class_truth`'s rule). Each answer
    costs at most 5 network calls per subject (`metavoxel.diffusion.point`, its default plan).

    Args:
        test: raw values per variable, images as (N, C, *shape) tensors.
        seed: RNG seed of the prior draws and the re-noising.
        batch_size: rows per network call (default all at once).
        seeds: one per record (`subject_seed`): each record's draws from its own generator, instead of ``seed``.
        precision: ``fp32``, or ``bf16`` network autocast.

    Returns:
        ``regression`` (`regression_metrics` of the means as one sample each, + ``seconds_per_subject``),
        ``classification`` (`classification_metrics` of the probabilities, + ``seconds_per_subject``),
        ``draws``, ``levels``, ``calls_per_subject``, and the tensors ``continuous`` (N,) and ``probs`` (N, K).

    Raises:
        InputError: a model trained without clean subsets (`check_point`), or a role whose kind point
            prediction cannot read (neither Gaussian nor D3PM).
    """
    check_point(model)
    n = len(test[roles.continuous])
    truth_c = continuous_truth(roles.continuous, test[roles.continuous])
    start = time.perf_counter()
    reg = model.point_predict({g: test[g] for g in roles.given("I,C")}, roles.continuous, seed=seed,
                              batch_size=batch_size, seeds=seeds, precision=precision)
    seconds_reg = time.perf_counter() - start
    means = reg.mean[roles.continuous].reshape(n).double()  # (N,)
    start = time.perf_counter()
    cls = model.point_predict({roles.image: test[roles.image], roles.continuous: test[roles.continuous]},
                              roles.categorical, seed=seed, batch_size=batch_size, seeds=seeds, precision=precision)
    seconds_cls = time.perf_counter() - start
    classes = binary_classes(model, roles.categorical)
    truth_k = class_truth(model, roles.categorical, test[roles.categorical])
    if roles.categorical in cls.probs:
        probs = cls.probs[roles.categorical].double()  # (N, K)
        classification = classification_metrics(truth_k, probs=probs, classes=classes)
    else:  # a continuous variable in the categorical role: its mean, cut into two classes
        votes = class_samples(model, roles.categorical, cls.mean[roles.categorical].reshape(n, 1))  # (N, 1)
        classification = classification_metrics(truth_k, samples=votes, classes=classes)
        probs = torch.nn.functional.one_hot(votes[:, 0], len(classes)).double()  # (N, K)
    regression = regression_metrics(means[:, None], truth_c)
    regression = {k: regression[k] for k in ("mae", "mae_sd", "rmse", "bias", "pearson_r")}  # no spread
    return {"regression": {**regression, "seconds_per_subject": seconds_reg / n},
            "classification": {**classification, "seconds_per_subject": seconds_cls / n},
            "levels": list(reg.levels), "draws": list(reg.draws), "calls_per_subject": reg.calls_per_subject,
            "continuous": means, "probs": probs}


def evaluate_generation(model: JointModel, real: torch.Tensor, features, options: EvaluationOptions, *,
                        image: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Unconditional images vs ``real`` (N, 1, *shape): 3-plane FID/MMD, MS-SSIM diversity, seconds per image."""
    tick = progress or (lambda phase, done, total: None)
    image = image or model.spatial[0]
    count = options.generate or len(real)
    start = time.perf_counter()
    result = model.sample(num_subjects=count, steps=options.steps, grid=options.grid, seed=options.seed + 1,
                          batch_size=options.batch_size, precision=options.precision,
                          progress=lambda d, t: tick("unconditional images", d, t))
    seconds = time.perf_counter() - start
    fake = result.samples[image][:, 0].float()
    scores = fid_mmd_3plane(real.float(), fake, features)
    return {**scores, "ms_ssim_diversity": ms_ssim_diversity(fake, seed=options.seed),
            "ms_ssim_real": ms_ssim_diversity(real.float(), seed=options.seed), "seconds_per_image": seconds / count,
            "images": fake}


def conditional_fidelity(model: JointModel, test: Mapping[str, Any], roles: Roles, readers: Readers,
                         options: EvaluationOptions, *, progress: Progress | None = None,
                         seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Generate images for the test records' (continuous, categorical) values; read them back with baselines.

    ``seeds``: one per record (each record's image from its own generator), else ``options.seed + 2``."""
    tick = progress or (lambda phase, done, total: None)
    fix = {roles.continuous: test[roles.continuous], roles.categorical: test[roles.categorical]}
    result = model.sample(fix=fix, steps=options.steps, grid=options.grid, seed=options.seed + 2,
                          batch_size=options.batch_size,
                          precision=options.precision, seeds=seeds, progress=lambda d, t: tick("conditional images", d, t))
    images = result.samples[roles.image][:, 0].float()
    wanted_c = torch.as_tensor(test[roles.continuous], dtype=torch.float64)
    wanted_k = class_truth(model, roles.categorical, test[roles.categorical])
    recovered_c = readers.continuous(images, wanted_k).double()
    probs = readers.categorical(images, wanted_c.float())
    errors = (recovered_c - wanted_c).abs()
    return {"reader": readers.name, "continuous_mae": float(errors.mean()), "continuous_mae_sd": float(errors.std()),
            "continuous_r": float(torch.corrcoef(torch.stack([recovered_c, wanted_c]))[0, 1]),
            "categorical_accuracy": float((probs.argmax(dim=1) == wanted_k).double().mean())}
