"""The zero-shot evaluation protocol on a tiny (untrained) joint model: every question, the right numbers."""

from __future__ import annotations

import pytest
import torch

import metavoxel as mv
from metavoxel.evaluation import CONDITIONING_SETS, EvaluationOptions, Readers, Roles, evaluate_model
from metavoxel.evaluation.protocol import binary_classes, class_samples, class_truth, point_prediction
from tiny_specs import tiny_latent_spec_3d


@pytest.fixture(scope="module")
def model():
    return mv.JointModel(tiny_latent_spec_3d())


def records(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 1, 8, 8, 8, generator=g),
            "age": (40 + 55 * torch.rand(n, generator=g)).tolist(),
            "sex": ["F" if x < 0.6 else "M" for x in torch.rand(n, generator=g).tolist()]}


def test_every_question_is_answered(model):
    test, val = records(6, 0), records(4, 1)
    readers = Readers("constant readers", lambda images, sex: torch.full((len(images),), 60.0),
                      lambda images, age: torch.tensor([[0.9, 0.1]]).expand(len(images), 2))
    options = EvaluationOptions(num_samples=2, steps=3, likelihood_timesteps=2, batch_size=8)
    out = evaluate_model(model, test, val=val, population_mean=67.0, options=options, readers=readers)
    ages = torch.tensor(test["age"], dtype=torch.float64)
    assert out["n_test"] == 6 and out["samples"]["regression"].shape == (6, 2)
    assert 0 <= out["regression"]["coverage"] <= 1 and out["regression"]["mae"] >= 0
    assert out["regression"]["coverage_level"] == pytest.approx(1 / 3)  # [min, max] of 2 samples
    unc = out["uncertainty"]
    assert unc["num_samples"] == 2 and sum(unc["rank_histogram"]["counts"]) == 6 and unc["crps"] >= 0
    assert unc["coverage"] == out["regression"]["coverage"] and "--num-samples 20" in unc["coverage_note"]
    assert [r["given"] for r in out["table2"]] == [*CONDITIONING_SETS, "population mean"]
    assert out["table2"][0]["mae"] == out["regression"]["mae"]  # (I, C) reuses the Table 1 draws
    assert out["table2"][-1]["mae"] == pytest.approx(float((ages - 67.0).abs().mean()))
    assert 0 <= out["likelihood"]["accuracy"] <= 1 and out["likelihood"]["temperature"] > 0
    assert out["samples"]["likelihood_probs"].shape == (6, 2)
    fidelity = out["conditional_fidelity"]
    assert fidelity["continuous_mae"] == pytest.approx(float((ages - 60.0).abs().mean()))
    female = torch.tensor([s == "F" for s in test["sex"]], dtype=torch.float64)
    assert fidelity["categorical_accuracy"] == pytest.approx(float(female.mean()))  # the reader always says F


def test_a_record_gets_the_same_answers_whatever_is_evaluated_beside_it(model):
    """With (subject, session) ids every record draws from its own generator (issue 14): a subset of the
    test set, in another order and batch size, gets the draws the full set gave those records."""
    test, val = records(6, 0), records(4, 1)
    ids = [(f"sub-{i}", None) for i in range(6)]
    val_ids = [(f"sub-v{i}", "ses-1") for i in range(4)]
    run = dict(val=val, population_mean=67.0, val_subjects=val_ids)
    full = evaluate_model(model, test, subjects=ids, **run,
                          options=EvaluationOptions(num_samples=2, steps=3, likelihood_timesteps=2, batch_size=12))
    pick = [4, 1]
    part = evaluate_model(model, {k: [v[i] for i in pick] if isinstance(v, list) else v[pick] for k, v in test.items()},
                          subjects=[ids[i] for i in pick], **run,
                          options=EvaluationOptions(num_samples=2, steps=3, likelihood_timesteps=2, batch_size=2))
    for key in ("regression", "classification", "likelihood_probs"):
        assert torch.allclose(part["samples"][key].double(), full["samples"][key][pick].double(), atol=1e-6), key
    assert not torch.equal(full["samples"]["regression"][0], full["samples"]["regression"][1])


def test_roles_must_exist(model):
    with pytest.raises(mv.InputError, match="--categorical"):
        Roles(categorical="group").check(model)


