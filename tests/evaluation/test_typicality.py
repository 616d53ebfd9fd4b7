"""Typicality percentiles: mid-rank percentiles, the flag's rate on records like the reference, and what it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.diffusion.typicality import TypicalityTerms
from metavoxel.errors import InputError
from metavoxel.evaluation.typicality import TypicalityReference, percentile, warn_atypical


def _terms(image, metadata, given="age,image") -> TypicalityTerms:
    """Terms from per-record losses (N,) (one level) or per-level losses (N, J)."""
    image, metadata = np.asarray(image, float), np.asarray(metadata, float)
    image, metadata = (x[:, None] if x.ndim == 1 else x for x in (image, metadata))
    return TypicalityTerms(torch.tensor(image), torch.tensor(metadata), 10, [given] * len(image))


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=50), st.floats(-1e3, 1e3))
def test_a_percentile_is_the_mid_rank_and_monotone(reference, value):
    p = percentile(value, reference)
    assert 0.0 <= p <= 100.0
    assert percentile(value + 1e3, reference) >= p >= percentile(value - 1e3, reference)
    below, ties = sum(v < value for v in reference), sum(v == value for v in reference)
    assert p == pytest.approx(100 * (below + ties / 2) / len(reference))


@settings(max_examples=10)
@given(st.integers(0, 10_000))
def test_new_records_like_the_reference_are_flagged_at_about_the_promised_rate(seed):
    """Two parts, each above the threshold for 5% of records: their max is calibrated back to 5%, not 10%."""
    rng = np.random.default_rng(seed)
    val = _terms(rng.normal(size=2000), rng.normal(size=2000))
    reference = TypicalityReference.from_terms({"age,image": val}, levels=5, seed=0)
    new = reference.score(_terms(rng.normal(size=4000), rng.normal(size=4000)), threshold=95.0)
    rate = np.mean([r.flagged for r in new])
    # 5% ± the noise of the reference's tail (about 0.6% at 2000 records) and of 4000 new records (0.35%)
    assert abs(rate - 0.05) < 0.025


def test_the_flag_names_the_atypical_part():
    rng = np.random.default_rng(0)
    reference = TypicalityReference.from_terms({"age,image": _terms(rng.normal(size=100), rng.normal(size=100))},
                                               levels=5, seed=0)
    image_odd, meta_odd, both, fine = reference.score(_terms([9.0, 0.0, 9.0, 0.0], [0.0, 9.0, 9.0, 0.0]))
    assert image_odd.flagged and image_odd.atypical == ("image",) and image_odd.percentile > 99
    assert meta_odd.atypical == ("metadata",) and both.atypical == ("image", "metadata")
    assert not fine.flagged and fine.atypical == () and 0 < fine.percentile < 99
    with pytest.warns(UserWarning, match=r"sub-1: typicality percentile .* the image is unlike"):
        assert warn_atypical([image_odd, fine], ["sub-1", "sub-2"]) == 1


def test_each_level_counts_by_its_validation_spread_not_by_its_scale():
    """A level with a huge, noisy loss does not drown a quiet level that tells: standardised before averaging."""
    rng = np.random.default_rng(1)
    quiet, loud = rng.normal(0.1, 0.001, 200), rng.normal(10.0, 1.0, 200)
    reference = TypicalityReference.from_terms({"image": _terms(np.stack([quiet, loud], 1), [np.nan] * 200,
                                                                "image")}, levels=2, seed=0)
    odd = _terms([[0.1 + 0.01, 10.0]], [[np.nan, np.nan]], "image")  # 10 SDs off at the quiet level only
    (result,) = reference.score(odd)
    assert result.flagged and result.atypical == ("image",)
    plain = np.stack([quiet, loud], 1).mean(axis=1)  # the plain mean would have ranked it ordinary
    assert np.mean(plain < (0.11 + 10.0) / 2) < 0.9


def test_a_record_giving_other_variables_than_the_reference_has_no_percentile():
    reference = TypicalityReference.from_terms({"age,image": _terms([1.0, 2.0], [1.0, 2.0])}, levels=5, seed=0)
    (result,) = reference.score(_terms([1.5], [float("nan")], given="image"))
    assert np.isnan(result.percentile) and not result.flagged
    assert TypicalityReference.from_dict(reference.to_dict()).losses == reference.losses
    with pytest.raises(InputError, match="threshold"):
        reference.score(_terms([1.0], [1.0]), threshold=100.0)
