"""`check_run`: metadata that disagrees with its own image, one row per record of a table.

The commonest errors in a cohort table are swapped labels and typos. A joint model can check a row against its
own scan: each given scalar value v of a record is compared with what the model predicts for it from the rest of
the record (its image and its other values), by point prediction (`metavoxel.JointModel.point_predict`: at most 5
network calls per record and variable; a model trained with clean subsets):

- a categorical value c is flagged when its posterior probability p(v = c | rest) is below ``min_probability``
  (default 0.05);
- a continuous value y is flagged when the prediction ŷ lies outside the central ``level`` (default 99%) of what
  the validation split's records of value y give, N(a + b·y, σ²), with a, b and σ the run's bias correction
  of the point prediction (`metavoxel.evaluation.brain_age.BiasCorrection`, fitted on the validation split):

      z = (ŷ - (a + b·y)) / σ,     flagged when |z| > Φ⁻¹((1 + level)/2)   (2.576 at 99%)

  i.e. the bias-corrected brain-PAD in units of its validation spread. The normal shape is an approximation
  (the validation residuals are not checked for it); a value outside the model's declared range is flagged too.

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
from metavoxel.diffusion.options import PointOptions
from metavoxel.errors import InputError, OptionError, did_you_mean
from metavoxel.io.atomic import write_text
from metavoxel.io.outputs import check_outputs
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.capabilities import HasCategories, HasValueRange
from metavoxel.variables.protocol import ScalarHead, SpatialHead
from metavoxel.workflows.calibrate import load_calibration
from metavoxel.workflows.predict import predict_output

__all__ = ["check_run"]


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def check_run(run_dir: str | Path, data: str | Path, out: str | Path, *, variables: Sequence[str] | None = None,
              min_probability: float = 0.05, level: float = 0.99, seed: int | None = None, batch_size: int = 16,
              progress: Callable[[int, int], None] | None = None,
              report: Callable[[str], None] | None = None) -> tuple[Path, int]:
    """Check every given scalar value of every record against its image (module docstring); write a TSV.

    Columns: ``participant_id``, ``session``, ``source``, then per checked variable v: ``v`` (the given value),
    ``v_predicted`` (the point prediction, or the likeliest class), ``v_p`` (categorical: p(v = given | rest)) or
    ``v_z`` (continuous: z above), ``v_flag`` (``yes``/``no``; ``n/a`` when the record gives no v or no image),
    and ``flags``: the flagged variables, comma-separated, or ``none``.

    Args:
        variables: the scalar variables to check (default: every scalar variable of the model in the table).
        min_probability: flag a categorical value whose posterior probability is below this, in (0, 1).
        level: flag a continuous value outside this central fraction, in (0, 1).
        seed: point prediction's seed (default: the model's); each record draws from its own generator.
        report: receives one line per continuous variable left unchecked (by default, those the run has no
            point bias correction for; its cells are n/a).

    Returns:
        (the path written, the number of records with at least one flag).

    Raises:
        InputError: a bad variable, threshold, table or ``out``; a continuous variable named in ``variables`` that
            the run has no point bias correction for (`metavoxel calibrate`).
        OptionError: a model trained without clean subsets (point prediction needs them).
    """
    if not 0.0 < min_probability < 1.0:
        raise InputError(f"--min-probability must be in (0, 1), got {min_probability}")
    if not 0.0 < level < 1.0:
        raise InputError(f"--level must be in (0, 1), got {level}; e.g. 0.99")
    out = predict_output(out)
    check_outputs([*run_inputs(run_dir), ("--data", data)], files=[("--out", out)])
    model = load_run(run_dir)
    if model.diffusion.mixture.clean <= 0:
        raise OptionError("checking metadata reads point predictions, which need a model trained with clean subsets "
                          "(diffusion.training.clean > 0); this one was not", "method")
    scalars = [n for n, v in model.variables.items() if isinstance(v.head, ScalarHead)]
    images = [n for n, v in model.variables.items() if isinstance(v.head, SpatialHead)]
    with warnings.catch_warnings():
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
    calibration = load_calibration(run_dir)
    corrections, unchecked = {}, []
    for name in chosen:
        if isinstance(model.variables[name], HasCategories):
            continue
        fit = calibration.correction(name, "point") if calibration is not None else None
        if fit is None or not math.isfinite(fit.residual_sd) or fit.residual_sd <= 0:
            why = (f"checking {name} needs the run's bias correction of its point prediction (calibration.json, "
                   f"fitted on at least 3 validation records); run `metavoxel calibrate --model {run_dir}`")
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
    cells: dict[str, list[list[str]]] = {name: [["n/a"] * 4 for _ in records] for name in chosen}
    flags: list[list[str]] = [[] for _ in records]
    todo = [(name, i) for name in chosen if name not in unchecked for i in range(len(records))
            if _given(batch[name][i]) and any(_given(batch[g][i]) for g in images if g in batch)]
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
                point = model.point_predict(fix, name, options=PointOptions(
                    seeds=[subject_seed(seed, *keys[i]) for i in chunk], batch_size=batch_size))
                if isinstance(var, HasCategories):
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
                else:
                    fit = corrections[name]
                    predicted = point.mean[name].double().reshape(-1)
                    bounds = var.value_range if isinstance(var, HasValueRange) else None
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
        score = "p" if isinstance(model.variables[name], HasCategories) else "z"
        header += [name, f"{name}_predicted", f"{name}_{score}", f"{name}_flag"]
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
