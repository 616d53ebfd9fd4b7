"""Counterfactual edits (`metavoxel.diffusion.edit`): unchanged values give back the scan, a change moves it by the
oracle's true effect, values not given are inferred and reported, and bad requests are refused in one line."""

from __future__ import annotations

import pytest
import torch
from test_inversion import SLOPE, clean_spec, oracle
from tiny_specs import tiny_latent_spec_3d

import metavoxel as mv
from metavoxel.diffusion.edit import edit
from metavoxel.diffusion.options import EditOptions
from metavoxel.errors import InputError, OptionError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mv.JointModel(clean_spec("v"))


def scans(n=2, seed=0):
    return torch.rand((n, 1, 8, 8, 8), generator=torch.Generator().manual_seed(seed))


def test_unchanged_values_give_back_the_scan(model):
    x = scans()
    fix = {"image": x, "age": [60.0, 70.0], "sex": ["F", "M"]}
    same = edit(model.diffusion, oracle(model, 0.5), fix, {"age": "+0"}, EditOptions(steps=20, refine=2))
    assert torch.equal(same.decoded["image"], same.reconstructed["image"])  # one chain, the same values
    assert torch.allclose(same.edited["image"], x, atol=1e-6)  # output "change": the scan itself
    decoded = edit(model.diffusion, oracle(model, 0.5), fix, {"age": "+0"}, EditOptions(steps=50, refine=4,
                                                                                          output="decoded"))
    vae = model.variables["image"]
    through_vae = vae.decode(vae.encode(x))
    # the decoded edit is the scan as the VAE gives it back, up to the inversion's error (stated: 1e-3 of the range, 50 steps, 4 refinements)
    assert (decoded.edited["image"] - through_vae).abs().max() < 1e-3 * float(x.max() - x.min())


def test_a_guided_edit_inverts_the_guided_ode_so_unchanged_values_still_give_back_the_scan(model):
    x = scans(1, seed=2)
    fix = {"image": x, "age": 70.0, "sex": "M"}
    guided = edit(model.diffusion, oracle(model, 0.5), fix, {"age": "+0"},
                  EditOptions(steps=50, refine=4, guidance=2.0, output="decoded"))
    vae = model.variables["image"]
    assert (guided.edited["image"] - vae.decode(vae.encode(x))).abs().max() < 2e-3 * float(x.max() - x.min())


def test_a_change_moves_the_latent_by_the_true_effect(model):
    x = scans(1, seed=1)
    vae, age = model.variables["image"], model.variables["age"]
    result = edit(model.diffusion, oracle(model, 0.5), {"image": x, "age": 50.0, "sex": "F"}, {"age": 80.0},
                  EditOptions(steps=50, refine=4, output="decoded"))
    shift = SLOPE * (age.encode(torch.tensor([80.0])) - age.encode(torch.tensor([50.0]))).reshape(-1, 1, 1, 1, 1)
    truth = vae.decode(vae.encode(x) + shift)
    assert (result.edited["image"] - truth).abs().max() < 0.02 * float((truth - vae.decode(vae.encode(x))).abs().max())
    assert result.changed == {"age": [80.0]} and result.observed["age"] == [50.0] and result.inferred == []
    assert result.network_calls == 50 * 5 + 50  # 4 refinements: 5 calls per inversion step, 1 per regeneration step


def test_values_not_given_are_inferred_and_reported(model):
    result = model.edit({"image": scans(2), "sex": ["F", None]}, {"sex": "M"}, steps=4, refine=0)
    assert set(result.inferred) == {"age", "sex"}
    assert result.observed["sex"][0] == "F" and result.observed["sex"][1] in ("F", "M")
    lo, hi = model.variables["age"].value_range
    assert all(lo <= a <= hi for a in result.observed["age"])
    assert result.changed == {"sex": ["M", "M"]}
    assert set(result.to_dict()) >= {"observed", "inferred", "changed", "output", "steps", "refine", "seconds"}


@pytest.mark.parametrize(("fix", "changes", "message"), [
    ({"age": 60.0}, {"age": 70.0}, "give image"),
    ({"image": None, "age": 60.0}, {}, "nothing to change"),
    ({"image": None, "age": 60.0}, {"image": 1.0}, "image is an image"),
    ({"image": None, "age": 60.0}, {"weight": 70.0}, "unknown variable"),
    ({"image": None, "age": 60.0}, {"age": "+40"}, "outside the model's range"),
    ({"image": None, "age": 30.0}, {"age": 50.0}, "given value 30 is outside"),
    ({"image": None, "sex": "F"}, {"sex": "+1"}, "signed change applies to a variable with a value range"),
    ({"image": None, "sex": "F"}, {"sex": "X"}, "unknown category"),
])
def test_bad_requests_are_refused_in_one_line(model, fix, changes, message):
    fix = {k: (scans(1) if k == "image" else v) for k, v in fix.items()}
    with pytest.raises(InputError, match=message) as err:
        model.edit(fix, changes, steps=2)
    assert "\n" not in str(err.value)


def test_a_model_trained_without_clean_subsets_refuses():
    torch.manual_seed(0)
    paper = mv.JointModel(tiny_latent_spec_3d())  # the paper's recipe: one shared t, no clean subsets
    with pytest.raises(InputError, match="needs a model trained with clean subsets") as err:
        paper.edit({"image": scans(1), "age": 60.0, "sex": "F"}, {"age": 70.0})
    assert "\n" not in str(err.value)


def test_guidance_needs_a_model_that_knows_the_marginal():
    torch.manual_seed(0)
    spec = clean_spec("v")
    spec["diffusion"]["training"] = {"shared": 0.5, "clean": 0.5, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0}
    no_prior = mv.JointModel(spec)
    with pytest.raises(OptionError, match="guidance needs a model trained with prior subsets"):
        no_prior.edit({"image": scans(1), "age": 60.0, "sex": "F"}, {"age": 70.0}, guidance=1.0)


def test_options_are_checked_where_they_are_made():
    for bad in ({"refine": -1}, {"output": "blend"}, {"steps": 0}, {"guidance": -1.0}, {"grid": "cubic"}):
        with pytest.raises(OptionError):
            EditOptions(**bad)
