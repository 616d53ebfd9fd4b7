"""The scan statistic of a standardised map over a few scales: where, and how large, is a record most atypical.

A record's level-averaged standardised loss map Z(x) (`metavoxel.evaluation.typicality`) is, under the null (a
record like the reference's), a field of unit-variance values; a local change (a lesion, an artefact) raises it
over a region of unknown place AND unknown size, from a few latent locations to most of the grid (a smooth bias
field). The scan statistic for a signal of unknown location and scale (Siegmund & Worsley 1995) smooths the field
at each of several scales, normalises each smoothed field to unit variance under the null, and takes the maximum
over locations (and then over scales):

    Z_s(x)   = mean of Z over the kept locations of the box of side s centred at x          (box smoothing)
    Z̃_s(x)  = (Z_s(x) - μ_s(x)) / σ_s(x)      μ_s, σ_s: the reference records' Z_s at x (each left one out)
    m_s      = max over kept x of Z̃_s(x)                                                   one statistic per scale

The map is NOT first globally normalised (its record's own mean subtracted, as SPM's "global normalisation",
Friston et al. 1990): that was this module's first design, and it lost power (benchmarks/RESULTS.md). An
intensity shift reaches the model through the per-image percentile scaling, which turns a bright lesion or a bias
field largely into a change of the whole image's scale, so much of what such a shift does to the map is
record-wide; the local statistics keep it.

Normalising per location (not only per scale) keeps every location on the same footing whatever the box loses to
the border of the grid or of a keep-mask (a truncated box averages fewer values and varies more), so the maximum
does not favour the border. The maximum over scales is left to the caller's combination of statistics
(`metavoxel.evaluation.normal_scores.MaxOfNormalScores`), which accounts for how correlated the scales are.

The scales are fixed a priori, not fitted to the scored shifts: box sides s = 2r + 1 for radii r = 1, 2, 4, ...
(a factor of about 2 between neighbouring scales, the usual discretisation of a continuous range of scales, whose
loss of power is small at that ratio; Siegmund & Worsley 1995) while s is smaller than the grid's smallest side.
The smallest, s = 3, is the smallest region the latent grid can tell (an image change reaches the neighbouring
latents through the encoder); the largest scale, the whole grid, is the caller's global statistic. For the demo's
8³ latent grid: s = 3 and 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metavoxel.evaluation.standardised import leave_one_out, standardise

__all__ = ["box_mean", "scan_scales", "scan_statistics"]


def scan_scales(grid: Sequence[int]) -> tuple[int, ...]:
    """The box sides (module docstring): 2r + 1 for r = 1, 2, 4, ... while smaller than ``min(grid)``.

    Args:
        grid: the latent grid's shape, e.g. (8, 8, 8).

    Returns:
        The sides, increasing; empty for a grid of side 3 or less (its only region is then the whole grid).
    """
    sides, radius = [], 1
    while 2 * radius + 1 < min(grid):
        sides.append(2 * radius + 1)
        radius *= 2
    return tuple(sides)


def _box_sum(x: np.ndarray, side: int, axes: Sequence[int]) -> np.ndarray:
    """The sum of ``x`` over the box of ``side`` centred at each entry along ``axes`` (zeros beyond the border),
    separably, by cumulative sums."""
    r = side // 2
    for axis in axes:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(x, pad), axis=axis)
        size = x.shape[axis]
        hi = np.take(c, np.arange(side, side + size), axis=axis)
        lo = np.take(c, np.arange(0, size), axis=axis)
        x = hi - lo
    return x


def box_mean(z: np.ndarray, keep: np.ndarray, side: int) -> np.ndarray:
    """The mean of ``z`` over the kept locations of the box of ``side`` centred at each location.

    Args:
        z: (m, *grid) maps.
        keep: (*grid) bool, the kept locations (at least one).
        side: odd box side, in locations.

    Returns:
        (m, *grid) float64; locations whose box keeps nothing get 0.
    """
    z = np.asarray(z, dtype=np.float64)
    weight = np.asarray(keep, dtype=np.float64)
    axes = range(1, z.ndim)
    total = _box_sum(z * weight, side, axes)
    count = _box_sum(weight[None], side, axes)
    return total / np.maximum(count, 1.0)


def scan_statistics(reference: np.ndarray, values: np.ndarray | None, keep: np.ndarray | None,
                    sides: Sequence[int]) -> dict[int, np.ndarray]:
    """m_s for each side s (module docstring).

    Args:
        reference: (n, *grid) the reference records' maps Z (their own, each left one out of its standardisation).
        values: (m, *grid) the maps Z of the records to score, or None for the reference's own statistics, each
            record's normalised by the other n - 1 (leave one out).
        keep: (*grid) bool, the kept locations (None: all).
        sides: the box sides (`scan_scales`).

    Returns:
        side -> (m,) float64 ((n,) with ``values`` None).
    """
    ref = np.asarray(reference, dtype=np.float64)
    keep = np.ones(ref.shape[1:], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    out = {}
    for side in sides:
        smoothed = box_mean(ref, keep, side)[:, keep]  # (n, kept)
        if values is None:
            z = leave_one_out(smoothed)
        else:
            z = standardise(smoothed, box_mean(values, keep, side)[:, keep])
        out[side] = z.max(axis=1)
    return out
