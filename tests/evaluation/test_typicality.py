"""Typicality percentiles: leave-one-out standardisation, the smoothed percentile, the flag's rate on records like
the reference, what it names, the local image statistic and the masked image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metavoxel.diffusion.typicality import TypicalityTerms
from metavoxel.errors import InputError
from metavoxel.evaluation.normal_scores import NormalScores, student_t_sf
from metavoxel.evaluation.standardised import leave_one_out, standardise
from metavoxel.evaluation.typicality import TypicalityReference, class_score, warn_atypical


def _terms(image, metadata, given="age,image", maps=None, keep=None) -> TypicalityTerms:
    """Terms from per-record losses (N,) (one level) or per-level losses (N, J), optionally with image maps."""
    image, metadata = np.asarray(image, float), np.asarray(metadata, float)
    image, metadata = (x[:, None] if x.ndim == 1 else x for x in (image, metadata))
    return TypicalityTerms(torch.tensor(image), torch.tensor(metadata), 10, [given] * len(image),
                           None if maps is None else torch.tensor(maps, dtype=torch.float32),
                           None if keep is None else torch.as_tensor(keep))


def _mapped(maps: np.ndarray, metadata: np.ndarray, keep=None) -> TypicalityTerms:
    """Terms whose image levels are the maps' means (as `typicality_terms` makes them)."""
    return _terms(maps.reshape(*maps.shape[:2], -1).mean(-1), metadata, maps=maps, keep=keep)


@given(hnp.arrays(np.float64, st.tuples(st.integers(3, 9), st.integers(1, 3), st.integers(1, 3)),
                  elements=st.floats(-1e3, 1e3)))
def test_leave_one_out_equals_the_naive_recomputation(reference):
    naive = np.stack([standardise(np.delete(reference, k, axis=0), reference[k:k + 1])[0]
                      for k in range(len(reference))])
    np.testing.assert_allclose(leave_one_out(reference), naive, rtol=1e-6, atol=1e-6)


@settings(max_examples=30)
@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=40), st.floats(-1e4, 1e4), st.floats(0, 1e4))
def test_the_smoothed_percentile_is_monotone_in_range_and_goes_beyond_the_sample(reference, value, step):
    fit = NormalScores.fit(reference)
    low, high = fit.percentile(np.array([value, value + step]))
    assert 0.0 <= low <= high <= 100.0
    spread = max(np.ptp(reference), 1.0)
    assert fit.percentile(np.array(max(reference) + 1e4 * spread)) > 99.0  # far beyond: flagged, not capped


def test_student_t_tail_against_closed_forms():
    t = np.array([-40.0, -2.0, 0.0, 0.7, 3.0, 1e5])
    np.testing.assert_allclose(student_t_sf(t, 1), 0.5 - np.arctan(t) / np.pi, atol=1e-13)
    np.testing.assert_allclose(student_t_sf(t, 2), 0.5 - t / (2 * np.sqrt(2 + t * t)), atol=1e-13)


def test_records_like_a_small_reference_are_flagged_at_about_the_promised_rate():
    """60 reference records (as the demo's validation split) with skewed losses: about 1% flagged at the 99th,
    where the empirical percentile ("above all 60") flags 1/61 and a plug-in normal fit about 1.2-1.6%."""
    rates = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        draw = lambda n: _terms(rng.gamma(2.0, 0.05, (n, 5)), rng.gamma(2.0, 0.05, (n, 5)))  # noqa: E731
        reference = TypicalityReference.from_terms({"age,image": draw(60)}, levels=5, seed=0)
        rates.append(np.mean([r.flagged for r in reference.score(draw(800))]))
    # 8 references: the mean rate's SE is about 0.45% (the spread between references dominates)
    assert 0.005 < np.mean(rates) < 0.014


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


def _maps(rng, n: int) -> np.ndarray:
    """(n, J=3, 6, 6, 6) loss maps: a per-record level plus per-location noise."""
    return (rng.gamma(4.0, 0.05, (n, 3, 1, 1, 1)) + rng.gamma(2.0, 0.05, (n, 3, 6, 6, 6))).astype(np.float32)


