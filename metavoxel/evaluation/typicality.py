"""Typicality percentiles: a record's denoising terms placed among the validation split's, and the flag.

`metavoxel.diffusion.typicality` gives each record two parts' losses L_j at J levels t_j: its image given its
metadata, and its metadata given its image, for the set G of variables it gives; for an image kind with a
per-location loss (`metavoxel.HasLossMap`) also the image's loss per latent location, L_j(x). The reference is the
validation split's n records for the same G (`TypicalityReference`, stored by `metavoxel calibrate` / `train`).
The statistics, each a standardised (one-sided: only a worse denoising counts) bound:

    global image    s_I = (1/J) Σ_j (L_I,j - μ_j)/σ_j,  L_I,j the mean of L_j(x) over the (kept) locations
    local image     m_s = max over kept x of the standardised box_s(Z)(x), for each scan scale s (``image_local:s``)
                    Z(x) = (1/J) Σ_j (L_j(x) - μ_j(x))/σ_j(x)
    metadata        s_M = (1/J) Σ_j (L_M,j - μ_j)/σ_j      (the continuous scalars' loss)
    categorical v   z_v = Φ⁻¹(1 - u_v)                      (for each categorical scalar v given: ``metadata:v``)

μ, σ: the validation records' mean and SD of the same quantity (each level, and each level and location); each
level counts by its own spread, as the loss's scale differs by orders of magnitude between levels. The
validation records' own statistics are computed LEAVE ONE OUT (`metavoxel.evaluation.standardised`), so they are
distributed as a new record's. box_s is the mean over the kept locations of the box of side s; each smoothed map is
standardised per location by the validation records' (`metavoxel.evaluation.scan`).

Why the local statistics are these: a change confined to a region (a lesion, a local artefact, a bias field
brightening one side of the head) moves the losses of some latent locations and is diluted by a mean over the
whole grid, so the image is also scored by its most atypical PLACE, the maximum of the standardised map (the
maximum statistic of voxel-wise inference, Worsley et al. 1996, SPM). The region's size is unknown too, from a few
latent locations (a lesion) to a good part of the grid (a bias field), so the map is scanned at a few sizes fixed a
priori, the scan statistic for a signal of unknown location and scale (Siegmund & Worsley 1995;
`metavoxel.evaluation.scan`): boxes of side 3 (the smallest region the latent grid can tell: an image change
reaches the neighbouring latents through the encoder), then doubling the radius (5, 9, ...) while smaller than the
grid; the whole grid is the global statistic. Each scale is its own statistic, combined with the others by the
maximum below, which accounts for how correlated they are. (Confirmed on development shifts by a rule fixed in
advance; the scored shifts' figures had been seen before the choice: docs/trust.md.)

A keep-mask (an image given only in part) restricts the image statistics to the kept locations; the validation
records' maps are masked the same way at request time (no network calls). A masked record is scored by its image
only: its metadata term would condition on the whole scan, what the mask drops included. An all-ones mask gives
the unmasked image statistics exactly.

Why a categorical variable has its own statistic (decided before measuring it): its loss -log p_c, with p_c the
probability the model gives the record's class, is heavy-tailed by nature, and a class with p_c = 0.2 is not
atypical under the model: it happens 20% of the time. Placed among other records' losses (as s_M places its
variables), two validation records with p_c = 0.2 and 0.3 stood 22 and 5 SDs beyond the rest and no smooth fit of
60 records put 3% that far out, so records like them were flagged (the demo's 4.4% of unaltered test records).
So a categorical value is read against what the MODEL expects for this record instead: u_v, the mid-p value of
its class under the model's own posterior at the metadata part's top level (`metavoxel.diffusion.typicality.mid_p`),
is the model's probability of a class at least as improbable as the given one, uniform when the model is
calibrated; z_v = Φ⁻¹(1 - u_v) (large = the class is improbable) is already a normal score. Its percentile needs no
reference records; the validation split still gives the correlations R that combine it with the other statistics.
Flagging z_v alone at the 99th means p(class) so low that the model's own classes are that improbable 1% of the
time (for two classes: p_c < 0.02).

Each other statistic is mapped to a normal score u by a Yeo-Johnson transform fitted on the validation records'
own (leave-one-out) statistics, and the record's **typicality percentile** is 100 · P(max_k U_k < max_k u_k) with U the
validation records' normal scores modelled as N(0, R) (`metavoxel.evaluation.normal_scores`): a smoothed "how
many records like the validation split's are less atypical in their worst statistic", which a threshold T cuts
at about (100 - T)% of them even beyond the validation split's range. A part's own percentile is the same over
its statistics (the image: the global and the local ones; the metadata: the continuous and the categorical ones). A record is flagged when its typicality percentile is
above the threshold (default 99), and the flag names the part(s) whose own percentile is above it (the image, the
metadata, or both; with neither alone above it, the worse one).

The score never changes an answer: it is computed beside it from the same given values.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metavoxel.diffusion.typicality import PARTS, TypicalityTerms
from metavoxel.errors import InputError
import torch

from metavoxel.evaluation.normal_scores import MaxOfNormalScores, NormalScores, normal_percentile
from metavoxel.evaluation.scan import scan_scales, scan_statistics
from metavoxel.evaluation.standardised import leave_one_out, standardise

__all__ = ["DEFAULT_THRESHOLD", "MIN_REFERENCE", "check_threshold", "STATISTICS", "TypicalityReference", "TypicalityResult",
           "TypicalityWarning", "class_score", "warn_atypical"]

#: The default flag: above the validation split's 99th percentile.
DEFAULT_THRESHOLD = 99.0
#: Validation records a reference needs (leave-one-out SDs and a fitted transform): fewer give no percentile.
MIN_REFERENCE = 4
#: The statistics of each part (module docstring); the image part also has ``image_local:S`` per scan scale S, the
#: metadata part ``metadata:NAME`` per categorical NAME.
STATISTICS = {"image": ("image",), "metadata": ("metadata",)}
#: The prefix of a categorical variable's statistic.
CLASS = "metadata:"
#: The prefix of a scan scale's statistic (the box side, in latent locations, follows).
LOCAL = "image_local:"


def class_score(u: np.ndarray) -> np.ndarray:
    """z = Φ⁻¹(1 - u) of mid-p values u in [0, 1] (module docstring), from the lower tail of u so that it stays exact
    for an improbable class (+inf at u = 0)."""
    return -torch.special.ndtri(torch.as_tensor(np.asarray(u, dtype=np.float64))).numpy()


def _part(statistic: str) -> str:
    """The part a statistic belongs to: every statistic's name begins with its part's."""
    return next(p for p in PARTS if statistic.startswith(p))


def check_threshold(threshold: float | None, what: str = "typicality threshold") -> float | None:
    """``threshold`` when it is a percentile strictly between 0 and 100 (or None: typicality off); else InputError
    naming ``what``. Checked where a request is made, before any work."""
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 < threshold < 100.0):
        raise InputError(f"{what} must be a percentile strictly between 0 and 100 (it flags the records above it), "
                         f"got {threshold!r}; e.g. 99")
    return threshold


class TypicalityWarning(UserWarning):
    """A record whose given values are unlike the validation split's (one per record)."""


