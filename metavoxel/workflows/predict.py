"""`predict_run`: zero-shot prediction of one variable for every subject of a table or BIDS tree."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from metavoxel.data import CohortWarning, DataSpec, read_cohort
from metavoxel.data.records import record_keys, subject_seed, without_image_note
from metavoxel.diffusion.options import PointOptions, SamplingOptions
from metavoxel.diffusion.point import point_plan
from metavoxel.errors import InputError, PluginError, did_you_mean
from metavoxel.data.identity import cohort_files
from metavoxel.io.atomic import write_text
from metavoxel.io.outputs import check_outputs
from metavoxel.runs import load_run, run_inputs
from metavoxel.variables.capabilities import HasCategories
from metavoxel.variables.protocol import ScalarHead, SpatialHead
from metavoxel.variables.summary_contract import checked_summary, summary_cells
from metavoxel.evaluation.typicality import DEFAULT_THRESHOLD, check_threshold
from metavoxel.workflows.trust import linear_target, trust_for

__all__ = ["PREDICTIONS_FILE", "predict_output", "predict_run", "subject_seed"]

PREDICTIONS_FILE = "predictions.tsv"


def predict_output(out: str | Path, name: str = PREDICTIONS_FILE, what: str = "the predictions") -> Path:
    """The TSV file ``--out`` names: ``out`` itself, or ``out/NAME`` (``predictions.tsv``; `check` writes
    ``checks.tsv``) when ``out`` is an existing folder or ends with a path separator (``d/``). Checked before any
    work.

    Raises:
        InputError: the file's folder cannot be created or written, or the file name is taken by a folder.
    """
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / name
    if path.is_dir():
        raise InputError(f"--out {text!r}: expected a file to write {what} in, got the folder {str(path)!r}; "
                         "give another file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {text!r}: cannot write into {str(parent)!r} ("
                         f"{'not a folder' if not parent.is_dir() else 'no write permission'}); choose another --out")
    return path


def predict_run(run_dir: str | Path, data: str | Path, target: str, out: str | Path,
                options: SamplingOptions | PointOptions | None = None, *, given: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                typicality: float | None = DEFAULT_THRESHOLD, report: Callable[[str], None] | None = None) -> Path:
    """Predict ``target`` from the ``given`` variables (None: all others) for every record; write a TSV.

    The columns follow the target's summary (the contract in `metavoxel.variables.summary_contract`): its point
    estimate (``mean``/``median``/``majority``) as ``target``, ``probs`` as ``target_p_<class>``, any other
    entry ``k`` as ``target_k`` — for the built-in kinds ``target``, ``target_sd``, ``target_lower``,
    ``target_upper``, ``target_level`` (the level the interval really has at ``num_samples``: 0.5 from 3
    samples, 0.9 from 19; see `metavoxel.variables.summaries`) and ``target_num_samples``, or
    ``target_p_<class>`` per class and the majority ``target``. The true value is added as ``target_true`` when the table has it.
    ``source`` is the record's image file (the first given image variable's), else where the record came
    from (``test.tsv row 7``); ``session`` is ``n/a`` when the record has none. Nothing is written if any
    record fails.

    ``options`` says how: `SamplingOptions` (default: 3 samples per record) samples every record; `PointOptions`
    reads the posterior mean (or class probabilities) from the model's x0 prediction, renoise-and-read in at
    most 5 network calls per record (`metavoxel.JointModel.point_predict`; a model trained with clean subsets):
    continuous targets then get ``target`` only (no spread). `metavoxel.diffusion.options.request_options`
    builds either from a method's name and refuses what does not apply to it.

    Each record is sampled with its own generator, seeded by `subject_seed` from ``(seed, subject, session)``,
    so the same subject, seed and settings give the same answer whatever other rows the table holds and
    whatever ``batch_size`` is (`metavoxel.JointModel.sample` with ``seeds``). Several records of one subject
    and session (BIDS runs) add their image file to the seed (`record_keys`), so their draws differ.

    Brain-age outputs (`metavoxel.evaluation.brain_age`; docs/trust.md): for a continuous target with its true
    value in the table, ``brain_pad`` (predicted - true; ``<target>_difference`` for a target not named age),
    ``brain_pad_corrected`` and ``brain_age_corrected`` (the linear age-bias correction the run fitted on its
    validation split, `metavoxel.workflows.calibrate`; n/a without one) and, when sampling, ``age_centile``
    (the centile of the true value among the record's samples).

    Typicality (`metavoxel.evaluation.typicality`): with a threshold (default 99) and a calibrated run, every
    record gets ``typicality_percentile`` (its given values' denoising bound as a percentile of the validation
    split's, at most 10 network calls per record), ``image_percentile``/``metadata_percentile`` and
    ``atypical`` (the parts above the threshold, or ``none``); one `TypicalityWarning` per record above it.
    It never changes the answer. ``typicality=None`` switches it off. ``report`` receives one line when the run
    has no calibration.json (``metavoxel calibrate``), whose outputs are then n/a.

    Args:
        out: the TSV file, or a folder (existing, or written ``d/``) to write ``predictions.tsv`` in.
        options: its ``seed`` (default: the model's) seeds every record's own generator; its ``batch_size`` is
            rows per network call (default 16; whole records of ``num_samples`` rows each, at least one record).

    Returns:
        The path written.

    Raises:
        InputError: a bad target, given variable (an empty ``given`` too), table or ``out`` (``out`` may not be a
            file this call reads: the table, a file of the run, an image the table names) — all before any
            sampling.
        PluginError: the target's kind returned a summary outside the contract.
    """
    options = SamplingOptions(num_samples=3) if options is None else options
    check_threshold(typicality)
    point = isinstance(options, PointOptions)
    batch_size = 16 if options.batch_size is None else options.batch_size
    if given is not None and not list(given):
        raise InputError("--given names no variable; name the variables to condition on (comma-separated, e.g. "
                         "--given image,sex), or leave --given out to condition on all the others")
    out = predict_output(out)
    check_outputs([*run_inputs(run_dir), ("--data", data)], files=[("--out", out)])  # before loading anything
    model = load_run(run_dir)
    if target not in model.variables:
        raise InputError(f"--target {target!r} is not a variable of this model{did_you_mean(target, model.variables)}; "
                         f"choose one of {', '.join(model.variables)}")
    var = model.variables[target]
    if not isinstance(var.head, ScalarHead):
        raise InputError(f"--target {target!r} is an image; predict scalar variables, or use `metavoxel sample`")
    given = [g for g in model.variables if g != target] if given is None else list(given)
    bad = sorted(set(given) - set(model.variables)) + ([target] if target in given else [])
    if bad:
        unknown = [b for b in bad if b not in model.variables]
        hint = did_you_mean(unknown[0], model.variables) if unknown else ""
        raise InputError(f"--given: {', '.join(bad)} cannot be given{hint}; choose among "
                         f"{', '.join(v for v in model.variables if v != target)}")
    with warnings.catch_warnings():  # prediction warns below, for the image variables it is given
        warnings.filterwarnings("ignore", message=r".*no image; (each|it) is predicted", category=CohortWarning)
        cohort = read_cohort(data, model.variables, model.spec.data or DataSpec(), use="predict")
    check_outputs(cohort_files(cohort), files=[("--out", out)])  # nor over a file the table names
    batch = cohort.batch()
    present = [g for g in given if g in batch]
    if not present:
        raise InputError(f"none of the given variables ({', '.join(given)}) is in {data}; check the columns")
    images = [g for g in present if isinstance(model.variables[g].head, SpatialHead)]
    no_image = [r for r in cohort.records if images and all(r.values.get(g) is None for g in images)]
    if no_image:
        warnings.warn(f"{data}: {without_image_note(no_image, use='predict')}", CohortWarning, stacklevel=2)
    seed = model.spec.seed if options.seed is None else options.seed
    labels = list(var.categories) if isinstance(var, HasCategories) else None
    has_truth = target in batch
    columns: list[str] | None = None
    records = list(cohort.records)
    trust = trust_for(run_dir, model, target, method="point" if point else "sample", given=present,
                      has_truth=has_truth and linear_target(var), samples=not point,
                      threshold=typicality, report=report)
    keys = record_keys(records)
    # whole records per call: `batch_size` rows of `num_samples` samples (or of a point prediction's draws) each;
    # a call holds records that give the same variables, so which variables are free (and the conditioning a
    # spec's default falls back to) is each record's own, whatever the other rows
    rows_per_record = (max(point_plan(model.timesteps, options.levels, options.draws)[1]) if point
                       else options.num_samples)
    per_call = max(1, batch_size // rows_per_record)
    patterns: dict[tuple[bool, ...], list[int]] = {}
    for i in range(len(records)):
        patterns.setdefault(tuple(_given(batch[g][i]) for g in present), []).append(i)
    chunks = [group[k:k + per_call] for group in patterns.values() for k in range(0, len(group), per_call)]
    written: dict[int, list[str]] = {}
    done = 0
    for chunk in chunks:
        fix = {g: [batch[g][i] for i in chunk] for g in present}
        seeds = [subject_seed(seed, *keys[i]) for i in chunk]
        request = options.replace(seeds=seeds, batch_size=batch_size)
        samples = None
        if point:
            summary = _point_summary(model.point_predict(fix, target, options=request), target, var)
        else:
            result = model.sample(fix=fix, options=request)
            summary, samples = result.summary(target), result.samples[target]
        summary = checked_summary(var, summary, len(chunk))
        truths = [batch[target][i] for i in chunk] if has_truth else None
        extra = trust.cells(model, fix, summary, samples, truths, [_name(records[i], images) for i in chunk])
        for j, i in enumerate(chunk):
            record = records[i]
            image = next((record.values[g] for g in images if record.values.get(g) is not None), None)
            row = [record.subject, record.session or "n/a", str(image) if image is not None else record.source]
            cells = summary_cells(summary, j, labels)
            names = [f"{target}_{suffix}" if suffix else target for suffix, _ in cells]
            if columns is None:
                columns = names
            elif names != columns:
                raise PluginError(f"{var.kind}: summarize gave the columns {names} for one record and {columns} for "
                                  "another; a kind's summary keys must not depend on the samples")
            row += [f"{x:.4f}" if isinstance(x, float) else str(x) for _, x in cells]
            if has_truth:
                truth = batch[target][i]
                row += ["n/a" if truth is None or (isinstance(truth, float) and math.isnan(truth)) else str(truth)]
            written[i] = row + extra[j]
        done += len(chunk)
        if progress is not None:
            progress(done, len(records))
    rows = [written[i] for i in range(len(records))]  # the table's order
    for line in trust.notes() if report is not None else ():
        report(line)
    header = (["participant_id", "session", "source", *(columns or [target])] + ([f"{target}_true"] if has_truth else [])
              + trust.columns)
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(out, text.getvalue())


def _name(record, images: list[str]) -> str:
    """How a warning names a record: its subject (and session), and its image file or table row."""
    image = next((record.values[g] for g in images if record.values.get(g) is not None), None)
    session = f" session {record.session}" if record.session else ""
    return f"{record.subject}{session} ({image if image is not None else record.source})"


def _given(value) -> bool:
    """Whether a raw cell value is given (None and NaN are missing, as `known_values` reads them)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _point_summary(point, target: str, var) -> dict:
    """A point prediction as a summary under the contract: ``mean``, or ``probs`` and ``majority`` (no spread)."""
    if target in point.probs:
        probs = point.probs[target]
        return {"probs": probs.tolist(), "majority": var.format(probs.argmax(dim=1))}
    return {"mean": point.mean[target].tolist()}
