"""Brain-age outputs: the bias correction removes the PAD-age correlation it was fitted on, the centile is a rank."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.evaluation.brain_age import BiasCorrection, brain_age_metrics, difference_columns, true_centile


@given(st.integers(0, 10_000), st.floats(0.2, 1.2), st.floats(-20, 40), st.integers(5, 60))
def test_the_correction_leaves_no_correlation_with_age_on_its_fitting_records(seed, slope, intercept, n):
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 90, n)
    predicted = intercept + slope * age + rng.normal(0, 3, n)
    fit = BiasCorrection.fit(predicted, age)
    corrected_pad = fit.corrected_pad(predicted, age)
    assert abs(np.corrcoef(corrected_pad, age)[0, 1]) < 1e-6 or np.std(corrected_pad) < 1e-9
    assert np.allclose(fit.corrected(predicted, age), corrected_pad + age)
    assert abs(corrected_pad.mean()) < 1e-6  # the residual of a least-squares fit with an intercept
    assert fit.residual_sd == pytest.approx(np.std(corrected_pad, ddof=2), rel=1e-9, abs=1e-12)
    assert BiasCorrection.from_dict(fit.to_dict()) == fit


def test_a_shrunk_prediction_is_corrected_back_to_the_truth():
    age = np.linspace(40, 90, 11)
    predicted = 65 + 0.5 * (age - 65)  # regression to the mean: raw PAD falls with age
    fit = BiasCorrection.fit(predicted, age)
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(32.5)
    metrics = brain_age_metrics(predicted, age, fit)
    assert metrics["before"]["pad_age_r"] == pytest.approx(-1.0)
    assert metrics["after"]["mae"] == pytest.approx(0.0, abs=1e-9) and metrics["after"]["r2"] == pytest.approx(1.0)
    assert metrics["before"]["r"] == pytest.approx(1.0) and metrics["before"]["r2"] < 1.0


def test_r2_is_the_coefficient_of_determination_not_r_squared():
    age = np.array([50.0, 60.0, 70.0, 80.0])
    predicted = age + 30  # perfectly correlated, badly off
    metrics = brain_age_metrics(predicted, age)
    assert metrics["before"]["r"] == pytest.approx(1.0)
    assert metrics["before"]["r2"] == pytest.approx(1 - (4 * 900) / 500)
    assert metrics["before"]["mae"] == pytest.approx(30.0) and metrics["after"] is None


def test_a_correction_needs_two_different_ages():
    with pytest.raises(InputError, match="at least 2 records with different true values"):
        BiasCorrection.fit([60.0, 61.0], [70.0, 70.0])


@given(st.integers(0, 10_000), st.integers(1, 30))
def test_the_centile_is_the_mid_rank_of_the_truth_and_uniform_when_calibrated(seed, s):
    rng = np.random.default_rng(seed)
    samples = rng.normal(size=(400, s))
    truth = rng.normal(size=400)  # drawn like the samples: a calibrated model
    centile = true_centile(samples, truth)
    assert ((centile > 0) & (centile < 100)).all()
    rank = (samples < truth[:, None]).sum(axis=1)
    assert np.allclose(centile, 100 * (rank + 0.5) / (s + 1))
    assert abs(centile.mean() - 50) < 6  # uniform on the S + 1 bin midpoints: mean 50


def test_the_centile_of_a_truth_below_every_sample_is_the_lowest_bin():
    assert true_centile(np.array([[60.0, 70.0, 80.0]]), np.array([50.0]))[0] == pytest.approx(12.5)
    assert true_centile(np.array([[60.0, 70.0, 80.0]]), np.array([90.0]))[0] == pytest.approx(87.5)
    assert np.isnan(true_centile(np.array([[60.0, 70.0, 80.0]]), np.array([np.nan]))[0])


def test_columns_are_named_as_brain_age_users_know_them():
    assert difference_columns("age") == {"pad": "brain_pad", "pad_corrected": "brain_pad_corrected",
                                         "corrected": "brain_age_corrected", "centile": "age_centile"}
    assert difference_columns("bmi")["pad"] == "bmi_difference"