@dataclass(frozen=True)
class TypicalityResult:
    """One record's typicality.

    Attributes:
        percentile: the typicality percentile (NaN: no reference for its given variables).
        parts: part -> its own percentile (only the parts the record gives).
        flagged: above the threshold.
        atypical: the parts named by the flag (empty when not flagged).
        given: the record's given variables (comma-joined).
        scores: statistic -> its normal score u (unbounded; ``image``, ``image_local:S`` per scan scale S,
            ``metadata``, and ``metadata:NAME`` per categorical variable NAME given).
        masked: the image was scored over a keep-mask's locations.
    """

    percentile: float
    parts: dict[str, float]
    flagged: bool
    atypical: tuple[str, ...]
    given: str
    scores: dict[str, float] = field(default_factory=dict)
    masked: bool = False

    def to_dict(self) -> dict[str, Any]:
        clean = lambda x: None if not math.isfinite(x) else round(x, 2)  # noqa: E731
        out = {"percentile": clean(self.percentile), "flagged": self.flagged, "atypical": list(self.atypical),
               "given": self.given, **{f"{p}_percentile": clean(v) for p, v in self.parts.items()}}
        if self.scores:
            out["statistics"] = {k: clean(float(normal_percentile(u))) for k, u in self.scores.items()}
        if self.masked:
            out["masked"] = True
        return out


@dataclass
class _Fitted:
    """A reference's fits for one set of given variables and one keep-mask."""

    statistics: tuple[str, ...]
    normal: dict[str, NormalScores]
    parts: dict[str, MaxOfNormalScores]  # part -> the max over its statistics
    combined: MaxOfNormalScores


