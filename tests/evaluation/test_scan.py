"""The scan statistic over scales: its box means, its fixed scales, its units, what a broad and a small change do
to it, and the flag's rate on records like the reference with it among the statistics."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metavoxel.diffusion.typicality import TypicalityTerms
from metavoxel.evaluation.scan import box_mean, scan_scales, scan_statistics
from metavoxel.evaluation.typicality import TypicalityReference


@st.composite
def _maps_and_keep(draw):
    grid = draw(st.lists(st.integers(1, 6), min_size=2, max_size=3).map(tuple))
    z = draw(hnp.arrays(np.float64, (draw(st.integers(1, 3)), *grid), elements=st.floats(-100, 100)))
    keep = draw(hnp.arrays(np.bool_, grid))
    keep.flat[draw(st.integers(0, keep.size - 1))] = True
    return z, keep, draw(st.sampled_from([1, 3, 5]))


@given(_maps_and_keep())
def test_the_box_mean_is_the_mean_over_the_kept_locations_of_the_box(case):
    z, keep, side = case
    r = side // 2
    expected = np.zeros_like(z)
    for x in itertools.product(*(range(n) for n in keep.shape)):
        box = tuple(slice(max(0, i - r), i + r + 1) for i in x)
        kept = keep[box]
        if kept.any():
            expected[(slice(None), *x)] = z[(slice(None), *box)][:, kept].mean(axis=1)
    np.testing.assert_allclose(box_mean(z, keep, side), expected, rtol=1e-9, atol=1e-9)


def test_the_scales_double_the_radius_from_the_smallest_box_and_stay_below_the_grid():
    assert scan_scales((8, 8, 8)) == (3, 5)
    assert scan_scales((16, 16, 16)) == (3, 5, 9)
    assert scan_scales((32, 40)) == (3, 5, 9, 17)
    assert scan_scales((4, 8, 8)) == (3,)
    assert scan_scales((3, 3, 3)) == ()


@given(st.floats(0.01, 100), st.floats(-50, 50), st.integers(0, 10_000))
def test_the_scan_reads_the_map_relative_to_the_reference_whatever_its_units(scale, offset, seed):
    """Each smoothed map is standardised per location: one affine change of units of the reference's and the record's
    maps together moves no scan statistic, and a record-wide rise of the record's map alone raises every scale's."""
    rng = np.random.default_rng(seed)
    reference, record = rng.normal(size=(12, 5, 5, 5)), rng.normal(size=(1, 5, 5, 5))
    plain = scan_statistics(reference, record, None, (3,))
    moved = scan_statistics(reference * scale + offset, record * scale + offset, None, (3,))
    np.testing.assert_allclose(moved[3], plain[3], rtol=1e-6, atol=1e-6)
    assert scan_statistics(reference, record + 1.0, None, (3,))[3][0] > plain[3][0]


def test_a_broad_change_is_found_by_the_larger_scale_and_a_small_one_by_the_smaller():
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(60, 8, 8, 8))
    records = rng.normal(size=(2, 8, 8, 8))
    records[0, :5, :5, :5] += 0.8  # broad and weak: 125 of 512 locations
    records[1, 2:5, 2:5, 2:5] += 2.5  # small and strong: 27 locations
    stats = scan_statistics(reference, records, None, (3, 5))
    own = scan_statistics(reference, None, None, (3, 5))
    excess = {side: (stats[side] - own[side].mean()) / own[side].std() for side in (3, 5)}  # (2,) each
    assert excess[5][0] > excess[3][0] and excess[3][1] > excess[5][1]
    assert stats[5][0] > own[5].max() and stats[3][1] > own[3].max()  # each above every reference record


def test_records_like_the_reference_are_flagged_at_about_the_promised_rate_with_the_scan_among_the_statistics():
    """60 reference records with skewed loss maps (a per-record level and per-location noise, on a 6³ grid: scales
    3 and 5 beside the global statistic): about 1% of records like them are flagged at the 99th."""
    rates = []
    for seed in range(4):
        rng = np.random.default_rng(seed)

        def draw(n):
            maps = rng.gamma(4.0, 0.05, (n, 3, 1, 1, 1)) + rng.gamma(2.0, 0.05, (n, 3, 6, 6, 6))
            return TypicalityTerms(torch.tensor(maps.reshape(n, 3, -1).mean(-1)), torch.full((n, 3), float("nan"),
                                   dtype=torch.float64), 5, ["image"] * n, torch.tensor(maps, dtype=torch.float32))

        reference = TypicalityReference.from_terms({"image": draw(60)}, levels=3, seed=0)
        results = reference.score(draw(500))
        assert set(results[0].scores) == {"image", "image_local:3", "image_local:5"}
        rates.append(np.mean([r.flagged for r in results]))
    assert 0.003 < np.mean(rates) < 0.02
