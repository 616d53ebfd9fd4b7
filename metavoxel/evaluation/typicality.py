"""Typicality percentiles: a record's denoising terms placed among the validation split's, and the flag.

`metavoxel.diffusion.typicality` gives each record two parts' losses L_j at J levels t_j: its image given its
metadata, and its metadata given its image, for the set G of variables it gives. The loss's spread differs by
orders of magnitude between levels (near T it is mostly the noise's own variance), so a plain average is ruled
by the least informative levels. Each level is standardised by the validation split's losses for the same G
and part (mean μ_j, SD σ_j over its n records; the run's reference, `TypicalityReference`, stored by
`metavoxel calibrate` / `train`), then averaged:

    s = (1/J) Σ_j (L_j - μ_j) / σ_j

(the inverse-variance weighting of a diagonal Mahalanobis distance, one-sided: only a worse denoising counts).
Each part's s is read as a percentile among the validation records' own s:

    P_part(s) = 100 · (#{v_k < s} + ½ · #{v_k = s}) / n          over the n validation scores v_k of that part

A record is as atypical as its worse part, m = max(P_I, P_M) over the parts it gives; its **typicality
percentile** is the percentile of m among the validation records' own m (so a threshold on it flags the
validation split at its nominal rate whatever the number of parts). It is flagged when the percentile is
above the threshold (default 99: about 1% of records like the validation split's are meant to be flagged; with
n validation records the percentile resolves only 100/n, so at n <= 100 the flag is "above every validation
record", with probability about 1/(n + 1) for a record like them), and the
flag names the part(s) whose own percentile is above it (the image, the metadata, or both; with neither
alone above it, the worse one).

The score never changes an answer: it is computed beside it from the same given values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metavoxel.diffusion.typicality import PARTS, TypicalityTerms
from metavoxel.errors import InputError

__all__ = ["DEFAULT_THRESHOLD", "TypicalityReference", "TypicalityResult", "TypicalityWarning", "percentile",
           "warn_atypical"]

#: The default flag: above the validation split's 99th percentile.
DEFAULT_THRESHOLD = 99.0


class TypicalityWarning(UserWarning):
    """A record whose given values are unlike the validation split's (one per record)."""


