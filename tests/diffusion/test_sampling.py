"""Zero-shot sampling: fixing any subset, masks, the shared time grid, reproducibility, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import metavoxel as mv
import metavoxel.diffusion.fused as fused_module
from metavoxel.presets import RECOMMENDED_TRAINING
from tiny_specs import tiny_spec_2d


def _perturb(model: mv.JointModel) -> None:
    """Give the zero-initialised output layers weights, so outputs depend on the inputs."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


def test_fixed_scalars_and_image_come_back_exactly(model_2d):
    images = torch.rand(3, 1, 8, 8)
    result = model_2d.sample(fix={"image": images, "age": [41.5, 60.25, 94.0]}, num_samples=2, seed=0)
    assert torch.equal(result.samples["image"], images[:, None].expand(-1, 2, -1, -1, -1))
    assert result.samples["age"].tolist() == [[41.5, 41.5], [60.25, 60.25], [94.0, 94.0]]
    assert result.samples["group"].shape == (3, 2)
    assert result.is_fixed("age") and not result.is_fixed("group")


def test_fixed_category_comes_back_exactly_and_accepts_aliases(model_2d):
    result = model_2d.sample(fix={"group": ["alpha", "b", "C"]}, num_samples=2, seed=1)
    assert result.labels("group") == [["A", "A"], ["B", "B"], ["C", "C"]]


def test_partially_fixed_subjects_sample_the_missing_ones(model_2d):
    _perturb(model_2d)
    result = model_2d.sample(fix={"age": [50.0, math.nan]}, num_samples=4, seed=0)
    assert result.samples["age"][0].tolist() == [50.0] * 4
    assert len(set(result.samples["age"][1].tolist())) == 4  # free for subject 1: four different samples
    assert result.fixed["age"].tolist() == [True, False]


def test_sampled_continuous_values_stay_in_the_declared_range(model_2d):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a wild network: its x0 estimates fall far outside [-1, 1]
        for p in model_2d.net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    ages = model_2d.sample(num_subjects=16, num_samples=2, seed=0).samples["age"]
    assert ages.min() >= 40.0 and ages.max() <= 95.0
    assert ages.std() > 1.0  # clipped, not collapsed


def test_masked_pixel_image_keeps_known_pixels_exactly(model_2d):
    _perturb(model_2d)
    images = torch.rand(2, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :, :4] = True
    result = model_2d.sample(fix={"image": images}, masks={"image": mask}, num_samples=3, seed=0)
    out = result.samples["image"]  # (2, 3, 1, 8, 8)
    assert torch.equal(out[..., :4], images[:, None, ..., :4].expand(-1, 3, -1, -1, -1))
    assert not torch.equal(out[..., 4:], images[:, None, ..., 4:].expand(-1, 3, -1, -1, -1))


