"""`predict_run`: zero-shot prediction of one variable for every subject of a table or BIDS tree."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from metavoxel.data import DataSpec, read_cohort
from metavoxel.errors import InputError, PluginError, did_you_mean
from metavoxel.io.atomic import write_text
from metavoxel.runs import load_run
from metavoxel.variables.capabilities import HasCategories
from metavoxel.variables.protocol import ScalarHead
from metavoxel.variables.summaries import checked_summary, summary_cells

__all__ = ["predict_run"]


def predict_run(run_dir: str | Path, data: str | Path, target: str, out: str | Path, *,
                given: Sequence[str] | None = None, num_samples: int = 3, steps: int | None = None,
                seed: int | None = None, batch_size: int = 16, precision: str = "fp32",
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Predict ``target`` from the ``given`` variables (default: all others) for every record; write a TSV.

    The columns follow the target's summary (the contract in `metavoxel.variables.summaries`): its point
    estimate (``mean``/``median``/``majority``) as ``target``, ``probs`` as ``target_p_<class>``, any other
    entry ``k`` as ``target_k`` — for the built-in kinds ``target``, ``target_sd``, ``target_lower``,
    ``target_upper`` (90% interval), or ``target_p_<class>`` per class and the majority ``target``. The true
    value is added as ``target_true`` when the table has it. Nothing is written if any batch fails.

    Raises:
        InputError: an unknown or image target, unknown ``given`` variables, none of them in the table.
        PluginError: the target's kind returned a summary outside the contract.
    """
    model = load_run(run_dir)
    if target not in model.variables:
        raise InputError(f"--target {target!r} is not a variable of this model{did_you_mean(target, model.variables)}; "
                         f"choose one of {', '.join(model.variables)}")
    var = model.variables[target]
    if not isinstance(var.head, ScalarHead):
        raise InputError(f"--target {target!r} is an image; predict scalar variables, or use `metavoxel sample`")
    given = [g for g in model.variables if g != target] if not given else list(given)
    bad = sorted(set(given) - set(model.variables)) + ([target] if target in given else [])
    if bad:
        unknown = [b for b in bad if b not in model.variables]
        hint = did_you_mean(unknown[0], model.variables) if unknown else ""
        raise InputError(f"--given: {', '.join(bad)} cannot be given{hint}; choose among "
                         f"{', '.join(v for v in model.variables if v != target)}")
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    batch = cohort.batch()
    labels = list(var.categories) if isinstance(var, HasCategories) else None
    has_truth = target in batch
    columns: list[str] | None = None
    rows = []
    for start in range(0, len(cohort), batch_size):
        part = slice(start, start + batch_size)
        fix = {g: batch[g][part] for g in given if g in batch}
        if not fix:
            raise InputError(f"none of the given variables ({', '.join(given)}) is in {data}; check the columns")
        result = model.sample(fix=fix, num_samples=num_samples, steps=steps, seed=seed, precision=precision)
        summary = checked_summary(var, result.summary(target), len(cohort.records[part]))
        for i, record in enumerate(cohort.records[part]):
            row = [record.subject, record.session or "n/a", record.source]
            cells = summary_cells(summary, i, labels)
            names = [f"{target}_{suffix}" if suffix else target for suffix, _ in cells]
            if columns is None:
                columns = names
            elif names != columns:
                raise PluginError(f"{var.kind}: summarize gave the columns {names} for one batch and {columns} for "
                                  "another; a kind's summary keys must not depend on the samples")
            row += [f"{x:.4f}" if isinstance(x, float) else str(x) for _, x in cells]
            if has_truth:
                truth = batch[target][start + i]
                row += ["n/a" if truth is None or (isinstance(truth, float) and math.isnan(truth)) else str(truth)]
            rows.append(row)
        if progress is not None:
            progress(min(len(cohort), start + batch_size), len(cohort))
    header = ["participant_id", "session", "source", *(columns or [target])] + ([f"{target}_true"] if has_truth else [])
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(out, text.getvalue())