def _percentiles(values: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """`percentile` of each of ``values`` (n,) at once (sorted reference, binary search)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    below = np.searchsorted(ref, values, side="left")
    ties = np.searchsorted(ref, values, side="right") - below
    return 100.0 * (below + 0.5 * ties) / len(ref)


def percentile(value: float, reference: Sequence[float]) -> float:
    """100 · (#{v < value} + ½ · #{v = value}) / n: ``value``'s mid-rank percentile among ``reference``; NaN if
    either is missing."""
    ref = np.asarray(reference, dtype=np.float64)
    if not math.isfinite(value) or len(ref) == 0:
        return float("nan")
    return float(100.0 * ((ref < value).sum() + 0.5 * (ref == value).sum()) / len(ref))


@dataclass(frozen=True)
class TypicalityResult:
    """One record's typicality.

    Attributes:
        percentile: the typicality percentile (NaN: no reference for its given variables).
        parts: part -> its own percentile (only the parts the record gives).
        flagged: above the threshold.
        atypical: the parts named by the flag (empty when not flagged).
        given: the record's given variables (comma-joined).
    """

    percentile: float
    parts: dict[str, float]
    flagged: bool
    atypical: tuple[str, ...]
    given: str

    def to_dict(self) -> dict[str, Any]:
        clean = lambda x: None if not math.isfinite(x) else round(x, 2)  # noqa: E731
        return {"percentile": clean(self.percentile), "flagged": self.flagged, "atypical": list(self.atypical),
                "given": self.given, **{f"{p}_percentile": clean(v) for p, v in self.parts.items()}}


@dataclass
class TypicalityReference:
    """The validation split's per-level losses per set of given variables: ``{given: {part: (n, J) lists}}``.

    Attributes:
        losses: given (sorted, comma-joined names) -> part -> the n validation records' J per-level losses.
        levels, seed: how the losses were computed (a record must be scored the same way).
    """

    losses: dict[str, dict[str, list[list[float]]]]
    levels: int
    seed: int

    @classmethod
    def from_terms(cls, by_given: Mapping[str, TypicalityTerms], *, levels: int, seed: int) -> TypicalityReference:
        """From each set of given variables' validation terms (parts a set does not give are left out)."""
        losses = {}
        for given, terms in by_given.items():
            parts = {p: terms.levels(p).double().cpu().numpy() for p in PARTS}
            losses[given] = {p: v.tolist() for p, v in parts.items() if len(v) and np.isfinite(v).all()}
        return cls(losses, levels, seed)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "seed": self.seed, "losses": self.losses}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TypicalityReference:
        return cls({g: {p: [[float(x) for x in row] for row in v] for p, v in parts.items()}
                    for g, parts in data["losses"].items()}, int(data["levels"]), int(data["seed"]))

    def standardised(self, given: str, part: str, losses: np.ndarray) -> np.ndarray:
        """s = mean_j (L_j - μ_j)/σ_j of (m, J) losses against the validation split's (module docstring), (m,)."""
        ref = np.asarray(self.losses[given][part], dtype=np.float64)  # (n, J)
        mu = ref.mean(axis=0)
        sd = ref.std(axis=0, ddof=1) if len(ref) > 1 else np.zeros_like(mu)
        sd = np.where(sd > 0, sd, np.maximum(np.abs(mu), 1.0) * 1e-6)  # a level with no spread: a tiny unit
        return ((losses - mu) / sd).mean(axis=1)

    def scores(self, given: str) -> dict[str, np.ndarray]:
        """part -> the validation records' own standardised scores s, (n,)."""
        return {p: self.standardised(given, p, np.asarray(v, dtype=np.float64)) for p, v in self.losses[given].items()}

    def _combined(self, given: str) -> np.ndarray:
        """The validation records' own m = max over parts of their part percentiles, (n,)."""
        return np.max([_percentiles(v, v) for v in self.scores(given).values()], axis=0)

    def score(self, terms: TypicalityTerms, *, threshold: float = DEFAULT_THRESHOLD) -> list[TypicalityResult]:
        """Each record's `TypicalityResult`; a record whose given set has no reference gets NaN, unflagged."""
        if not 0.0 < threshold < 100.0:
            raise InputError(f"typicality threshold must be a percentile in (0, 100), got {threshold}")
        n = len(terms.given)
        values = {p: terms.levels(p).double().cpu().numpy() for p in PARTS}  # (N, J) each
        results: list[TypicalityResult | None] = [None] * n
        groups: dict[str, list[int]] = {}
        for i, given in enumerate(terms.given):
            groups.setdefault(given, []).append(i)
        for given, rows in groups.items():
            ref = self.losses.get(given)
            own = [p for p in PARTS if np.isfinite(values[p][rows]).all()]
            if not ref or set(own) != set(ref) or values[own[0]].shape[1] != len(ref[own[0]][0]):
                for i in rows:
                    results[i] = TypicalityResult(float("nan"), {}, False, (), given)
                continue
            val = self.scores(given)
            parts = {p: _percentiles(self.standardised(given, p, values[p][rows]), val[p]) for p in own}  # (rows,)
            combined = _percentiles(np.max(list(parts.values()), axis=0), self._combined(given))
            for k, i in enumerate(rows):
                mine = {p: float(v[k]) for p, v in parts.items()}
                flagged = bool(combined[k] > threshold)
                above = tuple(p for p, v in mine.items() if v > threshold)
                atypical = (above or (max(mine, key=mine.get),)) if flagged else ()
                results[i] = TypicalityResult(float(combined[k]), mine, flagged, atypical, given)
        return results  # type: ignore[return-value]


def describe(result: TypicalityResult, record: str, threshold: float = DEFAULT_THRESHOLD) -> str:
    """The warning's text for a flagged record: which record, its percentile, what is atypical."""
    what = {"image": "the image", "metadata": "the metadata given with it"}
    named = " and ".join(what[p] for p in result.atypical)
    parts = ", ".join(f"{p} {v:.1f}" for p, v in result.parts.items())
    return (f"{record}: typicality percentile {result.percentile:.1f}, above the validation split's "
            f"{threshold:g}th: {named} {'are' if len(result.atypical) > 1 else 'is'} unlike what the model was "
            f"trained on (percentiles {parts}; given {result.given}); its answer may not be trustworthy")


def warn_atypical(results: Sequence[TypicalityResult], records: Sequence[str],
                  threshold: float = DEFAULT_THRESHOLD) -> int:
    """One `TypicalityWarning` per flagged record; returns how many were flagged."""
    flagged = 0
    for result, record in zip(results, records):
        if result.flagged:
            warnings.warn(describe(result, record, threshold), TypicalityWarning, stacklevel=2)
            flagged += 1
    return flagged
