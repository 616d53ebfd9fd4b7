"""Interval and class summaries: the order-statistic rule, its exact coverage under exchangeability, calibrated
samples covering at the stated level, labels that never round up to a rounder claim."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.variables import (class_summary, interval_level, interval_rank, interval_summary, level_label,
                                 samples_for_level)

levels = st.sampled_from([0.5, 0.68, 0.8, 0.9, 0.95, 0.99])


@given(st.integers(1, 500), st.floats(0.01, 0.99))
def test_the_rule_is_the_narrowest_interval_reaching_the_level_else_min_to_max(s, level):
    k, real = interval_rank(s, level), interval_level(s, level)
    assert 1 <= k <= (s + 1) // 2 and real == pytest.approx((s + 1 - 2 * k) / (s + 1))
    if s >= samples_for_level(level):
        assert real >= level - 1e-8  # the rule's 1e-9 guard against float error in (S + 1)(1 - level)/2
        if k + 1 <= (s + 1) // 2:  # one step narrower falls below the level
            assert (s + 1 - 2 * (k + 1)) / (s + 1) < level
    else:
        assert k == 1 and real < level


def test_the_levels_the_issue_names():
    assert [interval_level(s) for s in (1, 2, 3, 19)] == [0.0, pytest.approx(1 / 3), 0.5, pytest.approx(0.9)]
    assert interval_level(20) == pytest.approx(19 / 21) and interval_rank(39) == 2 and interval_level(39) == 0.9
    assert samples_for_level(0.9) == 19 and samples_for_level(0.5) == 3


@given(st.integers(1, 60), levels)
def test_coverage_is_exactly_the_level_when_the_truth_is_exchangeable_with_the_samples(s, level):
    # Exchangeable and continuous: the truth's rank among the S + 1 values is uniform on 0..S. Put the truth
    # in each of the S + 1 gaps between distinct samples and count the gaps the interval covers.
    samples = torch.arange(1, s + 1, dtype=torch.float64)[None].expand(s + 1, s)  # (S + 1, S)
    truth = torch.arange(s + 1, dtype=torch.float64) + 0.5  # gap r: r samples below the truth
    summary = interval_summary(samples, level)
    lower, upper = torch.tensor(summary["lower"]), torch.tensor(summary["upper"])
    covered = int(((lower <= truth) & (truth <= upper)).sum())
    assert Fraction(covered, s + 1) == Fraction(s + 1 - 2 * interval_rank(s, level), s + 1)
    assert summary["level"] == [pytest.approx(covered / (s + 1))] * (s + 1)


@settings(derandomize=True, max_examples=12)
@given(st.integers(2, 40), levels, st.integers(0, 2**31 - 1))
def test_calibrated_samples_cover_at_the_stated_level(s, level, seed):
    n = 3000
    g = torch.Generator().manual_seed(seed)
    centre, scale = 10 * torch.randn(n, 1, generator=g, dtype=torch.float64), 0.5 + torch.rand(n, 1, generator=g)
    draws = centre + scale * torch.randn(n, s + 1, generator=g, dtype=torch.float64)  # truth = column 0
    summary = interval_summary(draws[:, 1:], level)
    truth, real = draws[:, 0], summary["level"][0]
    lower, upper = torch.tensor(summary["lower"]), torch.tensor(summary["upper"])
    covered = float(((lower <= truth) & (truth <= upper)).double().mean())
    assert abs(covered - real) <= 4.5 * math.sqrt(real * (1 - real) / n) + 1e-9


def test_three_samples_give_their_min_to_max_as_a_50_percent_interval():
    summary = interval_summary(torch.tensor([[3.0, 1.0, 2.0], [5.0, 5.0, 9.0]]))
    assert summary["lower"] == [1.0, 5.0] and summary["upper"] == [3.0, 9.0]
    assert summary["level"] == [0.5, 0.5] and summary["num_samples"] == [3, 3]
    assert summary["mean"] == pytest.approx([2.0, 19 / 3]) and summary["sd"][0] == pytest.approx(1.0)


def test_one_sample_is_a_point_with_level_zero():
    summary = interval_summary(torch.tensor([[4.0]]))
    assert summary == {"mean": [4.0], "sd": [0.0], "lower": [4.0], "upper": [4.0], "level": [0.0], "num_samples": [1]}


@given(st.integers(1, 2000))
def test_a_label_says_90_percent_only_for_a_90_percent_interval(s):
    real = interval_level(s, 0.9)
    assert (level_label(real) == "90%") == (abs(real - 0.9) < 1e-12)


def test_labels():
    assert [level_label(x) for x in (0.5, 2 / 3, 19 / 21, 0.9, 0.0)] == ["50%", "66.7%", "90.5%", "90%", "0%"]


@pytest.mark.parametrize("s, level, match", [(0, 0.9, "at least one sample"), (3, 1.0, "in \\(0, 1\\)")])
def test_bad_levels_are_refused(s, level, match):
    with pytest.raises(InputError, match=match):
        interval_rank(s, level)


def test_class_summary_states_its_sample_count():
    summary, probs = class_summary(torch.tensor([[0, 1, 1], [2, 2, 2]]), ["a", "b", "c"])
    assert summary["num_samples"] == [3, 3] and summary["majority"] == ["b", "c"]
    assert probs.tolist() == [[1 / 3, 2 / 3, 0.0], [0.0, 0.0, 1.0]]
