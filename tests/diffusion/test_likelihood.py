"""Likelihood classification: shared noise across classes, determinism, temperature fitting."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import metavoxel as mv
from metavoxel.diffusion import class_probabilities, class_scores, fit_temperature
from metavoxel.diffusion.likelihood import _shared_noise, _timesteps
from tiny_specs import tiny_spec_2d


@pytest.fixture(scope="module")
def model():
    return mv.JointModel(tiny_spec_2d())


def test_class_copies_share_every_random_draw(model):
    z0, present = model.encode_batch({"image": torch.rand(3, 1, 8, 8), "age": [50.0, 60.0, 70.0]})
    k = 3
    z = {n: v.repeat_interleave(k, dim=0) for n, v in z0.items()}
    p = {n: v.repeat_interleave(k, dim=0) for n, v in present.items()}
    z["group"] = torch.arange(k).repeat(3)
    p["group"] = torch.ones(9, dtype=torch.bool)
    t = torch.full((9,), 40, dtype=torch.long)
    noisy = _shared_noise(model.diffusion, z, p, t, 3, k, [5, 6, 7])
    for name in ("image", "age"):
        rows = noisy.z_t[name].reshape(3, k, -1)
        assert torch.equal(rows[:, 0], rows[:, 1]) and torch.equal(rows[:, 0], rows[:, 2])
    assert not torch.equal(noisy.z_t["image"][0], noisy.z_t["image"][3])  # records differ


def test_scores_are_deterministic_and_shaped(model):
    fix = {"image": torch.rand(5, 1, 8, 8), "age": [50.0, 60.0, 70.0, 80.0, 90.0]}
    a = class_scores(model, fix, "group", timesteps=4, seed=1, batch_size=6)
    b = class_scores(model, fix, "group", timesteps=4, seed=1, batch_size=64)
    assert a.shape == (5, 3) and torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-6)  # batching does not change the answer
    assert not torch.equal(a, class_scores(model, fix, "group", timesteps=4, seed=2))


def test_a_two_image_model_scores_records_missing_their_second_image():
    """The images share one level: a missing second image is scored at the first one's level, not at T."""
    spec = tiny_spec_2d(diffusion={"timesteps": 100, "sampling_steps": 5, "training": {
        "shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.25}})
    spec["variables"] = [*spec["variables"], {"name": "flair", "kind": "image", "channels": 1, "shape": [8, 8]}]
    two = mv.JointModel(spec)
    scores = class_scores(two, {"image": torch.rand(2, 1, 8, 8), "age": [50.0, 60.0]}, "group", timesteps=2)
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()


def test_bad_targets_are_refused(model):
    with pytest.raises(mv.InputError, match="categorical"):
        class_scores(model, {"image": torch.rand(1, 1, 8, 8)}, "age")
    with pytest.raises(mv.InputError, match="do not also fix"):
        class_scores(model, {"image": torch.rand(1, 1, 8, 8), "group": ["A"]}, "group")


@given(st.integers(1, 1000), st.integers(1, 60))
def test_timesteps_are_stratified_and_in_range(total, count):
    grid = _timesteps(total, count)
    assert len(grid) == count and all(1 <= t <= total for t in grid)
    assert grid == sorted(grid)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 20.0), st.integers(0, 10_000))
def test_fit_temperature_recovers_the_generating_temperature(tau, seed):
    # 4000 records pin log τ to about ±0.05 (1 SD) for τ >= 0.5; below that the labels carry too little
    # information about τ for any fit to meet a fixed tolerance.
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    probs = class_probabilities(scores, tau)
    truth = torch.multinomial(probs, 1, generator=g)[:, 0]
    fitted = fit_temperature(scores, truth)
    assert abs(math.log(fitted) - math.log(tau)) < 0.35
