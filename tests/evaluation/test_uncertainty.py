"""Uncertainty scores: CRPS against brute force and the Gaussian closed form, the rank histogram and its
chi-square, spread-skill of calibrated, overconfident and underconfident samplers, coverage at its ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.evaluation import regression_metrics
from metavoxel.evaluation.uncertainty import (coverage_note, crps_ensemble, gaussian_crps, interval_coverage,
                                              rank_histogram, spread_skill, uncertainty_metrics)

finite = st.floats(-50, 50, allow_nan=False, width=64)


def ensemble(n: int, s: int, seed: int, width: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Heteroscedastic Gaussian predictive distributions; the truth is one more draw at width 1."""
    g = torch.Generator().manual_seed(seed)
    centre = 10 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    sigma = 0.5 + 1.5 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    truth = (centre + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64))[:, 0]
    return centre + width * sigma * torch.randn(n, s, generator=g, dtype=torch.float64), truth


@given(st.integers(1, 5), st.integers(1, 7), st.data())
def test_crps_is_the_energy_form_summed_by_brute_force(n, s, data):
    x = np.array(data.draw(st.lists(finite, min_size=n * s, max_size=n * s))).reshape(n, s)
    y = np.array(data.draw(st.lists(finite, min_size=n, max_size=n)))
    expected = np.abs(x - y[:, None]).mean(axis=1)
    if s > 1:
        expected -= np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2)) / (2 * s * (s - 1))
    out = crps_ensemble(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert out == pytest.approx(expected, abs=1e-9)
    assert (out >= -1e-9).all()  # |x_s - x_s'| <= |x_s - y| + |x_s' - y|: the pair term never exceeds the first


@given(st.integers(1, 6), finite, finite)
def test_a_point_ensemble_scores_its_absolute_error(s, value, truth):
    out = crps_ensemble(torch.full((1, s), value, dtype=torch.float64), torch.tensor([truth], dtype=torch.float64))
    assert float(out[0]) == pytest.approx(abs(value - truth), abs=1e-9)


def test_gaussian_crps_closed_form_values():
    # z = 0: sd (2 phi(0) - 1/sqrt(pi)) = sd (sqrt(2/pi) - 1/sqrt(pi))
    assert float(gaussian_crps(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.0))) == pytest.approx(
        2 * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi)))
    far = gaussian_crps(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                        torch.tensor(30.0, dtype=torch.float64))  # far out, CRPS -> |y - mu| - sd/sqrt(pi)
    assert float(far) == pytest.approx(30 - 1 / math.sqrt(math.pi), rel=1e-9)


@settings(derandomize=True, max_examples=15)
@given(st.floats(-20, 20), st.floats(0.2, 5.0), st.floats(-3, 3), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_mean_crps_of_gaussian_samples_is_the_closed_form_at_any_s(mu, sd, z, s, seed):
    # Unbiased ("fair") at small S: the plug-in estimator would be 1/S * sd/sqrt(pi) too high here.
    n, y = 4000, mu + z * sd
    g = torch.Generator().manual_seed(seed)
    x = mu + sd * torch.randn(n, s, generator=g, dtype=torch.float64)
    estimate = float(crps_ensemble(x, torch.full((n,), y, dtype=torch.float64)).mean())
    exact = float(gaussian_crps(torch.tensor(mu), torch.tensor(sd), torch.tensor(y)))
    assert estimate == pytest.approx(exact, abs=0.04 * sd * (1 + abs(z)))


def test_rank_histogram_by_hand_and_ties_split_at_random():
    samples = torch.tensor([[1.0, 2.0, 3.0]] * 4)
    out = rank_histogram(samples, torch.tensor([0.0, 2.5, 9.0, 1.5]))
    assert out["counts"] == [1, 1, 1, 1] and out["dof"] == 3 and out["chi2"] == 0.0 and out["p_value"] == 1.0
    tied = rank_histogram(torch.zeros(4000, 3), torch.zeros(4000))  # every sample equals the truth
    assert sum(tied["counts"]) == 4000 and min(tied["counts"]) > 900


def test_rank_histogram_p_value_is_the_chi_square_tail():
    out = rank_histogram(torch.tensor([[0.0, 1.0]] * 3), torch.tensor([-1.0, -1.0, 0.5]))  # counts 2, 1, 0
    assert out["counts"] == [2, 1, 0] and out["chi2"] == pytest.approx(2.0)
    assert out["p_value"] == pytest.approx(math.exp(-1.0))  # 2 degrees of freedom: the tail is exp(-chi2/2)


@pytest.mark.parametrize("width, flat", [(1.0, True), (0.3, False), (3.0, False)])
def test_rank_histogram_is_flat_only_for_a_calibrated_sampler(width, flat):
    out = rank_histogram(*ensemble(3000, 9, seed=1, width=width))
    assert (out["p_value"] > 1e-3) == flat
    counts = out["counts"]
    if width < 1:  # overconfident: the truth falls outside the samples (U shape)
        assert counts[0] + counts[-1] > 4 * out["expected"]
    if width > 1:  # underconfident: the truth sits in the middle (a hump)
        assert counts[0] + counts[-1] < 0.5 * out["expected"]


@pytest.mark.parametrize("s", [2, 3, 10])
@pytest.mark.parametrize("width", [1.0, 0.5, 2.0])
def test_spread_skill_is_one_for_a_calibrated_sampler_and_off_by_the_known_factor_otherwise(s, width):
    out = spread_skill(*ensemble(8000, s, seed=s, width=width))
    # E (m - y)^2 = sigma^2 (1 + w^2/S), E v = w^2 sigma^2
    expected = (1 + width**2 / s) / ((1 + 1 / s) * width**2)
    assert out["spread_skill"] == pytest.approx(expected, rel=0.08)


def test_spread_skill_needs_two_samples():
    out = spread_skill(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 0.0]))
    assert math.isnan(out["spread_skill"]) and out["mse_of_mean"] == pytest.approx(2.5)


@pytest.mark.parametrize("s, ceiling", [(3, 0.5), (5, 4 / 6), (20, 19 / 21)])
def test_calibrated_coverage_reaches_the_ceiling_and_the_old_percentile_rule_is_gone(s, ceiling):
    out = interval_coverage(*ensemble(6000, s, seed=7), level=0.9)
    assert out["coverage_level"] == pytest.approx(ceiling)
    assert abs(out["coverage"] - ceiling) < 4.5 * out["coverage_se"]


def test_the_note_names_the_real_level_and_what_a_90_percent_coverage_needs():
    assert "level 50%" in coverage_note(3) and "--num-samples 20" in coverage_note(3)
    assert "level 90.5%" in coverage_note(20) and "--num-samples" not in coverage_note(20)
    assert "sorted sample 2 to sorted sample 39" in coverage_note(40)
    assert "no interval" in coverage_note(1)


def test_uncertainty_metrics_and_regression_metrics_agree():
    samples, truth = ensemble(50, 4, seed=3)
    every, reg = uncertainty_metrics(samples, truth), regression_metrics(samples, truth)
    for key in ("crps", "spread_skill", "coverage", "coverage_level", "mean_sample_variance"):
        assert every[key] == pytest.approx(reg[key])
    assert sum(every["rank_histogram"]["counts"]) == 50 and every["num_samples"] == 4


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match="same N"):
        crps_ensemble(torch.zeros(3, 2), torch.zeros(4))