@pytest.mark.parametrize(("roles", "message"), [
    (dict(image="age"), "--image 'age' is not an image variable; choose one of image"),
    (dict(continuous="sex"), "--continuous 'sex' is not a continuous variable; choose one of age"),
    (dict(categorical="age"), "--categorical 'age' must be a scalar variable other than the continuous one"),
])
def test_roles_of_the_wrong_sort_are_refused_in_one_line(model, roles, message):
    with pytest.raises(mv.InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Roles(**roles).check(model)


def test_a_record_without_its_continuous_truth_is_refused(model):
    test = records(3, 0)
    test["age"][1] = None
    with pytest.raises(mv.InputError, match="age: 1 test record"):
        evaluate_model(model, test, population_mean=67.0, options=EvaluationOptions(num_samples=1, steps=1))


def test_a_continuous_sex_is_classified_by_threshold():
    spec = tiny_latent_spec_3d()
    spec["variables"][2] = {"name": "sex", "kind": "continuous", "range": [0.0, 1.0]}
    model = mv.JointModel(spec)
    assert binary_classes(model, "sex") == ["sex<0.5", "sex>=0.5"]
    assert class_truth(model, "sex", [0.0, 1.0, 0.2]).tolist() == [0, 1, 0]
    assert class_samples(model, "sex", torch.tensor([[0.49, 0.51]])).tolist() == [[0, 1]]


def test_a_continuous_class_is_cut_at_the_midpoint_of_its_declared_range():
    # the engine once read ``var.range`` (not declared; variables expose ``value_range``), so every
    # continuous class was cut at 0.5 whatever its range
    spec = tiny_latent_spec_3d()
    spec["variables"][2] = {"name": "sex", "kind": "continuous", "range": [0.0, 10.0]}
    model = mv.JointModel(spec)
    assert isinstance(model.variables["sex"], mv.HasValueRange)
    assert binary_classes(model, "sex") == ["sex<5", "sex>=5"]
    assert class_truth(model, "sex", [0.7, 4.9, 5.0, 9.0]).tolist() == [0, 0, 1, 1]
    assert class_samples(model, "sex", torch.tensor([[0.7, 6.0]])).tolist() == [[0, 1]]


def test_a_class_role_without_categories_or_range_is_refused():
    spec = tiny_latent_spec_3d()
    model = mv.JointModel(spec)
    with pytest.raises(mv.InputError, match="--categorical"):
        class_truth(model, "image", [0.0])


def test_point_prediction_is_reported_beside_sampling():
    spec = tiny_latent_spec_3d()
    spec["diffusion"] = {**spec.get("diffusion", {}), "training": {"shared": 0.5, "clean": 0.5}, "conditioning": "clean"}
    mixture = mv.JointModel(spec)
    test = records(4, 0)
    options = EvaluationOptions(num_samples=1, steps=2, likelihood_timesteps=0, table2=False, method="point")
    out = evaluate_model(mixture, test, population_mean=67.0, options=options)
    point = out["point"]
    assert point["calls_per_subject"] == 5 and point["draws"] == [1, 2, 2] and point["levels"][0] == mixture.timesteps
    means = out["samples"]["point"]["continuous"]
    ages = torch.tensor(test["age"], dtype=torch.float64)
    assert point["regression"]["mae"] == pytest.approx(float((means - ages).abs().mean()))
    probs = out["samples"]["point"]["probs"]
    truth = class_truth(mixture, "sex", test["sex"])
    assert point["classification"]["accuracy"] == pytest.approx(float((probs.argmax(1) == truth).double().mean()))
    assert point["regression"]["seconds_per_subject"] > 0 and "regression" in out  # beside sampling, not instead
    assert "mean_sample_variance" not in point["regression"]  # one answer per subject has no spread


def test_point_prediction_of_a_paper_recipe_model_is_refused_before_any_sampling(model, monkeypatch):
    monkeypatch.setattr(model, "sample", lambda *a, **k: pytest.fail("sampled before refusing"))
    options = EvaluationOptions(num_samples=1, steps=2, method="point")
    with pytest.raises(mv.InputError, match="clean subsets.*drop --method point") as err:
        evaluate_model(model, records(2, 0), population_mean=67.0, options=options)
    assert "\n" not in str(err.value)
    with pytest.raises(mv.InputError, match="--method must be one of sample, point"):
        evaluate_model(model, records(2, 0), population_mean=67.0, options=EvaluationOptions(method="mean"))


def test_a_continuous_sex_is_classified_by_its_point_mean_cut_at_the_midpoint():
    spec = tiny_latent_spec_3d()
    spec["variables"][2] = {"name": "sex", "kind": "continuous", "range": [0.0, 1.0]}
    spec["diffusion"] = {**spec.get("diffusion", {}), "training": {"shared": 0.5, "clean": 0.5}, "conditioning": "clean"}
    model = mv.JointModel(spec)
    test = {**records(4, 0), "sex": [0.0, 1.0, 1.0, 0.0]}
    point = point_prediction(model, test, Roles(), seed=0)
    cut = (point["probs"].argmax(1) == class_truth(model, "sex", test["sex"])).double().mean()
    assert point["classification"]["accuracy"] == pytest.approx(float(cut))
    assert point["probs"].shape == (4, 2) and set(point["probs"].flatten().tolist()) <= {0.0, 1.0}