@dataclass
class TypicalityReference:
    """The validation split's per-level losses (and image loss maps) per set of given variables.

    Attributes:
        losses: given (sorted, comma-joined names) -> part -> the n validation records' J per-level losses.
        levels, seed: how the losses were computed (a record must be scored the same way).
        maps: given -> the n validation records' image loss maps (n, J, *grid) float32, for the sets that give an
            image of a kind with `metavoxel.HasLossMap` (stored beside calibration.json as safetensors).
        classes: given -> categorical variable -> the n validation records' mid-p values u (for the correlations).
    """

    losses: dict[str, dict[str, list[list[float]]]]
    levels: int
    seed: int
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    classes: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    _fits: dict[tuple[str, str], _Fitted | None] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_terms(cls, by_given: Mapping[str, TypicalityTerms], *, levels: int, seed: int) -> TypicalityReference:
        """From each set of given variables' validation terms (parts a set does not give are left out)."""
        losses, maps, classes = {}, {}, {}
        for given, terms in by_given.items():
            midp = {v: u.double().cpu().numpy() for v, u in terms.category_midp.items()}
            classes[given] = {v: u.tolist() for v, u in sorted(midp.items()) if len(u) and np.isfinite(u).all()}
            parts = {p: terms.levels(p).double().cpu().numpy() for p in PARTS}
            losses[given] = {p: v.tolist() for p, v in parts.items() if len(v) and np.isfinite(v).all()}
            if terms.image_maps is not None and "image" in losses[given]:
                image_maps = terms.image_maps.float().cpu().numpy()
                if np.isfinite(image_maps).all():
                    maps[given] = image_maps
        return cls(losses, levels, seed, maps, {g: c for g, c in classes.items() if c})

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (the maps are stored apart, `metavoxel.workflows.calibrate`)."""
        return {"levels": self.levels, "seed": self.seed, "losses": self.losses, "classes": self.classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], maps: Mapping[str, np.ndarray] | None = None) -> TypicalityReference:
        return cls({g: {p: [[float(x) for x in row] for row in v] for p, v in parts.items()}
                    for g, parts in data["losses"].items()}, int(data["levels"]), int(data["seed"]),
                   {g: np.asarray(m, dtype=np.float32) for g, m in (maps or {}).items()},
                   {g: {v: [float(x) for x in u] for v, u in c.items()} for g, c in (data.get("classes") or {}).items()})

    # -- statistics ---------------------------------------------------------------------------------------------
    def _statistics(self, given: str, keep: np.ndarray | None,
                    values: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """statistic -> (m,) of the records ``values`` (part -> (m, J) levels, ``maps`` -> (m, J, *grid), ``classes``
        -> categorical variable -> (m,) mid-p values) against the reference, or the reference's own (n,) left one out
        when ``values`` is None; with ``keep``, the image's only (a masked record has no metadata term). A
        categorical statistic is its model-implied normal score (`class_score`), whatever the reference."""
        ref = self.losses[given]
        maps = self.maps.get(given)
        out = {}
        for part in ref if keep is None else ("image",):
            if part == "image" and maps is not None:
                kept = np.ones(maps.shape[2:], dtype=bool) if keep is None else keep
                mean = lambda m: m[..., kept].astype(np.float64).mean(axis=-1)  # noqa: E731  (·, J)
                ref_levels = mean(maps)
                own = None if values is None else mean(values["maps"])
                zref = maps.astype(np.float64)
                own_z = leave_one_out(zref).mean(axis=1)  # (n, *grid) the reference's Z, each left one out
                new_z = None if values is None else standardise(zref, values["maps"]).mean(axis=1)  # (m, *grid)
                for side, m in scan_statistics(own_z, new_z, keep, scan_scales(maps.shape[2:])).items():
                    out[f"{LOCAL}{side}"] = m
            else:
                ref_levels = np.asarray(ref[part], dtype=np.float64)
                own = None if values is None else values[part]
            z = leave_one_out(ref_levels) if own is None else standardise(ref_levels, own)
            out[part] = z.mean(axis=1)
        side = lambda s: int(s[len(LOCAL):]) if s.startswith(LOCAL) else 0  # noqa: E731
        ordered = {s: out[s] for p in PARTS for s in sorted(out, key=lambda s: (s != p, side(s)))
                   if _part(s) == p}  # image, its scales from the smallest, metadata
        if keep is None:
            for name, u in self.classes.get(given, {}).items():
                ordered[CLASS + name] = class_score(np.asarray(u) if values is None else values["classes"][name])
        return ordered

    def _count(self, given: str) -> int:
        """n, the validation records of the set ``given``."""
        for table in (self.losses.get(given) or {}, self.classes.get(given) or {}):
            if table:
                return len(next(iter(table.values())))
        return 0

    def unscored(self, given: str) -> str | None:
        """Why records giving ``given`` (sorted, comma-joined) get no percentile from this reference, or None."""
        if given not in self.losses and given not in self.classes:
            return (f"the run's calibration has no reference for the given variables {given} (it covers every set of "
                    "at most 4 variables, else all of them and all but one)")
        if (n := self._count(given)) < MIN_REFERENCE:
            return (f"the run's calibration has {n} validation record(s) giving {given}; a percentile needs "
                    f"{MIN_REFERENCE}")
        return None

    def _fit(self, given: str, keep: np.ndarray | None) -> _Fitted | None:
        key = (given, "" if keep is None else hashlib.sha256(np.packbits(keep).tobytes()).hexdigest())
        if key not in self._fits:
            if self._count(given) < MIN_REFERENCE:
                self._fits[key] = None
            else:
                own = self._statistics(given, keep, None)
                normal = {s: NormalScores.fit(v) for s, v in own.items() if not s.startswith(CLASS)}
                u = {s: normal[s].normal_score(v) if s in normal else v for s, v in own.items()}
                parts = {p: MaxOfNormalScores.fit(np.stack([v for s, v in u.items() if _part(s) == p], 1),
                                                  seed=self.seed)
                         for p in PARTS if any(_part(s) == p for s in u)}
                self._fits[key] = _Fitted(tuple(own), normal, parts,
                                          MaxOfNormalScores.fit(np.stack(list(u.values()), 1), seed=self.seed))
        return self._fits[key]

    def score(self, terms: TypicalityTerms, *, threshold: float = DEFAULT_THRESHOLD) -> list[TypicalityResult]:
        """Each record's `TypicalityResult`; a record whose given set has no reference (or one of fewer than
        `MIN_REFERENCE` records), or without the image maps its reference has (or a mask needs), gets NaN,
        unflagged."""
        check_threshold(threshold)
        n = len(terms.given)
        values = {p: terms.levels(p).double().cpu().numpy() for p in PARTS}  # (N, J) each
        classes = {v: u.double().cpu().numpy() for v, u in terms.category_midp.items()}  # (N,) each
        record_maps = None if terms.image_maps is None else terms.image_maps.float().cpu().numpy()
        keeps = None if terms.image_keep is None else terms.image_keep.bool().cpu().numpy()
        results: list[TypicalityResult | None] = [None] * n
        groups: dict[tuple[str, bytes], list[int]] = {}
        for i, given in enumerate(terms.given):
            groups.setdefault((given, b"" if keeps is None else np.packbits(keeps[i]).tobytes()), []).append(i)
        for (given, _), rows in groups.items():
            keep = None if keeps is None else keeps[rows[0]]
            own = [p for p in PARTS if np.isfinite(values[p][rows]).all() and (keep is None or p == "image")]
            own_classes = sorted(v for v, u in classes.items() if keep is None and np.isfinite(u[rows]).all())
            ref = self.losses.get(given)
            mapped = given in self.maps  # the record's image is then read from its maps, as the reference's
            usable = (ref is not None
                      and (set(own) == set(ref) and own_classes == sorted(self.classes.get(given, {}))
                           if keep is None else own == ["image"] and "image" in ref)
                      and all(values[p].shape[1] == len(ref[p][0]) for p in own)
                      and (record_maps is not None if mapped else keep is None))
            fitted = self._fit(given, keep) if usable else None
            if fitted is None:
                for i in rows:
                    results[i] = TypicalityResult(float("nan"), {}, False, (), given)
                continue
            mine = {p: values[p][rows] for p in own}
            if mapped:
                mine["maps"] = record_maps[rows]
            mine["classes"] = {v: classes[v][rows] for v in own_classes}
            stats = self._statistics(given, keep, mine)
            u = {s: fitted.normal[s].normal_score(v) if s in fitted.normal else v for s, v in stats.items()}
            parts = {p: fitted.parts[p].percentile(np.max([v for s, v in u.items() if _part(s) == p], axis=0))
                     for p in fitted.parts}
            combined = fitted.combined.percentile(np.max(list(u.values()), axis=0))
            for k, i in enumerate(rows):
                part = {p: float(v[k]) for p, v in parts.items()}
                flagged = bool(combined[k] > threshold)
                above = tuple(p for p, v in part.items() if v > threshold)
                atypical = (above or (max(part, key=part.get),)) if flagged else ()
                results[i] = TypicalityResult(float(combined[k]), part, flagged, atypical, given,
                                              {s: float(v[k]) for s, v in u.items()}, keep is not None)
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
