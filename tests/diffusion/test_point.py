"""Point predictions (renoise-and-read): the calls they make, their budget, and why they beat reading at T."""

from __future__ import annotations

import pytest
import torch
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.options import PointOptions
from metavoxel.diffusion.point import MAX_CALLS, point_plan, predict_point
from metavoxel.errors import InputError

MIXTURE = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.0}
T = 1000  # the scaled_linear schedule's sqrt(abar_T) ~ 0.012 at T = 1000: the amplification the readout avoids


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mv.JointModel(tiny_spec_2d(diffusion={"timesteps": T, "sampling_steps": 5, "training": MIXTURE}))


class Recorder:
    """Wraps a network; records each call's inputs (states and levels)."""

    def __init__(self, net):
        self.net, self.calls = net, []

    def __call__(self, z, t, keep=None):
        self.calls.append(({k: v.clone() for k, v in z.items()}, t))
        return self.net(z, t, keep) if keep else self.net(z, t)


def oracle(model, eps_error: float):
    """A network that knows the answer: age's z0 is the mean of the (clean) image's z, group is class 1.

    Its eps for age is the exact eps of that z0 plus ``eps_error``: the only error is the network's own.
    """
    process = model.variables["age"].process

    def net(z, t, keep=None):
        level = t["age"] if isinstance(t, dict) else t  # (B,)
        truth = z["image"].flatten(1).mean(1)[:, None]  # (B, 1)
        a = process.abar.float()[level][:, None].clamp(max=0.999)  # (B, 1); level 0: a given value
        eps = (z["age"] - a.sqrt() * truth) / (1 - a).sqrt() + eps_error
        logits = torch.tensor([0.0, 4.0, 0.0]).expand(len(level), 3)
        return {"image": torch.zeros_like(z["image"]), "age": eps.reshape(z["age"].shape), "group": logits}

    return net


def constant_images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values)[:, None, None, None].expand(len(values), 1, 8, 8).clone()  # (N, 1, 8, 8)


