"""`check_run`: metadata that disagrees with its own image, one row per record of a table.

The commonest errors in a cohort table are swapped labels and typos. A joint model can check a row against its
own scan: each given scalar value v of a record is compared with what the model predicts for it from the rest of
the record (its image and its other values):

- a categorical value c is flagged when its posterior probability p(v = c | rest) is below ``min_probability``
  (default 0.05), read by point prediction (`metavoxel.JointModel.point_predict`: at most 5 network calls per
  record and variable; a model trained with clean subsets);
- a continuous value y is flagged when it lies outside the central ``level`` (default 99%) of what the model
  predicts for it, by one of two methods (``method``):

  ``point`` (the default): the point prediction ŷ (5 calls) against what the validation split's records of value y
  give, N(a + b·y, σ²), with a, b and σ the run's bias correction of the point prediction
  (`metavoxel.evaluation.brain_age.BiasCorrection`, fitted on the validation split)::

      z = (ŷ - (a + b·y)) / σ,     flagged when |z| > Φ⁻¹((1 + level)/2)   (2.576 at 99%)

  i.e. the bias-corrected brain-PAD in units of its validation spread (the normal shape is an approximation);

  ``sample``: the record's own predictive, S samples of v given the rest (`metavoxel.JointModel.sample`, seeded per
  record as `predict` seeds them; S × steps network calls per record, 16 × 25 = 400 by default), read as a normal
  whose mean and SD are estimated from the samples: t = (m - y)/(s·√(1 + 1/S)), flagged when
  P(|T_{S-1}| > |t|) < 1 - level (`metavoxel.evaluation.predictive_check`). Needs no calibration.

  A value outside the model's declared range is refused when the table is read, naming its row (or clipped, with
  ``data.out_of_range: clip``), as by every command that reads a table.

Both are checks of plausibility, not proofs of error: at the default thresholds about 1% (continuous) of correct
values are flagged, and what is found is what the model can read from the image (docs/trust.md).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist

from metavoxel.data import CohortWarning, DataSpec, read_cohort
from metavoxel.data.identity import cohort_files
from metavoxel.data.records import record_keys, subject_seed
from metavoxel.diffusion.options import PointOptions, SamplingOptions
from metavoxel.errors import InputError, OptionError, did_you_mean
from metavoxel.evaluation.predictive_check import MIN_SAMPLES, sampled_check
from metavoxel.io.atomic import write_text
from metavoxel.io.outputs import check_outputs
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.capabilities import HasCategories, HasValueRange
from metavoxel.variables.protocol import ScalarHead, SpatialHead
from metavoxel.workflows.calibrate import load_calibration
from metavoxel.workflows.predict import predict_output

__all__ = ["CHECK_FILE", "CHECK_METHODS", "CHECK_SAMPLES", "CHECK_STEPS", "check_run"]

#: The file `check` writes in an ``--out`` folder.
CHECK_FILE = "checks.tsv"

#: How a continuous value is checked: against the point prediction's validation fit, or against its own samples.
CHECK_METHODS = ("point", "sample")
#: The sampled check's defaults: S samples of S × steps network calls per record and variable.
CHECK_SAMPLES, CHECK_STEPS = 16, 25


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def check_run(run_dir: str | Path, data: str | Path, out: str | Path, *, variables: Sequence[str] | None = None,
              min_probability: float = 0.05, level: float = 0.99, method: str = "point",
              num_samples: int = CHECK_SAMPLES, steps: int | None = CHECK_STEPS, seed: int | None = None,
              batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
              report: Callable[[str], None] | None = None) -> tuple[Path, int]:
    """Check every given scalar value of every record against its image (module docstring); write a TSV.

    Columns: ``participant_id``, ``session``, ``source``, then per checked variable v: ``v`` (the given value),
    ``v_predicted`` (the point prediction, the samples' mean, or the likeliest class), then for a categorical v
    ``v_p`` (p(v = given | rest)), for a continuous v checked by ``point`` ``v_z`` (z above), by ``sample``
    ``v_sd`` (the samples' SD), ``v_z`` (t above: positive when the model's answer is above the given value) and
    ``v_centile`` (the given value's centile among the samples); then ``v_flag`` (``yes``/``no``; ``n/a`` when the
    record gives no v or no image), and ``flags``: the flagged variables, comma-separated, or ``none``.

    Args:
        variables: the scalar variables to check (default: every scalar variable of the model in the table).
        min_probability: flag a categorical value whose posterior probability is below this, in (0, 1).
        level: flag a continuous value outside this central fraction, in (0, 1).
        method: how continuous values are checked, ``point`` or ``sample`` (`CHECK_METHODS`; categorical values
            are always read by point prediction).
        num_samples, steps: the ``sample`` method's samples per record (>= 3) and reverse steps (None: the
            spec's); ignored by ``point``.
        seed: the seed (default: the model's); each record draws from its own generator (`subject_seed`).
        batch_size: records per network call.
        report: receives one line per continuous variable left unchecked (by default, those the run has no
            point bias correction for, with ``point``; its cells are n/a).

    Returns:
        (the path written, the number of records with at least one flag).

    Raises:
        InputError: a bad variable, threshold, method, sample count, table or ``out``; a table where no record has
            an image, or none with an image gives a value to check (nothing would be checked); a continuous
            variable named in ``variables`` that the run has no point bias correction for (``point``; `metavoxel
            calibrate`).
        OptionError: a model trained without clean subsets asked for a point prediction (categorical values, or
            ``point``); a bad ``steps``.
    """
    if not 0.0 < min_probability < 1.0:
        raise InputError(f"--min-probability must be in (0, 1), got {min_probability}")
    if not 0.0 < level < 1.0:
        raise InputError(f"--level must be in (0, 1), got {level}; e.g. 0.99")
    if variables is not None and not list(variables):
        raise InputError("--variables names no variable; name the scalar variables to check (comma-separated, e.g. "
                         "--variables age,sex), or leave --variables out to check every one in the table")
    if method not in CHECK_METHODS:
        raise InputError(f"--method must be one of {', '.join(CHECK_METHODS)}, got {method!r}")
    sampled = method == "sample"
    if sampled and (isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < MIN_SAMPLES):
        raise InputError(f"--num-samples must be an integer >= {MIN_SAMPLES} (a spread is estimated from the samples), "
                         f"got {num_samples!r}")
    sampling = SamplingOptions(num_samples=num_samples, steps=steps) if sampled else None
    out = predict_output(out, CHECK_FILE, "the checks")
    check_outputs([*run_inputs(run_dir), ("--data", data)], files=[("--out", out)])
    model = load_run(run_dir)
    scalars = [n for n, v in model.variables.items() if isinstance(v.head, ScalarHead)]
    images = [n for n, v in model.variables.items() if isinstance(v.head, SpatialHead)]
    with warnings.catch_warnings(record=True) as caught:  # said once the table is known to be checkable
        warnings.filterwarnings("ignore", message=r".*no image; (each|it) is predicted", category=CohortWarning)
        cohort = read_cohort(data, model.variables, model.spec.data or DataSpec(), use="predict")
    check_outputs(cohort_files(cohort), files=[("--out", out)])
    batch = cohort.batch()
    chosen = [n for n in scalars if n in batch] if variables is None else list(variables)
    for name in chosen:
        if name not in scalars:
            raise InputError(f"--variables: {name!r} is not a scalar variable of this model"
                             f"{did_you_mean(name, scalars)}; choose among {', '.join(scalars)}")
        if name not in batch:
            raise InputError(f"--variables: {name!r} is not a column of {data}; nothing to check")
    if not chosen:
        raise InputError(f"{data} holds none of the model's scalar variables ({', '.join(scalars)}); nothing to check")
    imaged = [i for i in range(len(cohort)) if any(_given(batch[g][i]) for g in images if g in batch)]
    if not imaged:  # a table whose image column is missing or misnamed: refused, not an all-n/a "0 flagged"
        raise InputError(f"{data}: no record has an image ({', '.join(images)}), and each value is checked against "
                         "its record's own image; add the image column (or name it in the spec's data.columns)")
    if not any(_given(batch[name][i]) for name in chosen for i in imaged):
        raise InputError(f"{data}: no record with an image gives a value of {', '.join(chosen)}; nothing to check")
    for shown in caught:
        warnings.warn_explicit(shown.message, shown.category, shown.filename, shown.lineno)
    if len(imaged) < len(cohort) and report is not None:
        report(f"note: {len(cohort) - len(imaged)} of {len(cohort)} records have no image and are not checked "
               "(their cells are n/a)")
    pointed = [n for n in chosen if not sampled or isinstance(model.variables[n], HasCategories)]
    if pointed and model.diffusion.mixture.clean <= 0:
        raise OptionError(f"checking {', '.join(pointed)} reads point predictions, which need a model trained with "
                          "clean subsets (diffusion.training.clean > 0); this one was not"
                          + ("" if sampled else "; check continuous values with --method sample"), "method")
    calibration = load_calibration(run_dir) if not sampled else None
    corrections, unchecked = {}, []
    for name in chosen:
        if isinstance(model.variables[name], HasCategories) or sampled:
            continue
        fit = calibration.correction(name, "point") if calibration is not None else None
        if fit is None or not math.isfinite(fit.residual_sd) or fit.residual_sd <= 0:
            why = (f"checking {name} needs the run's bias correction of its point prediction (calibration.json, "
                   f"fitted on at least 3 validation records); run `metavoxel calibrate --model {run_dir}`, or check "
                   f"it with --method sample")
            if variables is not None:
                raise InputError(why)
            unchecked.append(name)
            if report is not None:
                report(f"note: {name} is not checked: {why}")
            continue
        corrections[name] = fit
    z_limit = NormalDist().inv_cdf((1 + level) / 2)
    seed = model.spec.seed if seed is None else seed
    records = list(cohort.records)
    keys = record_keys(records)
    widths = {name: 6 if sampled and not isinstance(model.variables[name], HasCategories) else 4 for name in chosen}
    cells: dict[str, list[list[str]]] = {name: [["n/a"] * widths[name] for _ in records] for name in chosen}
    flags: list[list[str]] = [[] for _ in records]
    todo = [(name, i) for name in chosen if name not in unchecked for i in imaged if _given(batch[name][i])]
    done = 0
    for name in chosen:
        var = model.variables[name]
        rows = [i for n, i in todo if n == name]
        for i in [i for i in range(len(records)) if _given(batch[name][i])]:
            cells[name][i][0] = str(batch[name][i])
        patterns: dict[tuple[bool, ...], list[int]] = {}
        others = [g for g in model.variables if g != name and g in batch]
        for i in rows:
            patterns.setdefault(tuple(_given(batch[g][i]) for g in others), []).append(i)
        for pattern, group in patterns.items():
            given = [g for g, on in zip(others, pattern) if on]
            for start in range(0, len(group), max(1, batch_size)):
                chunk = group[start:start + max(1, batch_size)]
                fix = {g: [batch[g][i] for i in chunk] for g in given}
                seeds = [subject_seed(seed, *keys[i]) for i in chunk]
                bounds = var.value_range if isinstance(var, HasValueRange) else None
                if isinstance(var, HasCategories):
                    point = model.point_predict(fix, name, options=PointOptions(seeds=seeds, batch_size=batch_size))
                    values, _present = var.values([batch[name][i] for i in chunk], "cpu")
                    probs = point.probs[name]  # (b, K)
                    for j, i in enumerate(chunk):
                        p = float(probs[j, int(values[j])])
                        best = var.format(probs[j:j + 1].argmax(dim=1))
                        flagged = p < min_probability
                        cells[name][i][1:] = [str(best[0] if isinstance(best, list) else best), f"{p:.4f}",
                                              "yes" if flagged else "no"]
                        if flagged:
                            flags[i].append(name)
                elif sampled:
                    result = model.sample(fix=fix, options=sampling.replace(
                        seeds=seeds, batch_size=max(1, batch_size) * num_samples))
                    draws = result.samples[name].double().reshape(len(chunk), num_samples)  # (b, S)
                    given_values = [float(batch[name][i]) for i in chunk]
                    check = sampled_check(draws, given_values, level)
                    for j, i in enumerate(chunk):
                        outside = bounds is not None and not bounds[0] <= given_values[j] <= bounds[1]
                        flagged = bool(check.flagged[j]) or outside
                        cells[name][i][1:] = [f"{check.mean[j]:.4f}", f"{check.sd[j]:.4f}", f"{check.t[j]:.3f}",
                                              f"{check.centile[j]:.2f}", "yes" if flagged else "no"]
                        if flagged:
                            flags[i].append(name)
                else:
                    fit = corrections[name]
                    point = model.point_predict(fix, name, options=PointOptions(seeds=seeds, batch_size=batch_size))
                    predicted = point.mean[name].double().reshape(-1)
                    for j, i in enumerate(chunk):
                        value = float(batch[name][i])
                        z = (float(predicted[j]) - (fit.intercept + fit.slope * value)) / fit.residual_sd
                        outside = bounds is not None and not bounds[0] <= value <= bounds[1]
                        flagged = abs(z) > z_limit or outside
                        cells[name][i][1:] = [f"{float(predicted[j]):.4f}", f"{z:.3f}", "yes" if flagged else "no"]
                        if flagged:
                            flags[i].append(name)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(todo))
    header = ["participant_id", "session", "source"]
    for name in chosen:
        if isinstance(model.variables[name], HasCategories):
            scores = ["p"]
        else:
            scores = ["sd", "z", "centile"] if sampled else ["z"]
        header += [name, f"{name}_predicted", *(f"{name}_{s}" for s in scores), f"{name}_flag"]
    header.append("flags")
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    for i, record in enumerate(records):
        image = next((record.values[g] for g in images if record.values.get(g) is not None), None)
        row = [record.subject, record.session or "n/a", str(image) if image is not None else record.source]
        for name in chosen:
            row += cells[name][i]
        writer.writerow(row + [",".join(flags[i]) or "none"])
    return write_text(out, text.getvalue()), sum(1 for f in flags if f)
