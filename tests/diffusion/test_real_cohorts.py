"""What real cohorts need: missing values, many classes, several images, several correlated scalars.

Each test trains a small model on a 2D toy for a minute or less on the CPU; the comparison of complete
vs 30%-missing ages trains twice and is marked slow (run with `make test-all`).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import metavoxel as mv
from metavoxel.toy import TOY_SPEC, toy_cohort
from metavoxel.training import fit

NET = {"spatial_dims": 2, "channels": [32, 64, 64], "attention_levels": [False, False, True], "num_res_blocks": 1,
       "num_head_channels": 32, "norm_num_groups": 16, "cross_attention_dim": 64}
GRID = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij"))  # (2, 16, 16)


def _blob(centre_y, centre_x, radius, brightness) -> torch.Tensor:
    """(n, 1, 16, 16) Gaussian blobs."""
    d2 = (GRID[0][None] - centre_y[:, None, None]) ** 2 + (GRID[1][None] - centre_x[:, None, None]) ** 2
    return (brightness[:, None, None] * torch.exp(-d2 / (2 * radius[:, None, None] ** 2)))[:, None]


def _age_mae(model, test, fix_keys=("image", "group")) -> float:
    result = model.sample(fix={k: test[k] for k in fix_keys}, num_samples=3, seed=0)
    return (torch.tensor(result.summary("age")["mean"]) - test["age"]).abs().mean().item()


@pytest.mark.slow
def test_thirty_percent_missing_ages_predict_nearly_as_well_as_complete_data(capsys):
    train, test = toy_cohort(2000, seed=0), toy_cohort(64, seed=1)
    complete = mv.JointModel(TOY_SPEC)
    fit(complete, train, steps=600, seed=0)
    gappy = dict(train)
    drop = torch.rand(len(train["age"]), generator=torch.Generator().manual_seed(3)) < 0.3
    gappy["age"] = torch.where(drop, torch.full_like(train["age"], math.nan), train["age"])
    missing = mv.JointModel(TOY_SPEC)
    fit(missing, gappy, steps=600, seed=0)
    mae_complete, mae_missing = _age_mae(complete, test), _age_mae(missing, test)
    baseline = (train["age"].mean() - test["age"]).abs().mean().item()
    with capsys.disabled():
        print(f"\nage MAE: complete {mae_complete:.2f}, 30% missing {mae_missing:.2f}, training mean {baseline:.2f}")
    assert mae_missing < 0.4 * baseline
    assert mae_missing < 1.5 * mae_complete + 0.5


@pytest.mark.slow  # 300 training steps on 1200 records; `make test-all` runs it
def test_twelve_sites_train_without_nan_or_collapse():
    g = torch.Generator().manual_seed(0)
    n = 1200
    site = torch.randint(0, 12, (n,), generator=g)
    images = _blob(3.0 + 3.0 * (site // 4).float(), 2.0 + 4.0 * (site % 4).float(), torch.full((n,), 1.5),
                   torch.ones(n)) + 0.03 * torch.randn(n, 1, 16, 16, generator=g)
    spec = {"variables": [{"name": "image", "kind": "image", "shape": [16, 16]},
                          {"name": "site", "kind": "categorical", "categories": [f"site{i}" for i in range(12)]}],
            "diffusion": {"sampling_steps": 20}, "network": NET}
    model = mv.JointModel(spec)
    history = fit(model, {"image": images.clamp(0, 1), "site": site}, steps=300, seed=0)
    assert all(math.isfinite(x) for x in history)
    free = model.sample(num_subjects=120, seed=0)
    counts = torch.bincount(free.samples["site"].flatten(), minlength=12)
    assert (counts > 0).sum() >= 9, f"unconditional samples collapsed onto few sites: {counts.tolist()}"
    assert counts.max() < 0.3 * counts.sum(), f"one site dominates: {counts.tolist()}"


@pytest.fixture(scope="module")
def two_images_two_scalars():
    """T1-like and FLAIR-like images of one blob, age (in both images) and a score correlated with age only."""
    g = torch.Generator().manual_seed(0)

    def cohort(n):
        age = 40 + 55 * torch.rand(n, generator=g)
        u = (age - 40) / 55
        score = (30 - 12 * u + 2.5 * torch.randn(n, generator=g)).clamp(0, 30)
        x = 4 + 8 * torch.rand(n, generator=g)
        t1 = _blob(torch.full((n,), 7.5), x, 1.5 + 2.5 * u, 0.4 + 0.6 * u)
        flair = 1 - _blob(torch.full((n,), 7.5), x, 2.0 + 2.0 * u, 0.8 * torch.ones(n))
        noise = lambda: 0.03 * torch.randn(n, 1, 16, 16, generator=g)  # noqa: E731
        return {"t1": (t1 + noise()).clamp(0, 1), "flair": (flair + noise()).clamp(0, 1), "age": age, "score": score}

    spec = {"variables": [{"name": "t1", "kind": "image", "shape": [16, 16]},
                          {"name": "flair", "kind": "image", "shape": [16, 16]},
                          {"name": "age", "kind": "continuous", "range": [40, 95]},
                          {"name": "score", "kind": "continuous", "range": [0, 30]}],
            "diffusion": {"sampling_steps": 25}, "network": copy.deepcopy(NET)}
    train = cohort(2000)
    model = mv.JointModel(spec)
    fit(model, train, steps=500, seed=0)
    return model, train, cohort(48)


@pytest.mark.slow  # its fixture trains 500 steps on 2000 records; `make test-all` runs it
def test_image_to_image_translation_beats_an_unconditional_sample(two_images_two_scalars):
    model, _train, test = two_images_two_scalars
    translated = model.sample(fix={"t1": test["t1"]}, seed=0).samples["flair"][:, 0]
    unconditional = model.sample(num_subjects=48, seed=1).samples["flair"][:, 0]

    def corr(a, b):
        a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
        return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)).mean().item()

    r_translated, r_free = corr(translated, test["flair"]), corr(unconditional, test["flair"])
    assert r_translated > 0.7 and r_translated > r_free + 0.3, (r_translated, r_free)


@pytest.mark.slow  # shares the 500-step fixture above
def test_unconditional_samples_keep_the_correlation_of_two_scalars(two_images_two_scalars):
    model, train, _test = two_images_two_scalars
    free = model.sample(num_subjects=256, seed=0)
    sampled = torch.corrcoef(torch.stack([free.samples["age"].flatten(), free.samples["score"].flatten()]))[0, 1]
    truth = torch.corrcoef(torch.stack([train["age"], train["score"]]))[0, 1]
    assert truth < -0.6 and abs(sampled - truth) < 0.2, (float(sampled), float(truth))
