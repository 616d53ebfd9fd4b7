"""The MetaVoxel method learns: one model on the toy cohort regresses, classifies and generates.

The 2D toy (metavoxel.toy) encodes a continuous age (blob radius and brightness) and a 3-class group
(blob position) in each image. After ~1 minute of CPU training, zero-shot prediction with the image
fixed must beat the trivial predictors by a wide margin, and unconditional samples must reproduce the
marginals of both scalars.
"""

from __future__ import annotations

import pytest
import torch

import metavoxel as mv
from metavoxel.toy import GROUP_PROBS, TOY_SPEC, toy_cohort
from metavoxel.training import fit


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = mv.JointModel(TOY_SPEC)
    train = toy_cohort(2000, seed=0)
    history = fit(model, train, steps=600, batch_size=32, seed=0)
    return model, train, history


def test_training_reduces_the_loss(trained):
    _model, _train, history = trained
    assert sum(history[-50:]) / 50 < 0.5 * sum(history[:20]) / 20


def test_zero_shot_regression_and_classification(trained):
    model, train, _ = trained
    test = toy_cohort(64, seed=1)
    reg = model.sample(fix={"image": test["image"], "group": test["group"]}, num_samples=3, seed=0)
    mae = (torch.tensor(reg.summary("age")["mean"]) - test["age"]).abs().mean().item()
    baseline = (train["age"].mean() - test["age"]).abs().mean().item()
    assert mae < 0.4 * baseline, f"age MAE {mae:.2f} vs training-mean MAE {baseline:.2f}"

    cls = model.sample(fix={"image": test["image"], "age": test["age"]}, num_samples=3, seed=0)
    accuracy = sum(p == g for p, g in zip(cls.summary("group")["majority"], test["group"])) / len(test["group"])
    assert accuracy > 0.75, f"group accuracy {accuracy:.2f} (majority class {max(GROUP_PROBS):.2f})"


def test_unconditional_samples_reproduce_the_scalar_marginals(trained):
    model, train, _ = trained
    free = model.sample(num_subjects=256, seed=0)
    ages = free.samples["age"].flatten()
    assert abs(ages.mean().item() - train["age"].mean().item()) < 6.0
    assert 0.7 < ages.std().item() / train["age"].std().item() < 1.5
    freq = torch.bincount(free.samples["group"].flatten(), minlength=3).double() / ages.numel()
    assert (freq - torch.tensor(GROUP_PROBS, dtype=torch.float64)).abs().max() < 0.12, freq.tolist()


def test_likelihood_classification_is_accurate_and_deterministic(trained):
    from metavoxel.diffusion import class_probabilities, class_scores, fit_temperature

    model, _train, _ = trained
    val, test = toy_cohort(48, seed=2), toy_cohort(48, seed=1)
    truth = lambda d: torch.tensor([["A", "B", "C"].index(g) for g in d["group"]])  # noqa: E731
    scores = class_scores(model, {"image": test["image"], "age": test["age"]}, "group", timesteps=10, seed=0)
    again = class_scores(model, {"image": test["image"], "age": test["age"]}, "group", timesteps=10, seed=0)
    assert torch.equal(scores, again)
    accuracy = (scores.argmin(dim=1) == truth(test)).double().mean().item()
    assert accuracy > 0.75, f"likelihood accuracy {accuracy:.2f} (majority class {max(GROUP_PROBS):.2f})"
    tau = fit_temperature(class_scores(model, {"image": val["image"], "age": val["age"]}, "group", timesteps=10),
                          truth(val))
    probs = class_probabilities(scores, tau)
    assert torch.allclose(probs.sum(dim=1), torch.ones(48, dtype=torch.float64))
    assert torch.equal(probs.argmax(dim=1), scores.argmin(dim=1))  # temperature never changes the ranking
