"""`predict_run`: zero-shot prediction of one variable for every subject of a table or BIDS tree."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from metavoxel.data import DataSpec, read_cohort
from metavoxel.errors import InputError
from metavoxel.io.atomic import write_text
from metavoxel.training.checkpoint import load_run
from metavoxel.variables.protocol import ScalarHead

__all__ = ["predict_run"]


def predict_run(run_dir: str | Path, data: str | Path, target: str, out: str | Path, *,
                given: Sequence[str] | None = None, num_samples: int = 3, steps: int | None = None,
                seed: int | None = None, batch_size: int = 16, precision: str = "fp32",
                progress: Callable[[int, int], None] | None = None, method: str = "sample",
                conditioning: str | None = None, guidance: float = 0.0, draws: int = 4) -> Path:
    """Predict ``target`` from the ``given`` variables (default: all others) for every record; write a TSV.

    Continuous targets get ``target``, ``target_sd``, ``target_lower``, ``target_upper`` (90% interval);
    categorical ones a ``target_p_<class>`` column per class and the majority ``target``. The true value is
    added as ``target_true`` when the table has it.

    ``method="point"`` reads the posterior mean (or class probabilities) from the model's x0 prediction in
    ``draws`` prior-noise draws (`metavoxel.JointModel.point_predict`; a model trained with clean subsets):
    continuous targets then get ``target`` only (sd and interval are n/a). ``conditioning`` and ``guidance``
    apply to ``method="sample"``.
    """
    if method not in ("sample", "point"):
        raise InputError(f"--method must be sample or point, got {method!r}")
    model = load_run(run_dir)
    if target not in model.variables:
        raise InputError(f"--target {target!r} is not a variable of this model; choose one of {', '.join(model.variables)}")
    var = model.variables[target]
    if not isinstance(var.head, ScalarHead):
        raise InputError(f"--target {target!r} is an image; predict scalar variables, or use `metavoxel sample`")
    given = [g for g in model.variables if g != target] if not given else list(given)
    bad = sorted(set(given) - set(model.variables)) + ([target] if target in given else [])
    if bad:
        raise InputError(f"--given: {', '.join(bad)} cannot be given; choose among "
                         f"{', '.join(v for v in model.variables if v != target)}")
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    batch = cohort.batch()
    categories = getattr(var, "categories", None)
    header = ["participant_id", "session", "source"]
    header += [f"{target}_p_{c}" for c in categories] + [target] if categories else \
        [target, f"{target}_sd", f"{target}_lower", f"{target}_upper"]
    has_truth = target in batch
    header += [f"{target}_true"] if has_truth else []
    rows = []
    for start in range(0, len(cohort), batch_size):
        part = slice(start, start + batch_size)
        fix = {g: batch[g][part] for g in given if g in batch}
        if not fix:
            raise InputError(f"none of the given variables ({', '.join(given)}) is in {data}; check the columns")
        if method == "point":
            summary = _point_summary(model.point_predict(fix, target, draws=draws, seed=seed), target, var)
        else:
            result = model.sample(fix=fix, num_samples=num_samples, steps=steps, seed=seed, precision=precision,
                                  conditioning=conditioning, guidance=guidance)
            summary = result.summary(target)
        for i, record in enumerate(cohort.records[part]):
            row = [record.subject, record.session or "n/a", record.source]
            if categories:
                row += [f"{p:.4f}" for p in summary["probs"][i]] + [summary["majority"][i]]
            else:
                row += [f"{summary[k][i]:.4f}" if summary[k] is not None else "n/a"
                        for k in ("mean", "sd", "lower", "upper")]
            if has_truth:
                truth = batch[target][start + i]
                row += ["n/a" if truth is None or (isinstance(truth, float) and math.isnan(truth)) else str(truth)]
            rows.append(row)
        if progress is not None:
            progress(min(len(cohort), start + batch_size), len(cohort))
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(out, text.getvalue())


def _point_summary(point, target: str, var) -> dict:
    """A point prediction in the shape of a sample summary (no spread: sd and interval are None)."""
    if target in point.probs:
        probs = point.probs[target]
        return {"probs": probs.tolist(), "majority": var.format(probs.argmax(dim=1))}
    return {"mean": point.mean[target].tolist(), "sd": None, "lower": None, "upper": None}