def test_default_plan_reads_at_T_then_lower_levels_from_the_shared_estimate_in_5_calls(model):
    net = Recorder(model.net)
    image = torch.rand(3, 1, 8, 8)
    p = predict_point(model.diffusion, net, {"image": image})
    assert [len(z["age"]) for z, _ in net.calls] == [3, 6, 6]  # N · D_k rows at level k: 1 + 2 + 2 = 5 per subject
    levels = (T, round(0.52 * T), round(0.26 * T))
    for (z, t), level in zip(net.calls, levels):
        assert (t["image"] == 0).all() and (t["age"] == level).all() and (t["group"] == level).all()
        assert torch.equal(z["image"], image.repeat_interleave(len(t["age"]) // 3, 0) * 2 - 1)  # clean, never noised
    assert p.levels == levels and p.draws == (1, 2, 2) and p.calls_per_subject == 5 and p.network_calls == 3
    assert p.mean["age"].shape == (3,) and ((p.mean["age"] >= 40) & (p.mean["age"] <= 95)).all()
    assert p.probs["group"].shape == (3, 3) and torch.allclose(p.probs["group"].sum(1), torch.ones(3))
    again = model.point_predict({"image": image}, "age", batch_size=2)  # chunks of one subject: 3 x 3 forwards
    assert set(again.mean) == {"age"} and not again.probs and again.network_calls == 9


def test_more_than_5_calls_per_subject_or_bad_levels_are_refused(model):
    image = torch.rand(1, 1, 8, 8)
    with pytest.raises(InputError, match=f"between 1 and {MAX_CALLS} network calls per subject.*draws \\[3, 3\\]"):
        model.point_predict({"image": image}, levels=[T, 300], draws=3)
    with pytest.raises(InputError, match="start at T = 1000"):
        model.point_predict({"image": image}, levels=[500, 100])
    with pytest.raises(InputError, match="decrease strictly"):
        model.point_predict({"image": image}, levels=[T, 300, 300])
    with pytest.raises(InputError, match="one draw or more at each of its 2 levels"):
        model.point_predict({"image": image}, levels=[T, 300], draws=[1, 2, 2])
    assert point_plan(T, [T], 5) == ((T,), (5,))  # the old one-call readout stays reachable


def test_renoise_and_read_avoids_the_eps_amplification_of_reading_at_T(model):
    """With an eps error of 0.02, x0 read at T is off by ~0.02 / sqrt(abar_T) ~ 1.7 (z units); read again at
    0.26 T (abar ~ 0.5) it is off by 0.02 sqrt(0.5 / 0.5) = 0.02, whatever the first estimate was."""
    diffusion = model.diffusion
    image = constant_images([0.1, 0.5, 0.9])
    truth = model.variables["age"].decode(model.variables["image"].encode(image).flatten(1).mean(1)[:, None])
    net = oracle(model, eps_error=0.02)
    at_t = predict_point(diffusion, net, {"image": image}, "age", options=PointOptions(levels=[T], draws=4)).mean["age"]
    read = predict_point(diffusion, net, {"image": image}, "age").mean["age"]
    years_per_z = 55.0 / 2  # age's range [40, 95] is z in [-1, 1]
    assert (read - truth.reshape(-1)).abs().max() < 0.05 * years_per_z
    assert (at_t - truth.reshape(-1)).abs().mean() > 0.5 * years_per_z
    exact = predict_point(diffusion, oracle(model, 0.0), {"image": image}, "age",
                          options=PointOptions(levels=[T, 500], draws=1)).mean["age"]
    torch.testing.assert_close(exact, truth.reshape(-1), atol=1e-3, rtol=0)


def test_class_probabilities_average_every_call_and_given_rows_come_back_exact(model):
    diffusion = model.diffusion
    image = constant_images([0.2, 0.8])
    p = predict_point(diffusion, oracle(model, 0.0), {"image": image, "age": [50.0, float("nan")]})
    expected = torch.softmax(torch.tensor([0.0, 4.0, 0.0]), 0)
    torch.testing.assert_close(p.probs["group"], expected.expand(2, 3))
    assert set(p.mean) == {"age"} and p.mean["age"][0] == pytest.approx(50.0, abs=1e-4)  # given: returned as is
    assert 40 <= float(p.mean["age"][1]) <= 95
    given = predict_point(diffusion, oracle(model, 0.0), {"image": image, "age": [50.0, 60.0]}, "age")
    torch.testing.assert_close(given.mean["age"], torch.tensor([50.0, 60.0]), atol=1e-4, rtol=0)


def test_a_paper_recipe_model_is_refused_in_one_line():
    paper = mv.JointModel(tiny_spec_2d())
    with pytest.raises(InputError, match="point prediction needs a model trained with clean subsets") as err:
        paper.point_predict({"age": [50.0]})
    assert "\n" not in str(err.value)


def test_per_subject_seeds_make_a_point_prediction_independent_of_its_batch(model):
    """With one seed per subject (as predict and evaluate pass them) a subject's answer is the same alone, among
    others and under any batch size (issue 14)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero outputs (the U-Net's output convs start at zero)
        perturbed = mv.JointModel(tiny_spec_2d(diffusion={"timesteps": T, "sampling_steps": 5, "training": MIXTURE}))
        perturbed.load_state_dict(model.state_dict())
        for p in perturbed.net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    images, groups, seeds = torch.rand(3, 1, 8, 8, generator=g), ["A", "B", "C"], [7, 8, 9]
    together = perturbed.point_predict({"image": images, "group": groups}, ["age"], seeds=seeds, batch_size=4)
    alone = perturbed.point_predict({"image": images[2:], "group": groups[2:]}, ["age"], seeds=seeds[2:])
    assert torch.allclose(alone.mean["age"][0], together.mean["age"][2], atol=1e-5)
    gappy = perturbed.point_predict({"image": images, "group": ["A", None, "C"]}, ["age"], seeds=seeds)  # 2nd free
    assert torch.allclose(gappy.mean["age"][2], together.mean["age"][2], atol=1e-5)  # others' gaps change nothing
    other = perturbed.point_predict({"image": images, "group": groups}, ["age"], seeds=[1, 2, 3])
    assert not torch.allclose(other.mean["age"], together.mean["age"], atol=1e-5)
    with pytest.raises(InputError, match="one per subject"):
        perturbed.point_predict({"image": images, "group": groups}, ["age"], seeds=seeds[:2])


def test_bf16_precision_runs_the_network_under_autocast_and_reads_in_float32(model, monkeypatch):
    seen = []
    real = model.net.forward
    monkeypatch.setattr(model.net, "forward",
                        lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or real(*a, **k))
    fix = {"image": torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    half = model.point_predict(fix, "age", seed=0, precision="bf16")
    assert seen and all(seen) and half.mean["age"].dtype == torch.float32
    seen.clear()
    full = model.point_predict(fix, "age", seed=0)
    assert seen and not any(seen)
    torch.testing.assert_close(half.mean["age"], full.mean["age"], atol=2.0, rtol=0.05)
    with pytest.raises(InputError, match="precision must be one of fp32, bf16"):
        model.point_predict(fix, "age", precision="fp16")


def test_a_partly_known_latent_image_comes_back_with_its_kept_voxels_exactly():
    """As `sample` does: the decoder misses the kept voxels, the paste puts them back (`blend.seamless_paste`)."""
    from tiny_specs import tiny_latent_spec_3d

    from metavoxel.presets import RECOMMENDED_TRAINING

    spec = tiny_latent_spec_3d()
    spec["diffusion"].update(training=dict(RECOMMENDED_TRAINING), conditioning="clean")
    torch.manual_seed(0)
    latent = mv.JointModel(spec)
    image = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    half = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    half[:, :4] = True
    point = latent.point_predict({"image": image, "age": [50.0, 70.0]}, ["image", "sex"], masks={"image": half})
    filled = point.mean["image"]
    assert filled.shape == image.shape and torch.equal(filled[:, :, :4], image[:, :, :4])
    assert not torch.equal(filled[:, :, 4:], image[:, :, 4:]) and point.probs["sex"].shape == (2, 2)
