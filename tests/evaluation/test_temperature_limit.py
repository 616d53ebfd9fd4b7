"""The likelihood classifier says so when its temperature cannot be fitted (a validation split of one class)."""

from __future__ import annotations

import warnings

import pytest
import torch

from metavoxel.evaluation.zero_shot import CalibrationWarning, _warn_at_limit, likelihood_classification


def _records(n: int, group: list[str], seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 1, 8, 8, generator=g), "age": [50.0 + 5 * k for k in range(n)], "group": group}


def test_a_validation_split_of_one_class_warns_in_one_line(model_2d):
    with pytest.warns(CalibrationWarning) as caught:
        result = likelihood_classification(model_2d, _records(2, ["A", "B"], 1), _records(3, ["A"] * 3, 0), "group",
                                           ["image", "age"], timesteps=2)
    message = str(caught[0].message)
    assert result["temperature_at_limit"] is True
    assert "ran to its limit" in message and "all of class A" in message and "\n" not in message


@pytest.mark.parametrize("tau, expected", [(1e-3, True), (1e5, True), (0.999e5, True), (2.0, False), (0.05, False)])
def test_only_a_temperature_at_a_limit_warns(tau, expected):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _warn_at_limit(tau, torch.tensor([0, 1, 1]), ["A", "B"], "group") is expected
    assert len(caught) == int(expected)
    if expected:
        assert "classes A, B do not determine it" in str(caught[0].message)
