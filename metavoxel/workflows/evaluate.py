"""`evaluate_run`: the paper's evaluation of a trained run on its held-out split (or any cohort).

Writes ``metrics.json``, ``report.md`` and figures (PNG + PDF: predicted vs true, reliability diagram,
rank histogram, Table 2 panels, real and generated brains; see `write_figures`) to ``out`` as one whole: into
a staging folder that replaces ``out`` when complete (`metavoxel.io.staging`).

A cohort that is not the run's — subjects the run's splits.json does not list, or whose data differ from the
fingerprints it records (`metavoxel.data.splits.foreign_cohort`), even when the subject ids are the same — is
evaluated as ``--split all``, with the run's own training mean (recorded in train.json) as Table 2's trivial
predictor, and one `EvaluationWarning` says so.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metavoxel.data import Cohort, DataSpec, load_splits, read_cohort
from metavoxel.data.identity import cohort_files
from metavoxel.data.records import record_keys
from metavoxel.data.splits import foreign_cohort
from metavoxel.diffusion import JointModel
from metavoxel.errors import InputError
from metavoxel.evaluation.typicality import check_threshold
from metavoxel.io.atomic import write_json, write_text
from metavoxel.io.outputs import check_outputs
from metavoxel.io.staging import check_replaceable, staged_folder
from metavoxel.variables.capabilities import HasCategories, HasValueRange, OwnsFrozenEncoder

# what `evaluate` writes into its --out folder besides metrics.json: an earlier output holds nothing else
EVALUATION_FILES = ("report.md", "*.png", "*.pdf", "*.svg")

__all__ = ["EVALUATION_FILES", "EvaluationWarning", "evaluate_run", "json_ready", "population_mean", "records",
           "split_indices", "write_figures"]


class EvaluationWarning(UserWarning):
    """Part of an evaluation was skipped or stood in for (e.g. likelihood classification without validation records)."""


def records(model: JointModel, cohort: Cohort, indices: list[int], image: str) -> dict[str, Any]:
    """Raw values of the chosen records, with the image read and preprocessed once into (N, C, *shape)."""
    batch = cohort.select(indices).batch()
    if image in batch:
        values, present = model.variables[image].values(batch[image], "cpu")
        if not bool(present.all()):
            raise InputError(f"{int((~present).sum())} evaluated record(s) have no {image}; drop them from the cohort")
        batch[image] = values
    return batch


def _check_roles(cohort: Cohort, roles, data: str | Path) -> None:
    """Every variable the evaluation reads (its image, continuous and categorical roles) must be a column of the
    cohort: the evaluation needs each record's truth. InputError naming the missing ones and the options."""
    flags = {"--image": roles.image, "--continuous": roles.continuous, "--categorical": roles.categorical}
    missing = [f"{name!r} ({flag})" for flag, name in flags.items() if name not in cohort.variables]
    if missing:
        raise InputError(f"--data {data} has no column for {', '.join(missing)}; the evaluation reads every record's "
                         "image, continuous and categorical value: add the column (or name it in the spec's "
                         "data.columns), or choose other variables with those options")


def split_indices(run_dir: Path, cohort: Cohort, split: str) -> dict[str, list[int]]:
    """The run's splits (splits.json) with ``split`` checked non-empty; for ``all``, every record is "test"."""
    if split == "all":
        return {"test": list(range(len(cohort)))}
    if not (run_dir / "splits.json").is_file():
        raise InputError(f"--split {split!r}: {run_dir} has no splits.json, so its {split} split is not known; "
                         "evaluate every record of --data with --split all")
    splits = load_splits(run_dir / "splits.json", cohort)
    if split not in splits or not splits[split]:
        raise InputError(f"--split {split!r}: the run's splits.json has no records there "
                         f"(it has {', '.join(k for k, v in splits.items() if v)}); use --split all for another cohort")
    return {**splits, "test": splits[split]}


def population_mean(run_dir: Path, cohort: Cohort, splits: Mapping[str, list[int]], split: str, name: str, *,
                    own: bool = True) -> tuple[float, str]:
    """The trivial predictor of Table 2: ``(mean of variable name, where that mean comes from)``.

    The run's training split when it has records in ``cohort`` (with ``split="all"`` when ``cohort`` is the
    run's own, ``own``, and its splits.json covers it); else the training split's mean the run recorded in
    train.json; else (a run trained before it was recorded) the evaluated records' own mean, said so.
    """
    train = splits.get("train") if own else None
    if split == "all" and own:
        try:
            train = load_splits(run_dir / "splits.json", cohort).get("train")
        except InputError:  # no splits.json, or it does not cover this cohort
            train = None
    if train:
        values = np.asarray(cohort.select(train).batch()[name], dtype=float)
        return float(np.nanmean(values)), "the run's training split"
    recorded = _recorded_mean(run_dir, name)
    if recorded is not None:
        return recorded, "the run's training split (its mean, recorded in train.json)"
    values = np.asarray(cohort.select(splits["test"]).batch()[name], dtype=float)
    return float(np.nanmean(values)), "the evaluated records (the run's training split is not in --data)"


