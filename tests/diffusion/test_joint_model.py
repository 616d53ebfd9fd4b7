"""The joint model: building from specs, the joint loss, missing values, 2D and 3D."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_specs import tiny_spec_2d

import metavoxel as mv


def test_training_losses_are_per_record_terms(model_2d):
    batch = {"image": torch.rand(4, 1, 8, 8), "age": [50, 60, 70, 80], "group": ["A", "B", "C", "A"]}
    terms = model_2d.training_losses(batch, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"loss", "loss/image", "loss/age", "loss/group"}
    assert all(v.shape == (4,) for v in terms.values())
    torch.testing.assert_close(terms["loss"], terms["loss/image"] + terms["loss/age"] + terms["loss/group"])
    terms["loss"].mean().backward()
    assert all(p.grad is not None for p in model_2d.net.parameters() if p.requires_grad)


def test_missing_values_contribute_no_loss(model_2d):
    batch = {"image": [torch.rand(1, 8, 8), None, torch.rand(1, 8, 8)], "age": [50.0, math.nan, None],
             "group": [None, "B", "n/a"]}
    terms = model_2d.training_losses(batch)
    assert terms["loss/image"][1] == 0 and terms["loss/image"][0] > 0
    assert terms["loss/age"][1:].tolist() == [0.0, 0.0] and terms["loss/age"][0] > 0
    assert terms["loss/group"][[0, 2]].tolist() == [0.0, 0.0] and terms["loss/group"][1] > 0
    only_image = model_2d.training_losses({"image": torch.rand(2, 1, 8, 8)})  # metadata absent altogether
    assert only_image["loss/age"].tolist() == [0.0, 0.0]


def test_missing_variable_is_fed_as_prior_noise(model_2d, monkeypatch):
    seen = {}
    denoise = model_2d.net.forward

    def spy(z, t):
        seen.update(z)
        return denoise(z, t)

    monkeypatch.setattr(model_2d.net, "forward", spy)
    z0 = {"image": torch.zeros(64, 1, 8, 8), "age": torch.full((64, 1), 0.5), "group": torch.zeros(64, dtype=torch.long)}
    present = {"image": torch.ones(64, dtype=torch.bool), "age": torch.zeros(64, dtype=torch.bool),
               "group": torch.ones(64, dtype=torch.bool)}
    model_2d.losses_from_z0(z0, present, t=torch.full((64,), 1), generator=torch.Generator().manual_seed(0))
    # at t = 1 a present age would be ~0.5; the missing one is N(0, 1) noise instead
    assert abs(seen["age"].mean().item() - 0.5) > 0.2 and 0.6 < seen["age"].std().item() < 1.5
    assert seen["image"].abs().mean() < 0.1  # present image at t = 1 is nearly clean


def test_loss_weights_scale_the_joint_loss():
    spec = tiny_spec_2d()
    spec["variables"][1]["loss_weight"] = 3.0
    spec["variables"][2]["loss_weight"] = 0.0
    model = mv.JointModel(spec)
    terms = model.training_losses({"image": torch.rand(2, 1, 8, 8), "age": [50, 60], "group": ["A", "B"]})
    torch.testing.assert_close(terms["loss"], terms["loss/image"] + 3 * terms["loss/age"])


def test_same_seed_same_initial_weights():
    a, b = mv.JointModel(tiny_spec_2d()), mv.JointModel(tiny_spec_2d())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_3d_latent_model_trains_and_decodes(model_3d_latent):
    batch = {"image": torch.rand(2, 1, 8, 8, 8), "age": [50, 70], "sex": ["F", "M"]}
    terms = model_3d_latent.training_losses(batch)
    terms["loss"].mean().backward()
    vae = model_3d_latent.variables["image"].vae
    assert all(p.grad is None for p in vae.parameters()), "the VAE is frozen"
    result = model_3d_latent.sample(fix={"sex": ["M"]}, num_samples=2, seed=0)
    assert result.samples["image"].shape == (1, 2, 1, 8, 8, 8)
    assert "frozen.image.vae.encoder.blocks.0.conv.conv.weight" in dict(model_3d_latent.named_parameters()) or any(
        k.startswith("frozen.image.vae.") for k in model_3d_latent.state_dict())


def test_spec_errors_name_the_problem():
    spec = tiny_spec_2d(variables=[{"name": "age", "kind": "continuous", "range": [0, 1]}])
    with pytest.raises(mv.SpecError, match="at least one image variable"):
        mv.JointModel(spec)
    spec = tiny_spec_2d()
    spec["variables"][0]["shape"] = [6, 6]  # not divisible by 2 ** (levels - 1) = 2? 6 is; use 7
    spec["variables"][0]["shape"] = [7, 7]
    with pytest.raises(mv.SpecError, match="divisible by 2"):
        mv.JointModel(spec)
    spec = tiny_spec_2d()
    spec["variables"].append({"name": "flair", "kind": "image", "shape": [16, 16]})
    with pytest.raises(mv.SpecError, match="share one diffusion grid"):
        mv.JointModel(spec)
    spec = tiny_spec_2d()
    spec["variables"][0]["shape"] = [8, 8, 8]
    with pytest.raises(mv.SpecError, match="spatial_dims is 2"):
        mv.JointModel(spec)


def test_two_image_variables_share_the_grid():
    spec = tiny_spec_2d()
    spec["variables"].append({"name": "flair", "kind": "image", "channels": 2, "shape": [8, 8]})
    model = mv.JointModel(spec)
    images = torch.rand(1, 1, 8, 8)
    result = model.sample(fix={"image": images}, seed=0)
    assert result.samples["flair"].shape == (1, 1, 2, 8, 8)
    assert torch.equal(result.samples["image"][:, 0], images)
