"""The built-in 2D toy cohort (`metavoxel.toy`): its counterfactual at another age."""

from __future__ import annotations

import torch

from metavoxel.toy import toy_cohort


def test_the_toy_cohort_renders_the_same_records_at_another_age():
    now, later = toy_cohort(6, seed=3), toy_cohort(6, seed=3, age_shift=10.0)
    assert torch.allclose(later["age"], now["age"] + 10) and later["group"] == now["group"]
    assert torch.equal(toy_cohort(6, seed=3, age_shift=0.0)["image"], now["image"])
    bright = (later["image"] - now["image"]).flatten(1).sum(1)
    assert bool((bright > 0).all())  # older: a larger, brighter blob, the same noise