def test_masked_latent_image_pastes_known_voxels_exactly(model_3d_latent):
    _perturb(model_3d_latent)
    images = torch.rand(1, 1, 8, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    result = model_3d_latent.sample(fix={"image": images, "sex": ["F"]}, masks={"image": mask}, num_samples=2, seed=0)
    out = result.samples["image"]
    assert out.shape == (1, 2, 1, 8, 8, 8)
    assert torch.equal(out[..., :4], images[:, None, ..., :4].expand(-1, 2, -1, -1, -1, -1))
    assert result.labels("sex") == [["F", "F"]]


def test_latent_mask_maps_the_unknown_region_up_and_dilates_it(model_3d_latent):
    var = model_3d_latent.variables["image"]  # VAE factor 2: 8³ voxels -> 4³ latent
    mask = torch.ones(1, 1, 8, 8, 8, dtype=torch.bool)
    mask[..., 0, 0, 0] = False  # one unknown voxel
    known = var.diffusion_mask(mask)[0, 0]  # (4, 4, 4)
    assert known.shape == (4, 4, 4)
    unknown = (~known).nonzero().tolist()
    assert sorted(unknown) == sorted([i, j, k] for i in range(2) for j in range(2) for k in range(2))


def test_same_seed_same_samples_other_seed_different(model_2d):
    _perturb(model_2d)
    a = model_2d.sample(num_subjects=2, num_samples=2, seed=3)
    b = model_2d.sample(num_subjects=2, num_samples=2, seed=3)
    c = model_2d.sample(num_subjects=2, num_samples=2, seed=4)
    for name in ("image", "age", "group"):
        assert torch.equal(a.samples[name], b.samples[name])
    assert not torch.equal(a.samples["image"], c.samples["image"])


def test_batch_size_splits_rows_without_changing_shapes(model_2d):
    result = model_2d.sample(fix={"group": ["A", "B", "C"]}, num_samples=3, batch_size=4, seed=0)
    assert result.samples["image"].shape == (3, 3, 1, 8, 8)
    assert result.samples["age"].shape == (3, 3)


@pytest.mark.parametrize("conditioning", ["repaint", "clean"])
def test_per_subject_seeds_give_a_subject_the_same_samples_whatever_shares_its_batch(conditioning):
    """The same subject and seed answer the same alone, among others, and under any batch size (issue 14)."""
    torch.manual_seed(0)
    model = mv.JointModel(tiny_spec_2d(diffusion={"timesteps": 100, "sampling_steps": 6,
                                                  "training": {**RECOMMENDED_TRAINING}}))
    _perturb(model)
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    groups = ["A", "B", "C", "A"]
    seeds = [11, 12, 13, 14]
    options = dict(num_samples=3, conditioning=conditioning, guidance=0.5)
    together = model.sample(fix={"image": images, "group": groups}, seeds=seeds, batch_size=7, **options)
    for i in (0, 3):
        alone = model.sample(fix={"image": images[i:i + 1], "group": groups[i:i + 1]}, seeds=seeds[i:i + 1], **options)
        assert torch.allclose(alone.samples["age"][0], together.samples["age"][i], atol=1e-4)
    others = model.sample(fix={"image": images.flip(0), "group": groups[::-1]}, seeds=seeds[::-1], **options)
    assert torch.allclose(others.samples["age"].flip(0), together.samples["age"], atol=1e-4)
    shared = model.sample(fix={"image": images, "group": groups}, seed=11, **options)
    assert not torch.allclose(shared.samples["age"], together.samples["age"], atol=1e-4)  # seeds matter
    with pytest.raises(mv.InputError, match="one per subject"):
        model.sample(fix={"image": images, "group": groups}, seeds=seeds[:3])


def _record_levels(model: mv.JointModel, monkeypatch) -> list[tuple[str, int]]:
    """Record (event, level): network calls, the categorical variable's step/undo targets and re-noise
    levels, and the levels (t, s) the fused Gaussian kernel was given (read back from its abar values)."""
    events: list[tuple[str, int]] = []
    denoise = model.net.forward

    def spy_denoise(z, t):
        events.append(("call", int(t[0])))
        return denoise(z, t)

    monkeypatch.setattr(model.net, "forward", spy_denoise)
    var = model.variables["group"]
    for method, label, arg in (("reverse_step", "step", 3), ("undo", "undo", 2), ("renoise", "renoise", 1)):
        original = getattr(var, method)

        def spy(*args, _original=original, _label=label, _arg=arg, **kwargs):
            events.append((_label, int(args[_arg][0])))
            return _original(*args, **kwargs)

        monkeypatch.setattr(var, method, spy)
    abar = model.variables["age"].process.abar.float()
    fused = fused_module.kernels.ddim_repaint_step

    def spy_fused(x, eps, a_t, a_s, **kwargs):
        level = lambda a: int((abar - float(a[0, 0])).abs().argmin())  # noqa: E731
        events.append(("fused", level(a_t)))
        events.append(("fused_to", level(a_s)))
        return fused(x, eps, a_t, a_s, **kwargs)

    monkeypatch.setattr(fused_module.kernels, "ddim_repaint_step", spy_fused)
    return events


@pytest.mark.parametrize(("jump_length", "jump_rounds", "grid"), [(1, 1, "uniform"), (2, 3, "uniform"),
                                                                 (1, 1, "quadratic")])
def test_state_level_equals_the_next_network_call_and_fixed_values_renoise_to_it(model_2d, monkeypatch,
                                                                                  jump_length, jump_rounds, grid):
    events = _record_levels(model_2d, monkeypatch)
    model_2d.sample(fix={"group": ["B"], "age": [60.0]}, steps=5, seed=0, jump_length=jump_length,
                    jump_rounds=jump_rounds, grid=grid)
    level = None  # the level of the current state
    assert events[0] == ("renoise", 100)  # the prior is merged with the known value at level T
    for event, value in events:
        if event == "renoise":
            assert level is None or value == level, "a fixed value must be re-noised to the state's level"
            level = value
        elif event in ("call", "fused"):
            assert value == level, f"{event} at t={value} on a state at level {level}"
        elif event == "fused_to":  # the fused Gaussian step lands (and re-noises) where the categorical one does
            fused_to = value
        else:  # step or undo lands at a new level
            if event == "step":
                assert value == fused_to, "Gaussian and categorical variables must step to the same level"
            level = value
    calls = [v for e, v in events if e == "call"]
    assert level == 0
    if jump_rounds == 1:
        assert calls == ([100, 80, 60, 40, 20] if grid == "uniform" else [100, 64, 36, 16, 4])
    else:  # two undo jumps back up at each of positions 3 and 1: 5 + 2·2·2 calls
        assert sum(e == "undo" for e, _ in events) == 4 and len(calls) == 13


def test_every_variable_fixed_is_refused(model_2d):
    with pytest.raises(mv.InputError, match="nothing to sample"):
        model_2d.sample(fix={"image": torch.rand(1, 1, 8, 8), "age": [50.0], "group": ["A"]})


def test_unknown_variable_and_bad_values_are_refused_clearly(model_2d):
    with pytest.raises(mv.InputError, match="unknown variable.*sex.*this model has image, age, group"):
        model_2d.sample(fix={"sex": ["F"]})
    with pytest.raises(mv.InputError, match="unknown category 'D'.*valid: A, B, C"):
        model_2d.sample(fix={"group": ["D"]})
    with pytest.raises(mv.InputError, match="expected a number"):
        model_2d.sample(fix={"age": ["old"]})
    with pytest.raises(mv.InputError, match="expects .*\\(1, 8, 8\\)|expected a tensor"):
        model_2d.sample(fix={"image": torch.rand(1, 1, 9, 9)})
    with pytest.raises(mv.InputError, match="one value per subject"):
        model_2d.sample(fix={"age": [50.0, 60.0], "group": ["A"]})
    with pytest.raises(mv.InputError, match="not fixed"):
        model_2d.sample(masks={"image": torch.ones(1, 1, 8, 8)})


def test_result_summaries_and_json(model_2d):
    _perturb(model_2d)
    result = model_2d.sample(fix={"image": torch.rand(2, 1, 8, 8)}, num_samples=5, seed=0)
    age = result.summary("age")
    for i in range(2):
        row = result.samples["age"][i].double()
        assert age["mean"][i] == pytest.approx(row.mean().item())
        assert age["sd"][i] == pytest.approx(row.std().item())
        assert age["lower"][i] <= age["mean"][i] <= age["upper"][i]
    group = result.summary("group")
    assert all(sum(p) == pytest.approx(1.0) for p in group["probs"])
    assert set(group["majority"]) <= {"A", "B", "C"}
    data = result.to_dict()
    assert data["variables"]["image"]["shape"] == [2, 5, 1, 8, 8]
    assert len(data["variables"]["age"]["samples"][0]) == 5


def test_bf16_autocast_sampling_keeps_fixed_values_and_close_results(model_2d):
    _perturb(model_2d)
    images = torch.rand(2, 1, 8, 8)
    full = model_2d.sample(fix={"image": images}, num_samples=2, seed=0)
    half = model_2d.sample(fix={"image": images}, num_samples=2, seed=0, precision="bf16")
    assert torch.equal(half.samples["image"], full.samples["image"])
    assert half.samples["age"].dtype == torch.float32
    assert (half.samples["age"] - full.samples["age"]).abs().max() < 5.0  # years; bf16 network, same noise
    with pytest.raises(mv.InputError, match="precision must be one of fp32, bf16"):
        model_2d.sample(precision="fp16")
