"""The sampled check of a continuous value: Student's t tail in closed form, and a false-flag rate at its level when
the value is one more draw from the samples' own distribution (where a plain normal fit of S samples is not)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.evaluation.predictive_check import sampled_check, student_t_tail


@pytest.mark.parametrize("df, quantile, tail", [(1, 1.0, 0.5), (2, 4.302653, 0.05), (5, 2.570582, 0.05),
                                                (15, 2.946713, 0.01), (30, 2.749996, 0.01), (1000, 1.962339, 0.05)])
def test_the_tail_matches_tabulated_quantiles(df, quantile, tail):
    assert student_t_tail(quantile, df) == pytest.approx(tail, abs=2e-6)
    assert student_t_tail(-quantile, df) == pytest.approx(tail, abs=2e-6)


@given(st.integers(1, 40), st.floats(0.0, 8.0))
def test_the_tail_is_the_integral_of_the_density(df, x):
    grid = torch.linspace(0.0, x, 4001, dtype=torch.float64)
    density = torch.distributions.StudentT(torch.tensor(float(df), dtype=torch.float64)).log_prob(grid).exp()
    assert float(student_t_tail(x, df)) == pytest.approx(1 - 2 * float(torch.trapezoid(density, grid)), abs=1e-6)


def test_a_value_drawn_like_the_samples_is_flagged_at_the_level_a_plain_normal_fit_overshoots():
    rng = np.random.default_rng(0)
    n, s = 40_000, 16
    centre, spread = rng.uniform(40, 90, n), rng.uniform(2, 8, n)
    samples = centre[:, None] + spread[:, None] * rng.standard_normal((n, s))
    truth = centre + spread * rng.standard_normal(n)
    check = sampled_check(samples, truth, level=0.99)
    se = math.sqrt(0.01 * 0.99 / n)
    assert abs(check.flagged.mean() - 0.01) < 3 * se
    plain = np.abs(samples.mean(1) - truth) / samples.std(1, ddof=1) > 2.5758
    assert plain.mean() > 0.02  # what the t predictive corrects
    assert abs(check.centile.mean() - 50) < 0.5
    far = sampled_check(samples[:100], centre[:100] + 20 * spread[:100], level=0.99)
    assert far.flagged.all() and (far.t < 0).all() and (far.centile > 90).all()


def test_degenerate_samples_flag_only_a_different_value_and_bad_input_is_refused():
    check = sampled_check(np.full((2, 4), 70.0), [70.0, 71.0])
    assert check.flagged.tolist() == [False, True] and check.t[1] == -np.inf
    with pytest.raises(InputError, match="at least 3 samples"):
        sampled_check(np.zeros((2, 2)), [0.0, 0.0])
    with pytest.raises(InputError, match=r"\(N, S\)"):
        sampled_check(np.zeros((3, 5)), [0.0, 0.0])
    with pytest.raises(InputError, match="level"):
        sampled_check(np.zeros((2, 5)), [0.0, 0.0], level=1.0)