def _recorded_mean(run_dir: Path, name: str) -> float | None:
    """The training split's mean of ``name`` that `metavoxel train` records in train.json (None if absent)."""
    try:
        value = json.loads((run_dir / "train.json").read_text(encoding="utf-8")).get("train_means", {}).get(name)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def json_ready(value: Any) -> Any:
    """Metrics without tensors or mappings of tensors (raw draws stay in memory for figures); NaN becomes null."""
    def tensors(v: Any) -> bool:
        return isinstance(v, torch.Tensor) or (isinstance(v, Mapping) and bool(v) and all(map(tensors, v.values())))

    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items() if not tensors(v)}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def evaluate_run(run_dir: str | Path, data: str | Path, out: str | Path, *, split: str = "test",
                 roles=None, options=None, features: str | None = "vae", regressor: Path | None = None,
                 classifier: Path | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate a run directory on ``data`` and write the report to ``out``; returns the metrics.

    With ``options.method == "point"`` the report adds point predictions (`metavoxel.evaluation.protocol.
    point_prediction`) beside the sampled answers; a model trained without clean subsets is refused
    (InputError) before the cohort is read.

    Table 2's population mean is the training split's (`population_mean`: from ``data`` when the run's training
    split is in it, else as the run recorded it in train.json; the evaluated records' own, said so in the report
    and an `EvaluationWarning`, for a run that recorded none). ``data`` that is not the run's cohort (see the
    module docstring) is evaluated as ``split="all"``, said once in an `EvaluationWarning`. Likelihood
    classification needs validation records for its temperature; without them (``split="all"``, or a run
    with an empty validation split) it is skipped with an `EvaluationWarning`.

    Raises:
        InputError: a bad option or cohort, or an ``out`` that is a file, another folder, or holds an input (the
            run's files, the cohort's files, a baseline or feature-network file); all before any evaluation.
    """
    from metavoxel.diffusion.grid import check_grid
    from metavoxel.evaluation import EvaluationOptions, Roles, evaluate_model, feature_network, readers_from_baselines
    from metavoxel.evaluation.protocol import check_method
    from metavoxel.evaluation.report import model_report
    from metavoxel.runs import load_run, run_inputs

    run_dir, out = Path(run_dir), Path(out)
    check_replaceable(out, marker="metrics.json", command="metavoxel evaluate", owned=EVALUATION_FILES)
    model = load_run(run_dir)
    roles = (roles or Roles()).check(model)
    options = options or EvaluationOptions()
    options = dataclasses.replace(options, roles=roles)
    check_threshold(options.typicality)
    check_method(model, options.method)  # before the cohort is read: a model that cannot answer fails at once
    check_grid(options.grid)
    with warnings.catch_warnings(record=True) as caught:  # said after the roles' columns are found, or not at all
        cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    _check_roles(cohort, roles, data)
    for shown in caught:
        warnings.warn_explicit(shown.message, shown.category, shown.filename, shown.lineno)
    weights = [("--features", features.split(":", 1)[1])] if features and ":" in features else []
    check_outputs([*run_inputs(run_dir), *cohort_files(cohort), ("--regressor", regressor),
                   ("--classifier", classifier), *weights], folders=[("--out", out)])
    foreign = foreign_cohort(run_dir / "splits.json", cohort) if (run_dir / "splits.json").is_file() else None
    asked, split = split, ("all" if foreign else split)
    splits = split_indices(run_dir, cohort, split)
    test = records(model, cohort, splits["test"], roles.image)
    val = records(model, cohort, splits["val"], roles.image) if splits.get("val") else None
    mean, mean_from = population_mean(run_dir, cohort, splits, split, roles.continuous, own=not foreign)
    baseline = f"Table 2's population mean of {roles.continuous} is {mean_from}"
    if foreign:  # said once: which data, why, how it is evaluated and against which baseline
        evaluated = f"--split {asked} is evaluated as --split all (every record)" if asked != "all" else \
            "every record is evaluated (--split all)"
        warnings.warn(f"--data {data} is not the cohort this run was trained on ({foreign}); {evaluated}, and "
                      f"{baseline}", EvaluationWarning, stacklevel=2)
    elif not mean_from.startswith("the run's training"):
        warnings.warn(f"the population mean of {roles.continuous} (Table 2's trivial predictor) is {mean_from}",
                      EvaluationWarning, stacklevel=2)
    if options.likelihood_timesteps and val is None and isinstance(model.variables[roles.categorical], HasCategories):
        why = ("the run's validation records are not in --data" if foreign else "--split all evaluates every record"
               if split == "all" else "the run's splits.json has no val records")
        fix = ("pass --likelihood-timesteps 0" if foreign else
               "evaluate --split test for it, or pass --likelihood-timesteps 0")
        warnings.warn(f"likelihood classification of {roles.categorical} is skipped: it needs validation records to "
                      f"fit its temperature on, and {why}; {fix}", EvaluationWarning, stacklevel=2)
    net = None
    if features:
        image = model.variables[roles.image]
        net = feature_network(features, vae=image.vae if isinstance(image, OwnsFrozenEncoder) else None)
    readers = None
    if regressor is not None or classifier is not None:
        if regressor is None or classifier is None:
            raise InputError("conditional fidelity needs both --regressor and --classifier baseline directories")
        var, cat = model.variables[roles.continuous], model.variables[roles.categorical]
        if not isinstance(var, HasValueRange) or not isinstance(cat, HasCategories):
            raise InputError(f"conditional fidelity needs a continuous variable with a declared range and a "
                             f"categorical one with categories; got {roles.continuous!r} ({var.kind}) and "
                             f"{roles.categorical!r} ({cat.kind}); drop --regressor/--classifier")
        readers = readers_from_baselines(regressor, classifier, continuous_range=tuple(var.value_range),
                                         num_classes=len(cat.categories))
    keys = record_keys(cohort.records)  # several runs of one subject and session are told apart
    ids = lambda indices: [keys[i] for i in indices]  # noqa: E731
    evaluation = evaluate_model(model, test, val=val, population_mean=mean, options=options,
                                features=net, readers=readers, progress=progress, subjects=ids(splits["test"]),
                                val_subjects=ids(splits["val"]) if val is not None else None)
    _trust(evaluation, run_dir, model, test, roles, ids(splits["test"]), options)
    if "table2" in evaluation:
        evaluation["population_mean_from"] = mean_from
    evaluation["split"] = split
    if foreign:
        evaluation["foreign_cohort"] = foreign
    command = "metavoxel " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    metrics = {"run": str(run_dir), "data": str(data), "split": split, **json_ready(evaluation)}
    with staged_folder(out) as staging:  # swapped in for out once every file is written
        write_json(staging / "metrics.json", metrics)
        figures = write_figures(staging, evaluation, test, roles, model)
        write_text(staging / "report.md", model_report(evaluation, title=f"Evaluation of {run_dir}", command=command,
                                                       roles={"continuous": roles.continuous,
                                                              "categorical": roles.categorical},
                                                       figures=[f.name for f in figures]) + "\n")
    return metrics


def _trust(evaluation: dict[str, Any], run_dir: Path, model: JointModel, test: Mapping[str, Any], roles,
           keys: list[tuple], options) -> None:
    """Add ``brain_age`` (MAE, r, R², corr(PAD, truth) before and after the run's bias correction) and ``typicality``
    (each evaluated record's percentile; one `TypicalityWarning` per flagged record) to ``evaluation``."""
    from metavoxel.evaluation.brain_age import brain_age_metrics
    from metavoxel.evaluation.typicality import DEFAULT_THRESHOLD
    from metavoxel.workflows.trust import linear_target, trust_for

    threshold = getattr(options, "typicality", DEFAULT_THRESHOLD)
    given = [roles.image, roles.categorical]
    linear = linear_target(model.variables[roles.continuous])
    trust = trust_for(run_dir, model, roles.continuous, given=given, has_truth=linear, threshold=threshold,
                      report=lambda line: evaluation.__setitem__("trust_note", line))
    if linear:
        predicted = evaluation["samples"]["regression"].double().mean(dim=1)
        evaluation["brain_age"] = brain_age_metrics(predicted, np.asarray(test[roles.continuous], dtype=float),
                                                    trust.correction)
    if trust.reference is None or threshold is None:
        return
    names = [n for n in model.variables if n in test]
    labels = [f"{s}" + (f" session {ses}" if ses else "") for s, ses, *_ in keys]
    results = trust.typicality(model, {n: test[n] for n in names}, labels)
    flagged = sum(r.flagged for r in results)
    evaluation["typicality"] = {"threshold": threshold, "given": ",".join(names), "n": len(results),
                                "flagged": flagged, "flag_rate": flagged / max(1, len(results)),
                                "calls_per_record": 2 * trust.reference.levels,
                                "records": [{"record": label, **r.to_dict()} for label, r in zip(labels, results)]}


def write_figures(out: Path, evaluation: Mapping[str, Any], test: Mapping[str, Any], roles, model: JointModel,
                  extra_scatter: Mapping[str, np.ndarray] | None = None,
                  extra_calibration: Mapping[str, Any] | None = None, brains: bool = True) -> list[Path]:
    """The report's figures, each a PNG with a PDF beside it; returns the written paths.

    ``<continuous>_scatter``: predicted (mean of the samples; and the point prediction when evaluated) vs
    true, one colour per model, MAE in the legend; ``<categorical>_calibration``: reliability diagram with
    bin counts (and the point prediction's probabilities when evaluated); ``<continuous>_rank``: the
    rank (PIT) histogram of the truth among the samples; ``<continuous>_table2``: one panel per
    conditioning set (when the evaluation ran Table 2); ``samples``: real and generated images as
    orthogonal planes.

    Args:
        extra_scatter: other models' predictions (N,) of the continuous variable, by name.
        extra_calibration: other models' calibration curves (see `calibration_curve`), by name.
        brains: draw ``samples`` (False when the caller draws its own brain views).
    """
    from metavoxel.evaluation.protocol import binary_classes, class_truth
    from metavoxel.evaluation.scalar_metrics import calibration_curve, sample_frequencies
    from metavoxel.figures import (BrainImage, brain_views, conditioning_panels, predicted_vs_true, rank_histogram,
                                   reliability_diagram)
    from metavoxel.workflows.previews import UNITS, grid_affine

    c, k = roles.continuous, roles.categorical
    var = model.variables[c]
    unit = _spec_unit(model, c)
    limits = tuple(var.value_range) if isinstance(var, HasValueRange) else None
    truth = np.asarray(test[c], dtype=float)
    draws = evaluation["samples"]["regression"].double().numpy()  # (N, S)
    series = {"MetaVoxel": (truth, draws.mean(axis=1))}
    if "point" in evaluation["samples"]:
        series["MetaVoxel, point prediction"] = (truth, evaluation["samples"]["point"]["continuous"].numpy())
    series.update({name: (truth, np.asarray(v, dtype=float)) for name, v in (extra_scatter or {}).items()})
    files = predicted_vs_true(out / f"{c}_scatter.png", series, name=c, unit=unit, limits=limits,
                              title=f"{c} from image + {k}")
    files += rank_histogram(out / f"{c}_rank.png", draws, truth, name=c, title=f"rank of the true {c} among "
                            f"the samples ({c} | image, {k})")
    if "table2" in evaluation["samples"]:
        sets = {key: v.double().numpy() for key, v in evaluation["samples"]["table2"].items()}  # (N, S) each
        files += conditioning_panels(out / f"{c}_table2.png", sets, truth, name=c, categorical=k, unit=unit,
                                     limits=limits, population_mean=evaluation.get("population_mean"))

    truth_k = class_truth(model, k, test[k])
    votes = evaluation["samples"]["classification"]
    classes = len(binary_classes(model, k))
    curves = {"MetaVoxel, sample frequencies": calibration_curve(truth_k, sample_frequencies(votes, classes).double())}
    if "point" in evaluation["samples"]:
        curves["MetaVoxel, point prediction"] = calibration_curve(truth_k, evaluation["samples"]["point"]["probs"])
    if "likelihood_probs" in evaluation["samples"]:
        curves["MetaVoxel, likelihood"] = calibration_curve(truth_k, evaluation["samples"]["likelihood_probs"])
    curves.update(extra_calibration or {})
    files += reliability_diagram(out / f"{k}_calibration.png", curves, name=k, min_confidence=1 / classes,
                                 title=f"{k} from image + {c}: reliability")

    if not brains:
        return files
    affine = grid_affine(model.variables[roles.image])
    rows = [[BrainImage(v[0], affine, f"real {i}") for i, v in enumerate(test[roles.image][:4])]]
    labels = ["real (held out)"]
    if "generation" in evaluation:
        generated = evaluation["generation"]["images"][:4]  # (4, C, *shape)
        rows.append([BrainImage(v[0], affine, f"generated {i}") for i, v in enumerate(generated)])
        labels.append("generated")
    files += brain_views(out / "samples.png", rows, row_labels=labels, units=UNITS,
                         title="held-out images and unconditional samples")
    return files


def _spec_unit(model: JointModel, name: str) -> str:
    """The unit the spec gives variable ``name`` (its optional ``unit`` field, e.g. ``years``), or ``""``.

    Read from the spec the run was built from, not probed on the variable: a unit is not a capability."""
    for v in model.spec.variables:
        if v.name == name:
            unit = v.model_dump().get("unit", "")
            return unit if isinstance(unit, str) else ""
    return ""
