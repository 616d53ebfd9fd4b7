"""Scalar metrics: hand formulas, hypothesis properties (MAE, ECE, accuracy under permutation), coverage of
calibrated samples, AUROC extremes, tie-breaking and one-line refusals of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.evaluation import calibration_curve, classification_metrics, regression_metrics, sample_frequencies

finite = st.floats(-100, 100, allow_nan=False, width=64)


@st.composite
def regression_case(draw):
    n, s = draw(st.integers(1, 12)), draw(st.integers(1, 5))
    samples = np.array(draw(st.lists(finite, min_size=n * s, max_size=n * s))).reshape(n, s)
    truth = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    return samples, truth


@given(regression_case())
def test_mae_is_non_negative_and_the_hand_formula(case):
    samples, truth = case
    out = regression_metrics(samples, truth)
    error = samples.mean(axis=1) - truth
    assert out["mae"] >= 0
    assert out["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-12, abs=1e-12)
    assert out["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-12, abs=1e-12)
    assert out["bias"] == pytest.approx(error.mean(), rel=1e-12, abs=1e-9)
    assert out["rmse"] >= out["mae"] - 1e-9
    assert out["n"] == len(truth)
    assert math.isnan(out["coverage"]) == (samples.shape[1] < 2) == math.isnan(out["coverage_level"])
    assert math.isnan(out["mean_sample_variance"]) == (samples.shape[1] == 1)


def test_regression_values_on_a_small_case():
    samples = torch.tensor([[1.0, 3.0], [2.0, 2.0], [5.0, 7.0]])  # means 2, 2, 6
    out = regression_metrics(samples, torch.tensor([1.0, 2.0, 8.0]), level=0.5)
    assert out["mae"] == pytest.approx(1.0)  # |1|, 0, |-2|
    assert out["mae_sd"] == pytest.approx(1.0)
    assert out["bias"] == pytest.approx(-1 / 3)
    assert out["mean_sample_variance"] == pytest.approx((2 + 0 + 2) / 3)
    assert out["pearson_r"] == pytest.approx(np.corrcoef([2, 2, 6], [1, 2, 8])[0, 1])
    # two samples: [min, max] is the only interval, a 1/3 interval whatever level asks for
    assert out["coverage"] == pytest.approx(2 / 3) and out["coverage_level"] == pytest.approx(1 / 3)
    assert out["crps"] == pytest.approx(((1 - 1) + 0 + (2 - 1)) / 3)  # fair CRPS: mean |x - y| - |x1 - x2|/2
    assert out["spread_skill"] == pytest.approx(((1 + 0 + 4) / 3) / (1.5 * 4 / 3))


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_of_calibrated_gaussian_samples_is_near_the_level(level):
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(4000, generator=generator, dtype=torch.float64) * 3
    truth = mean + torch.randn(4000, generator=generator, dtype=torch.float64)
    samples = mean[:, None] + torch.randn(4000, 400, generator=generator, dtype=torch.float64)
    out = regression_metrics(samples, truth, level=level)
    assert out["coverage"] == pytest.approx(level, abs=0.025)
    assert out["mean_sample_variance"] == pytest.approx(1.0, abs=0.02)


def test_overconfident_samples_under_cover():
    generator = torch.Generator().manual_seed(1)
    truth = torch.randn(2000, generator=generator, dtype=torch.float64)
    samples = 0.2 * torch.randn(2000, 100, generator=generator, dtype=torch.float64)
    assert regression_metrics(samples, truth)["coverage"] < 0.3


@pytest.mark.parametrize("samples, truth, level, match", [
    (np.zeros((3, 2)), np.zeros(4), 0.9, "3 subjects but truth has 4"),
    (np.zeros((3, 2)), np.zeros(3), 1.0, "level must be in"),
    (np.full((2, 2), np.nan), np.zeros(2), 0.9, "NaN or infinite"),
    (np.zeros((2, 2, 2)), np.zeros(2), 0.9, "expected 1-D or 2-D"),
])
def test_regression_refuses_bad_input_in_one_line(samples, truth, level, match):
    with pytest.raises(InputError, match=match) as info:
        regression_metrics(samples, truth, level=level)
    assert "\n" not in str(info.value)


@given(st.integers(1, 6), st.integers(1, 8), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_sample_frequencies_rows_sum_to_one_and_count(n, s, k, seed):
    samples = torch.randint(0, k, (n, s), generator=torch.Generator().manual_seed(seed))
    p = sample_frequencies(samples, k)
    assert p.shape == (n, k) and p.dtype == torch.float64
    assert torch.allclose(p.sum(dim=1), torch.ones(n, dtype=torch.float64))
    assert torch.equal(p * s, torch.stack([torch.bincount(row, minlength=k) for row in samples]).double())


@st.composite
def calibrated_case(draw):
    """Groups of m subjects sharing confidence c = j/m for class 0, exactly j of them truly class 0."""
    probs, truth = [], []
    for _ in range(draw(st.integers(1, 5))):
        m = draw(st.integers(1, 8))
        j = draw(st.integers((m + 1) // 2, m))  # c >= 0.5 so class 0 is the prediction
        probs += [[j / m, 1 - j / m]] * m
        truth += [0] * j + [1] * (m - j)
    return np.array(probs), np.array(truth)


@given(calibrated_case())
def test_ece_is_zero_for_a_perfectly_calibrated_case(case):
    probs, truth = case
    assert classification_metrics(truth, probs=probs, classes=2)["ece"] == pytest.approx(0.0, abs=1e-12)


@st.composite
def probability_case(draw):
    n, k = draw(st.integers(1, 15)), draw(st.integers(2, 4))
    logits = np.array(draw(st.lists(st.floats(-5, 5), min_size=n * k, max_size=n * k))).reshape(n, k)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return probs, truth, k


@given(probability_case())
def test_ece_and_brier_stay_in_range_and_the_curve_counts_everyone(case):
    probs, truth, k = case
    out = classification_metrics(truth, probs=probs, classes=k)
    assert 0.0 <= out["ece"] <= 1.0
    assert 0.0 <= out["brier"] <= 2.0 and out["nll"] >= 0
    assert 0.0 <= out["prob_accuracy"] <= 1.0
    assert sum(count for _, _, count in calibration_curve(truth, probs)) == len(truth)


@given(probability_case(), st.randoms(use_true_random=False))
def test_accuracy_is_invariant_to_permuting_subjects(case, rng):
    probs, truth, k = case
    samples = np.stack([probs.argmax(axis=1), (probs.argmax(axis=1) + 1) % k, probs.argmin(axis=1)], axis=1)
    order = list(range(len(truth)))
    rng.shuffle(order)
    before = classification_metrics(truth, samples=samples, probs=probs, classes=k)
    after = classification_metrics(truth[order], samples=samples[order], probs=probs[order], classes=k)
    for key in ("accuracy", "prob_accuracy", "ece", "nll", "brier"):
        assert after[key] == pytest.approx(before[key], abs=1e-12)


def test_auroc_of_a_perfect_ranking_is_one_and_of_a_reversed_one_zero():
    truth = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.2, 0.7, 0.9, 0.3, 0.6])
    probs = np.stack([1 - p1, p1], axis=1)
    assert classification_metrics(truth, probs=probs, classes=2)["auroc"] == 1.0
    assert classification_metrics(truth, probs=probs[:, ::-1], classes=2)["auroc"] == 0.0
    truth3 = np.array([0, 1, 2, 0, 1, 2])
    probs3 = np.eye(3)[truth3] * 0.7 + 0.1
    assert classification_metrics(truth3, probs=probs3, classes=["a", "b", "c"])["auroc"] == 1.0
    reversed3 = (1 - np.eye(3)[truth3]) * 0.5
    assert classification_metrics(truth3, probs=reversed3, classes=3)["auroc"] == 0.0


def test_auroc_is_nan_with_a_reason_when_one_class_occurs():
    out = classification_metrics(np.zeros(4, dtype=int), probs=np.full((4, 2), 0.5), classes=2)
    assert math.isnan(out["auroc"]) and "only class 0" in out["auroc_reason"]
    three = classification_metrics(np.array([0, 1, 0, 1]), probs=np.full((4, 3), 1 / 3), classes=3)
    assert not math.isnan(three["auroc"]) and "[2]" in three["auroc_reason"]


def test_majority_vote_ties_go_to_the_more_probable_class_then_the_lower_index():
    samples = np.array([[0, 1], [0, 1], [2, 2]])
    truth = np.array([1, 0, 2])
    by_frequency = classification_metrics(truth, samples=samples, classes=3)
    assert by_frequency["accuracy"] == pytest.approx(2 / 3)  # ties -> class 0: wrong, right, right
    probs = np.array([[0.3, 0.7, 0.0], [0.3, 0.7, 0.0], [0.0, 0.0, 1.0]])
    by_probability = classification_metrics(truth, samples=samples, probs=probs, classes=3)
    assert by_probability["accuracy"] == pytest.approx(2 / 3)  # ties -> class 1: right, wrong, right
    assert by_probability["prob_accuracy"] == pytest.approx((0.7 + 0.3 + 1.0) / 3)


def test_nll_brier_and_calibration_curve_by_hand():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.95, 0.05]])
    truth = np.array([0, 0, 1])
    out = classification_metrics(truth, probs=probs, classes=2)
    assert out["nll"] == pytest.approx(-(np.log(0.8) + np.log(0.4) + np.log(0.05)) / 3)
    assert out["brier"] == pytest.approx((2 * 0.2**2 + 2 * 0.6**2 + 2 * 0.95**2) / 3)
    assert calibration_curve(truth, probs) == [(0.6, 0.0, 1), (0.8, 1.0, 1), (0.95, 0.0, 1)]
    assert out["ece"] == pytest.approx((0.6 + 0.2 + 0.95) / 3)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "neither samples nor probs"),
    ({"probs": np.array([[0.5, 0.6], [0.5, 0.5]])}, "sum to 1"),
    ({"samples": np.array([[0, 3], [1, 1]])}, r"class indices in 0\.\.1"),
    ({"probs": np.full((2, 3), 1 / 3)}, r"expected shape \(2, 2\)"),
])
def test_classification_refuses_bad_input_in_one_line(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        classification_metrics(np.array([0, 1]), classes=2, **kwargs)
    assert "\n" not in str(info.value)
