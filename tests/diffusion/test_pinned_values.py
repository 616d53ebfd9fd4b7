"""Fixed-seed sampling and training losses of the built-in kinds, pinned to values captured before the
engine was split into process and network (2026-11-29): the refactor changed no number on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_specs import tiny_latent_spec_3d, tiny_spec_2d

import metavoxel as mv
from metavoxel.presets import PAPER, with_recipe

PINNED = json.loads((Path(__file__).parent / "pinned_values.json").read_text())


def _perturb(model: mv.JointModel) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", ["2d", "3d"])
def test_sampling_and_losses_equal_the_values_before_the_refactor(name):
    # the paper preset (its training recipe, RePaint, the uniform grid and eps), whatever the defaults
    spec = with_recipe(tiny_spec_2d() if name == "2d" else tiny_latent_spec_3d(), PAPER)
    torch.manual_seed(0)
    model = mv.JointModel(spec)
    _perturb(model)
    cat = "group" if name == "2d" else "sex"
    shape = [1, 8, 8] if name == "2d" else [1, 8, 8, 8]
    img = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3))
    free = model.sample(num_subjects=2, num_samples=2, seed=7, eta=1.0)
    fixed = model.sample(fix={"image": img}, num_samples=2, seed=7)
    jump = model.sample(fix={"age": [50.0, 80.0]}, num_samples=2, seed=3, jump_length=2, jump_rounds=2, eta=0.0)
    losses = model.training_losses({"image": img, "age": [50.0, 80.0], cat: [0, 1]},
                                   generator=torch.Generator().manual_seed(11))
    want = PINNED[name]
    close = lambda got, key: torch.testing.assert_close(torch.tensor(got, dtype=torch.float64),  # noqa: E731
                                                        torch.tensor(want[key], dtype=torch.float64),
                                                        rtol=1e-5, atol=1e-4)
    close(free.samples["age"].flatten().tolist(), "free_age")
    assert free.samples[cat].flatten().tolist() == want["free_cat"]
    close(float(free.samples["image"].double().sum()), "free_image_sum")
    close(fixed.samples["age"].flatten().tolist(), "fixed_age")
    assert fixed.samples[cat].flatten().tolist() == want["fixed_cat"]
    close(float(jump.samples["image"].double().sum()), "jump_image_sum")
    assert jump.samples[cat].flatten().tolist() == want["jump_cat"]
    for key, values in want["losses"].items():
        torch.testing.assert_close(losses[key].double(), torch.tensor(values, dtype=torch.float64), rtol=1e-5, atol=1e-5)
