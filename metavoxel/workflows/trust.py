"""What `predict` and `sample` write beside each answer so it can be trusted: typicality and brain-age outputs.

`trust_for` reads the run's calibration once (`metavoxel.workflows.calibrate`) and gives a `RecordTrust` that
turns each batch of answered records into table cells (`RecordTrust.cells`) and JSON fields
(`RecordTrust.fields`), printing one `metavoxel.evaluation.typicality.TypicalityWarning` per atypical record.
The answer itself is never touched: the typicality score is computed beside it from the same given values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metavoxel.diffusion.typicality import typicality_terms
from metavoxel.evaluation.brain_age import BiasCorrection, difference_columns, true_centile
from metavoxel.evaluation.typicality import TypicalityReference, TypicalityResult, warn_atypical
from metavoxel.workflows.calibrate import linear_target, load_calibration

__all__ = ["TYPICALITY_COLUMNS", "RecordTrust", "linear_target", "trust_for"]

#: The typicality columns of `predict`'s table.
TYPICALITY_COLUMNS = ("typicality_percentile", "image_percentile", "metadata_percentile", "atypical")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


@dataclass
class RecordTrust:
    """The trust outputs of one request (see `trust_for`)."""

    target: str | None
    reference: TypicalityReference | None
    threshold: float | None
    correction: BiasCorrection | None
    brain_age: bool
    centile: bool
    columns: list[str] = field(default_factory=list)
    flagged: int = 0
    unscored: dict[str, list] = field(default_factory=dict)  # given -> [why its percentile is n/a, records]

    def typicality(self, model: Any, fix: Mapping[str, Any], names: Sequence[str],
                   masks: Mapping[str, Any] | None = None) -> list[TypicalityResult] | None:
        """Each record's `TypicalityResult` (warning for each flagged one), or None when switched off; ``masks``:
        image -> keep-mask, the image scored over the locations it keeps."""
        if self.threshold is None or self.reference is None:
            return None
        terms = typicality_terms(model, fix, levels=self.reference.levels, seed=self.reference.seed, masks=masks)
        results = self.reference.score(terms, threshold=self.threshold)
        self.flagged += warn_atypical(results, names, self.threshold)
        for r in results:
            why = None if math.isfinite(r.percentile) else self.reference.unscored(r.given)
            if why is not None:
                self.unscored.setdefault(r.given, [why, 0])[1] += 1
        return results

    def notes(self) -> list[str]:
        """One ``note:`` line per set of given variables whose records got no percentile, saying why."""
        return [f"note: typicality is n/a for {count} record(s): {why}" for why, count in self.unscored.values()]

    def cells(self, model: Any, fix: Mapping[str, Any], summary: Mapping[str, Any], samples: Any,
              truths: Sequence[Any] | None, names: Sequence[str]) -> list[list[str]]:
        """Per record the cells of `columns` (brain-age outputs, then typicality)."""
        n = len(names)
        rows: list[list[str]] = [[] for _ in range(n)]
        if self.brain_age and truths is not None:
            pred = np.asarray(summary["mean"], dtype=np.float64).reshape(n)
            truth = np.asarray([np.nan if _missing(t) else float(t) for t in truths], dtype=np.float64)
            pad = pred - truth
            corrected_pad = (self.correction.corrected_pad(pred, truth) if self.correction is not None
                             else np.full(n, np.nan))
            for i in range(n):
                rows[i] += [_cell(pad[i]), _cell(corrected_pad[i]), _cell(corrected_pad[i] + truth[i])]
            if self.centile:
                centile = true_centile(samples.double().reshape(n, -1), truth)
                for i in range(n):
                    rows[i].append(_cell(centile[i]))
        if self.threshold is not None:
            results = self.typicality(model, fix, names)
            for i in range(n):
                r = results[i] if results is not None else None
                rows[i] += ([_cell(r.percentile), _cell(r.parts.get("image", float("nan"))),
                             _cell(r.parts.get("metadata", float("nan"))),
                             ",".join(r.atypical) or ("none" if math.isfinite(r.percentile) else "n/a")]
                            if r is not None else ["n/a"] * 4)
        return rows


def trust_for(run_dir: str | Path, model: Any, target: str | None = None, *, method: str = "sample",
              given: Sequence[str] = (), has_truth: bool = False, samples: bool = True,
              threshold: float | None = 99.0, report: Callable[[str], None] | None = None) -> RecordTrust:
    """The trust outputs of a request on a run: which columns, with which calibration.

    Args:
        target: the predicted variable (None for `sample`).
        method: ``sample`` or ``point``: which bias correction applies.
        given: the variables the request gives; the correction applies when they are all the target's others.
        has_truth: the table holds the target's true value and the target is continuous: brain-age outputs.
        samples: the answer has samples (the centile of the truth needs them).
        threshold: the typicality flag's percentile; None switches typicality off.
        report: receives one line when the run has no calibration.json, or one of an earlier format (the outputs
            that need it are n/a).
    """
    calibration = load_calibration(run_dir) if (threshold is not None or has_truth) else None
    if calibration is not None and calibration.note and threshold is not None and report is not None:
        report(calibration.note)
    if calibration is None and (threshold is not None or has_truth):
        what = " and ".join(w for w, on in (("typicality", threshold is not None), ("bias correction", has_truth)) if on)
        if not (Path(run_dir) / "calibration.json").is_file() and report is not None:
            report(f"note: {run_dir} has no calibration.json, so {what} {'are' if ' and ' in what else 'is'} n/a; "
                   f"run `metavoxel calibrate --model {run_dir}` once to compute it")
    correction = None
    if calibration is not None and has_truth and target is not None:
        correction = calibration.correction(target, method)
        others = sorted(n for n in model.variables if n != target)
        if correction is not None and sorted(given) != others:
            if report is not None:
                report(f"note: the run's bias correction of {target} was fitted given {', '.join(others)}; this "
                       f"request gives {', '.join(given)}, so the corrected columns are n/a")
            correction = None
    reference = None if calibration is None else calibration.typicality
    trust = RecordTrust(target, reference, threshold, correction, has_truth and target is not None,
                        has_truth and samples)
    if trust.brain_age:
        names = difference_columns(target)
        trust.columns += [names["pad"], names["pad_corrected"], names["corrected"]]
        if trust.centile:
            trust.columns.append(names["centile"])
    if threshold is not None:
        trust.columns += list(TYPICALITY_COLUMNS)
    return trust
