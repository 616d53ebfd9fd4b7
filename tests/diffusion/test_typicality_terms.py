"""Typicality terms: per-level losses per part, at most 10 network calls per record, the same whatever the batch."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_specs import PAPER, tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.typicality import mid_p, typicality_terms
from metavoxel.errors import InputError

CLEAN = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.0}


def _model(training=None) -> mv.JointModel:
    torch.manual_seed(0)
    diffusion = {"timesteps": 50, "sampling_steps": 2, "training": dict(PAPER), "conditioning": "repaint"}
    if training is not None:
        diffusion.update(training=training, conditioning="clean")
    model = mv.JointModel(tiny_spec_2d(diffusion=diffusion))
    for p in model.parameters():  # random outputs (the zero-initialised heads would give every record one loss)
        p.data.normal_(0, 0.05)
    return model


@pytest.mark.parametrize(("training", "calls"), [(None, 5), (CLEAN, 10)])
def test_parts_levels_and_calls(training, calls):
    model = _model(training)
    images = torch.rand(3, 1, 8, 8)
    terms = typicality_terms(model, {"image": images, "age": [50.0, None, 70.0], "group": ["A", "B", None]})
    assert terms.image_levels.shape == (3, 5) and terms.metadata_levels.shape == (3, 5)
    assert terms.calls_per_record == calls  # the paper's recipe: one joint call per level; clean: one per part
    assert terms.given == ["age,group,image", "group,image", "age,image"]
    assert torch.isfinite(terms.image).all()
    # the metadata term sums the continuous scalars (age); the categorical group is read by its mid-p value
    assert torch.isfinite(terms.metadata[[0, 2]]).all() and torch.isnan(terms.metadata[1])
    midp = terms.category_midp["group"]
    assert set(terms.category_midp) == {"group"} and terms.category_levels["group"].shape == (3, 5)
    assert bool(((midp[:2] > 0) & (midp[:2] < 1)).all()) and torch.isnan(midp[2])
    alone = typicality_terms(model, {"image": images[1:2], "age": [None], "group": ["B"]}, batch_size=1)
    assert torch.allclose(alone.image_levels[0], terms.image_levels[1], atol=1e-6)
    assert torch.allclose(alone.category_levels["group"][0], terms.category_levels["group"][1], atol=1e-6)
    assert torch.allclose(alone.category_midp["group"][0], midp[1], atol=1e-6)
    only_meta = typicality_terms(model, {"age": [60.0, 61.0]})
    assert all(math.isnan(x) for x in only_meta.image.tolist()) and only_meta.calls_per_record == 5
    assert len(set(terms.image.tolist())) == 3  # each record its own image term


def test_levels_must_be_positive():
    with pytest.raises(InputError, match="levels must be >= 1"):
        typicality_terms(_model(), {"age": [60.0]}, levels=0)


def test_image_loss_maps_average_to_the_image_term_and_a_mask_keeps_its_locations():
    model = _model(CLEAN)
    images = torch.rand(2, 1, 8, 8)
    fix = {"image": images, "age": [50.0, 60.0], "group": ["A", None]}
    terms = typicality_terms(model, fix)
    assert terms.image_maps.shape == (2, 5, 8, 8) and terms.image_keep is None
    torch.testing.assert_close(terms.image_maps.double().mean(dim=(2, 3)), terms.image_levels, rtol=1e-5, atol=1e-7)
    keep = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    keep[..., :3] = True
    masked = typicality_terms(model, fix, masks={"image": keep})
    assert masked.image_keep.shape == (2, 8, 8) and torch.equal(masked.image_keep[1], keep[0, 0])
    torch.testing.assert_close(masked.image_maps, terms.image_maps)  # the same calls: the mask is read afterwards
    assert masked.calls_per_record == 5 and torch.isnan(masked.metadata_levels).all()  # no metadata term
    with pytest.raises(InputError, match="not a given image"):
        typicality_terms(model, {"age": [50.0]}, masks={"image": keep})


def test_mid_p_against_hand_computed_cases():
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.2, 0.8]]))
    torch.testing.assert_close(mid_p(logits, torch.tensor([0, 1])), torch.tensor([0.1, 0.6], dtype=torch.float64))
    ties = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    # class 1 ties with class 2: ½ (0.25 + 0.25); class 0: 0.25 + 0.25 below it, ½ 0.5 itself
    torch.testing.assert_close(mid_p(ties.expand(2, 3), torch.tensor([1, 0])),
                               torch.tensor([0.25, 0.75], dtype=torch.float64))


@settings(max_examples=40)
@given(st.integers(2, 6).flatmap(lambda k: st.lists(st.floats(-8, 8), min_size=k, max_size=k)))
def test_mid_p_is_in_the_unit_interval_and_uniform_in_expectation_under_a_calibrated_draw(row):
    logits = torch.tensor([row], dtype=torch.float64)
    k = logits.shape[1]
    u = mid_p(logits.expand(k, k), torch.arange(k))  # (K,) u of each class
    p = torch.softmax(logits[0], dim=0)
    assert bool(((u > 0) & (u <= 1)).all())
    assert float((p * u).sum()) == pytest.approx(0.5, abs=1e-9)  # E[u] over c ~ p: ½, as a uniform's
    order = torch.argsort(p)
    assert bool((u[order][1:] >= u[order][:-1]).all())  # a more probable class has a larger u