def test_a_local_change_is_found_by_the_local_statistic_and_a_mask_scores_the_kept_part_only():
    rng = np.random.default_rng(2)
    reference = TypicalityReference.from_terms({"age,image": _mapped(_maps(rng, 60), rng.normal(size=(60, 3)))},
                                               levels=3, seed=0)
    records = _maps(rng, 3)
    records[1:, :, 0:3, 1:4, 1:4] += 0.3  # a change in 27 of 216 locations (a rise of the whole mean by 1 SD)
    meta = rng.normal(size=(3, 3))
    plain, changed, _ = reference.score(_mapped(records, meta))
    assert changed.flagged and changed.atypical == ("image",) and not plain.flagged
    assert changed.scores["image_local:3"] > changed.scores["image"] + 1.5  # the local statistic tells, the mean less
    half = np.zeros((3, 6, 6, 6), dtype=bool)
    half[:, :3] = True  # the kept half holds the change
    elsewhere = ~half
    inside, outside = reference.score(_mapped(records[1:], np.full((2, 3), np.nan), keep=np.stack([half[1], elsewhere[2]])))
    assert inside.flagged and inside.masked and not outside.flagged
    assert set(inside.parts) == {"image"}  # a masked record's metadata term would read what the mask drops
    whole = reference.score(_mapped(records, meta, keep=np.ones((3, 6, 6, 6), dtype=bool)))
    for masked, unmasked in zip(whole, (plain, changed, _)):
        assert masked.parts["image"] == pytest.approx(unmasked.parts["image"])
    alone = TypicalityReference.from_terms({"age,image": _mapped(_maps(rng, 60), np.full((60, 3), np.nan))},
                                           levels=3, seed=0)  # the image given alone: the whole percentile is its
    nan = np.full((3, 3), np.nan)
    masked = alone.score(_mapped(records, nan, keep=np.ones((3, 6, 6, 6), dtype=bool)))
    for masked, unmasked in zip(masked, alone.score(_mapped(records, nan))):
        assert masked.percentile == pytest.approx(unmasked.percentile) and masked.masked and not unmasked.masked


def test_a_record_without_a_usable_reference_has_no_percentile():
    reference = TypicalityReference.from_terms({"age,image": _terms([1.0, 2.0, 1.5, 1.2], [1.0, 2.0, 1.1, 0.4])},
                                               levels=5, seed=0)
    (other,) = reference.score(_terms([1.5], [float("nan")], given="image"))
    assert np.isnan(other.percentile) and not other.flagged
    masked = _terms([1.5], [1.0], keep=np.ones((1, 2, 2), dtype=bool))  # a mask, but no maps to read it on
    assert np.isnan(reference.score(masked)[0].percentile)
    small = TypicalityReference.from_terms({"age,image": _terms([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])}, levels=5, seed=0)
    assert np.isnan(small.score(_terms([1.5], [1.5]))[0].percentile)  # 3 records: too few to standardise and fit
    assert TypicalityReference.from_dict(reference.to_dict()).losses == reference.losses
    with pytest.raises(InputError, match="threshold"):
        reference.score(_terms([1.0], [1.0]), threshold=100.0)


def test_a_categorical_value_is_flagged_only_when_the_model_finds_its_class_improbable():
    """Image and sex given, no continuous metadata: the metadata part is sex's model-implied score alone, so a class
    the model gives p = 0.2 (mid-p 0.1) is ordinary however far its cross-entropy lies from the other records'."""
    rng = np.random.default_rng(3)
    n = 60
    val = _terms(rng.normal(size=(n, 3)), np.full((n, 3), np.nan), given="image,sex")
    val.category_midp = {"sex": torch.tensor(rng.uniform(0.0, 1.0, n))}
    reference = TypicalityReference.from_terms({"image,sex": val}, levels=3, seed=0)
    assert TypicalityReference.from_dict(reference.to_dict()).classes == reference.classes
    records = _terms(np.zeros((4, 3)), np.full((4, 3), np.nan), given="image,sex")
    records.category_midp = {"sex": torch.tensor([0.6, 0.1, 0.02, 0.0005])}  # p_c 0.8, 0.2, 0.04, 0.001 (K = 2)
    likely, unlikely, rare, improbable = reference.score(records)
    assert set(likely.scores) == {"image", "metadata:sex"} and set(likely.parts) == {"image", "metadata"}
    assert not likely.flagged and not unlikely.flagged and not rare.flagged
    assert improbable.flagged and improbable.atypical == ("metadata",)
    assert improbable.scores["metadata:sex"] == pytest.approx(3.2905, abs=1e-3)  # Φ⁻¹(1 - 0.0005), whatever the reference
    assert unlikely.parts["metadata"] < 95
    gone = _terms(np.zeros((1, 3)), np.full((1, 3), np.nan), given="image,sex")  # its sex not read: no percentile
    assert np.isnan(reference.score(gone)[0].percentile)


def test_the_class_score_is_the_upper_normal_quantile_of_the_mid_p_value():
    np.testing.assert_allclose(class_score(np.array([0.5, 0.1, 0.9, 1e-12])),
                               [0.0, 1.2815516, -1.2815516, 7.0344838], rtol=1e-6)
    assert class_score(np.array([0.0]))[0] == np.inf
