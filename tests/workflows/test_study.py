"""Phantom studies: the recipes behind `metavoxel demo` and benchmarks/paper build valid specs and cohorts."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import metavoxel as mv
from metavoxel.data import DataSpec, read_cohort
from metavoxel.workflows.study import DEMO, VARIANTS, make_cohort, phantom_config, study_spec

ROOT = Path(__file__).resolve().parents[2]


def benchmark_configs():
    sys.path.insert(0, str(ROOT / "benchmarks" / "paper"))
    try:
        from configs import CONFIGS
    finally:
        sys.path.pop(0)
    return CONFIGS


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_of_every_recipe_is_a_valid_spec(variant):
    recipes = [DEMO] + [c.recipe for c in benchmark_configs().values()]
    for recipe in recipes:
        spec = mv.ModelSpec.from_dict(study_spec(recipe, variant))
        names = [v.name for v in spec.variables]
        assert names == {"joint": ["image", "age", "sex"], "image-only": ["image"],
                         "continuous-sex": ["image", "age", "sex"]}[variant]
        assert spec.diffusion.sampling_steps == recipe.sampling_steps


def test_the_paper_recipe_has_the_papers_latent_grid():
    paper = benchmark_configs()["paper"].recipe
    spec = mv.ModelSpec.from_dict(study_spec(paper))
    image = spec.variable("image")
    assert list(image.shape) == [96, 112, 96] and image.preprocess.spacing == [1.5, 1.5, 1.5]
    assert [s // image.vae.downsample_factor for s in image.shape] == [24, 28, 24]


def test_the_paper_configuration_trains_the_paper_example_spec_on_the_paper_recipe():
    """benchmarks/paper's ``paper`` configuration is schemas/examples/t1w_age_sex_latent_paper.yaml's model."""
    from metavoxel.presets import PAPER

    example = mv.ModelSpec.from_file(ROOT / "schemas" / "examples" / "t1w_age_sex_latent_paper.yaml")
    spec = mv.ModelSpec.from_dict(study_spec(benchmark_configs()["paper"].recipe))
    assert spec.diffusion == example.diffusion and spec.network == example.network
    assert {k: getattr(spec.diffusion, k) for k in PAPER["diffusion"] if k != "training"} == \
        {k: v for k, v in PAPER["diffusion"].items() if k != "training"}
    assert spec.diffusion.training.model_dump() == PAPER["diffusion"]["training"]
    assert [(v.kind, getattr(v, "prediction", None)) for v in spec.variables] == \
        [(v.kind, getattr(v, "prediction", None)) for v in example.variables]
    assert spec.variable("image").shape == example.variable("image").shape


def test_unknown_variant_is_refused():
    with pytest.raises(mv.InputError, match="image-only"):
        study_spec(DEMO, "image_only")


def test_recipe_loss_weights_reach_the_variables_of_every_variant_and_unknown_names_are_refused():
    recipe = dataclasses.replace(DEMO, loss_weights={"age": 4.0})
    for variant in VARIANTS:
        spec = mv.ModelSpec.from_dict(study_spec(recipe, variant))
        weights = {v.name: v.loss_weight for v in spec.variables}
        assert weights == {"joint": {"image": 1.0, "age": 4.0, "sex": 1.0}, "image-only": {"image": 1.0},
                           "continuous-sex": {"image": 1.0, "age": 4.0, "sex": 1.0}}[variant]
    with pytest.raises(mv.InputError, match="loss_weights names weight; a study's variables are image, age and sex"):
        study_spec(dataclasses.replace(DEMO, loss_weights={"weight": 2.0}))


def test_recipe_predictions_reach_the_gaussian_variables_and_the_demo_image_predicts_v():
    assert DEMO.predictions == {"image": "v"}
    recipe = dataclasses.replace(DEMO, predictions={"image": "v", "age": "v", "sex": "v"})
    for variant in VARIANTS:
        model = mv.JointModel(study_spec(recipe, variant))
        got = {name: getattr(var, "prediction", "x0 logits") for name, var in model.variables.items()}
        assert got == {"joint": {"image": "v", "age": "v", "sex": "x0 logits"}, "image-only": {"image": "v"},
                       "continuous-sex": {"image": "v", "age": "v", "sex": "v"}}[variant]
    with pytest.raises(mv.InputError, match="predictions names volume; a study's variables are image, age and sex"):
        study_spec(dataclasses.replace(DEMO, predictions={"volume": "v"}))


def test_cohort_is_reused_and_continuous_sex_reads_f_m_as_0_1(tmp_path):
    recipe = dataclasses.replace(DEMO, subjects=12)
    root = make_cohort(recipe, tmp_path / "cohort")
    stamp = (root / "participants.tsv").stat().st_mtime_ns
    assert make_cohort(recipe, root) == root and (root / "participants.tsv").stat().st_mtime_ns == stamp
    model = mv.JointModel(study_spec(recipe, "continuous-sex"), load_weights=False)
    cohort = read_cohort(root, model.variables, model.spec.data or DataSpec())
    labels = [line.split("\t")[2] for line in (root / "participants.tsv").read_text().splitlines()[1:]]
    assert cohort.batch()["sex"] == [0.0 if s == "F" else 1.0 for s in labels]


def test_recipe_phantom_settings_reach_the_cohort_and_bad_ones_are_refused(tmp_path):
    recipe = dataclasses.replace(DEMO, subjects=4, phantom={"age_effect": 2.0, "variability": 0.5})
    root = make_cohort(recipe, tmp_path / "cohort")
    written = json.loads((root / "phantom.json").read_text())["config"]
    assert written["age_effect"] == 2.0 and written["variability"] == 0.5 and written["subjects"] == 4
    for bad, message in (({"colour": 1.0}, "colour"), ({"seed": 3}, "phantom_seed"), ({"noise": -1.0}, "noise")):
        with pytest.raises(mv.InputError, match=message):
            phantom_config(dataclasses.replace(DEMO, phantom=bad))


def test_without_the_shipped_vae_the_recipe_trains_its_own_on_the_cohort(tmp_path):
    """`demo --train-vae` and the benchmark's --train-vae: the recipe's VAE trained on the training split into out."""
    from metavoxel.workflows.study import train_study_vae

    recipe = dataclasses.replace(DEMO, subjects=12, pretrained_vae=None, vae_steps=2, vae_batch_size=2)
    root = make_cohort(recipe, tmp_path / "cohort")
    weights, scale, summary = train_study_vae(recipe, root, tmp_path / "vae", refit_probe=False)
    assert weights == tmp_path / "vae" / "vae.safetensors" and weights.is_file() and scale > 0
    assert "pretrained" not in summary and summary["steps"] == 2
    assert json.loads((tmp_path / "vae" / "vae.json").read_text())["architecture"]["channels"] == list(
        recipe.vae_channels)
