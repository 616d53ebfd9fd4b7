"""One spec format and one table of defaults (metavoxel/presets.py, metavoxel/spec.py; docs/spec.md).

Every documented field is written by hand, one at a time, at a value other than its default, and no other
field may move; `RECOMMENDED` is what a spec that names nothing gets; the README's starting spec trains a
model that point prediction and clean conditioning accept; a saved spec of another format is refused.
"""

from __future__ import annotations

import copy
import csv
import json
import typing
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import yaml
from pydantic import BaseModel

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.presets import PAPER, RECOMMENDED, with_recipe
from metavoxel.schema_files import builtin_registry
from tiny_runs import write_run
from tiny_specs import tiny_spec_2d

ROOT = Path(__file__).resolve().parents[1]

#: A hand-written spec with one variable of every built-in kind and every optional section present (at its
#: defaults), so that each field below is written into a spec that otherwise names only what it must.
BASE: dict[str, Any] = {
    "variables": [
        {"name": "scan", "kind": "image", "shape": [8, 8, 8], "preprocess": {}},
        {"name": "t1", "kind": "image_latent", "shape": [8, 8, 8], "preprocess": {}},
        {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
        {"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
    ],
    "data": {},
}

class Together(dict):
    """Fields that are only valid together (a schedule parameter of another schedule family): path -> value."""


#: Field path -> a value other than its default (``variables.KIND.FIELD`` is the variable of that kind).
NON_DEFAULT: dict[str, Any] = {
    "name": "another-name",
    "seed": 1,
    "diffusion.timesteps": 500,
    "diffusion.gaussian.name": "linear",
    "diffusion.gaussian.beta_start": 0.001,
    "diffusion.gaussian.beta_end": 0.03,
    "diffusion.gaussian.s": Together({"diffusion.gaussian.name": "cosine", "diffusion.gaussian.s": 0.01}),
    "diffusion.discrete.name": "linear",
    "diffusion.discrete.beta_start": Together({"diffusion.discrete.name": "linear",
                                               "diffusion.discrete.beta_start": 0.001}),
    "diffusion.discrete.beta_end": Together({"diffusion.discrete.name": "linear", "diffusion.discrete.beta_end": 0.03}),
    "diffusion.discrete.s": 0.01,
    "diffusion.kernels": "torch",  # issue 27: this one once switched a hand-written spec to the paper's recipe
    "diffusion.sampling_steps": 20,
    "diffusion.grid": "uniform",
    "diffusion.eta": 0.5,
    "diffusion.training.shared": 0.6,
    "diffusion.training.clean": 0.3,
    "diffusion.training.independent": 0.0,
    "diffusion.training.prior": 0.2,
    "diffusion.training.keep_masks": 0.0,
    "diffusion.conditioning": "repaint",
    "network.spatial_dims": 2,
    "network.channels": [32, 64, 128],
    "network.attention_levels": [False, False, True],
    "network.num_res_blocks": 1,
    "network.num_head_channels": 16,
    "network.norm_num_groups": 16,
    "network.cross_attention_dim": 128,
    "network.attention_backend": "torch",
    "data.columns": {"age": "AGE"},
    "data.subject_column": "subject",
    "data.session_column": "session",
    "data.codes": {"sex": {"0": "F"}},
    "data.missing": ["", "NA"],
    "data.out_of_range": "clip",
    "data.bids_suffix": "T2w",
    "data.split.val": 0.2,
    "data.split.test": 0.2,
    "data.split.seed": 1,
    **{f"variables.{kind}.{field}": value for kind in ("image", "image_latent")
       for field, value in {"channels": 2, "shape": [16, 8, 8], "preprocess.orientation": "LPS",
                            "preprocess.spacing": [1.5, 1.5, 1.5], "preprocess.percentiles": [1.0, 99.0],
                            "preprocess.spacing_warning_ratio": 3.0, "preprocess.interpolation": "nearest",
                            "preprocess.center": "world_origin"}.items()},
    **{f"variables.{kind}.name": f"renamed_{kind}" for kind in ("image", "image_latent", "continuous", "categorical")},
    **{f"variables.{kind}.loss_weight": 2.0 for kind in ("image", "image_latent", "continuous", "categorical")},
    "variables.image.prediction": "v",
    "variables.image.intensity_range": [0.0, 255.0],
    "variables.image.clip_denoised": False,
    "variables.image_latent.prediction": "eps",
    "variables.image_latent.vae.channels": [32, 64, 128],
    "variables.image_latent.vae.latent_channels": 8,
    "variables.image_latent.vae.num_res_blocks": 1,
    "variables.image_latent.vae.attention_levels": [False, False, True],
    "variables.image_latent.vae.norm_num_groups": 16,
    "variables.image_latent.vae.nonlocal_attention": True,
    "variables.image_latent.vae.network": Together({"variables.image_latent.vae.network": "AutoencoderKlMaisi",
                                                    "variables.image_latent.vae.num_splits": 1}),  # 16 by default
    "variables.image_latent.vae.norm_eps": 1e-5,
    "variables.image_latent.vae.use_convtranspose": True,
    "variables.image_latent.vae.include_fc": False,
    "variables.image_latent.vae.use_combined_linear": True,
    "variables.image_latent.vae.use_flash_attention": True,
    "variables.image_latent.vae.use_checkpoint": True,
    **{f"variables.image_latent.vae.{field}": Together({"variables.image_latent.vae.network": "AutoencoderKlMaisi",
                                                        "variables.image_latent.vae.num_splits": 1,
                                                        f"variables.image_latent.vae.{field}": value})
       for field, value in (("num_splits", 1), ("dim_split", 1), ("norm_float16", True), ("print_info", True),
                            ("save_mem", True))},
    "variables.image_latent.scale_factor": 0.5,
    "variables.image_latent.weights": "vae/vae.safetensors",  # no vae.json beside it: no recorded scale factor
    "variables.continuous.range": [0.0, 100.0],
    "variables.continuous.unit": "years",
    "variables.continuous.prediction": "v",
    "variables.categorical.categories": ["F", "M", "X"],
    "variables.categorical.aliases": {"female": "F"},
}

#: Documented fields the test does not vary, and why.
NOT_VARIED = {
    "format_version": "its only valid value is the default (another is refused: test_a_spec_of_another_format_...)",
    **{f"variables.{kind}.kind": "the discriminator: it chooses which fields the variable has"
       for kind in ("image", "image_latent", "continuous", "categorical")},
}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``X``, ``X | None``), or None for a plain value."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def documented_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf field path of ``model``, nested sections walked (what the JSON Schema documents)."""
    paths = set()
    for name, info in model.model_fields.items():
        if model is mv.ModelSpec and name == "variables":
            for kind in builtin_registry().kinds():
                paths |= documented_fields(kind.spec, f"variables.{kind.name}.")
            continue
        inner = _model_in(info.annotation)
        paths |= documented_fields(inner, f"{prefix}{name}.") if inner else {f"{prefix}{name}"}
    return paths


def _write(spec: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    if keys[0] == "variables":
        (node,) = [v for v in spec["variables"] if v["kind"] == keys[1]]
        keys = keys[2:]
    else:
        node = spec
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = copy.deepcopy(value)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """A spec's to_dict() as {path: value}; variables keyed by kind, lists kept whole."""
    if isinstance(data, dict):
        if not data and prefix:
            return {prefix.rstrip("."): {}}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "variables" and not prefix:
                for v in value:
                    out.update(_flat(v, f"variables.{v['kind']}."))
            else:
                out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def test_the_test_writes_every_documented_field():
    assert set(NON_DEFAULT) | set(NOT_VARIED) == documented_fields(mv.ModelSpec), \
        "a spec field was added or removed: give it a non-default value in NON_DEFAULT (or a reason in NOT_VARIED)"


@pytest.mark.parametrize("path", sorted(NON_DEFAULT))
def test_writing_one_field_by_hand_changes_no_other_field(path):
    edits = NON_DEFAULT[path] if isinstance(NON_DEFAULT[path], Together) else {path: NON_DEFAULT[path]}
    spec = copy.deepcopy(BASE)
    for where, value in edits.items():
        _write(spec, where, value)
    before = _flat(mv.ModelSpec.from_dict(copy.deepcopy(BASE), registry=builtin_registry()).to_dict())
    after = _flat(mv.ModelSpec.from_dict(spec, registry=builtin_registry()).to_dict())
    moved = {p for p in before.keys() | after.keys() if before.get(p, "absent") != after.get(p, "absent")}
    assert moved, f"{path} = {NON_DEFAULT[path]!r} is its default: pick another value"
    stray = {p for p in moved if not any(p == e or p.startswith(f"{e}.") for e in edits)}
    assert not stray, f"writing {path} also changed {sorted(stray)}"


def test_the_recommended_table_is_what_a_spec_that_names_nothing_gets():
    spec = mv.ModelSpec.from_dict({"variables": [{"name": "age", "kind": "continuous", "range": [0, 1]}]}).to_dict()
    assert {k: spec[k] for k in RECOMMENDED} == RECOMMENDED
    assert spec["format_version"] == mv.spec.SPEC_FORMAT == 1
    # the recommended recipe in the kinds' own defaults: v for a latent image, eps for the other Gaussian kinds
    kinds = {k.name: k.spec.model_fields.get("prediction") for k in builtin_registry().kinds()}
    assert {k: f.default for k, f in kinds.items() if f is not None} == {"image_latent": "v", "image": "eps",
                                                                        "continuous": "eps"}


def test_the_paper_preset_writes_the_papers_recipe_into_a_spec():
    spec = mv.ModelSpec.from_dict(with_recipe(BASE, PAPER))
    d = spec.diffusion
    assert (d.grid, d.conditioning, d.training.model_dump()) == ("uniform", "repaint", PAPER["diffusion"]["training"])
    assert {v.kind: getattr(v, "prediction", None) for v in spec.variables} == {
        "image": "eps", "image_latent": "eps", "continuous": "eps", "categorical": None}
    assert "prediction" not in with_recipe(BASE, PAPER)["variables"][3]  # a categorical has no such field
    assert BASE["variables"][1] == {"name": "t1", "kind": "image_latent", "shape": [8, 8, 8], "preprocess": {}}
    with pytest.raises(mv.SpecError, match="variable 'x': unknown variable kind 'nope'"):
        with_recipe({"variables": [{"name": "x", "kind": "nope"}]}, PAPER)


def test_the_docs_table_is_the_recommended_table():
    """docs/spec.md shows RECOMMENDED as YAML; it must be the table the code holds."""
    text = (ROOT / "docs" / "spec.md").read_text()
    block = text.split("```yaml recommended\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == RECOMMENDED


# -- the README's starting spec ------------------------------------------------------------------------------
def _cohort(root: Path, n: int = 8) -> Path:
    """n subjects: 16³ NIfTI blobs (1 mm) with age and sex in a table."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(16.0)] * 3, indexing="ij"))
    rows = []
    (root / "images").mkdir(parents=True)
    for i in range(n):
        age, sex = float(rng.uniform(40, 95)), "FM"[i % 2]
        blob = np.exp(-((grid - 7.5) ** 2).sum(0) / (2 * (3 + 3 * (age - 40) / 55) ** 2)).astype(np.float32)
        nib.save(nib.Nifti1Image(blob, np.eye(4)), root / "images" / f"sub-{i:02d}.nii.gz")
        rows.append({"participant_id": f"sub-{i:02d}", "age": f"{age:.1f}", "sex": sex,
                     "image": f"images/sub-{i:02d}.nii.gz"})
    with (root / "cohort.tsv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return root / "cohort.tsv"


def test_the_starting_spec_trains_a_model_that_point_prediction_and_clean_conditioning_accept(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "schemas" / "examples" / "t1w_age_sex_latent.yaml").read_text())
    recipe = {"diffusion": copy.deepcopy(spec["diffusion"]), "prediction": spec["variables"][0]["prediction"]}
    image = spec["variables"][0]  # sizes shrunk, the recipe's fields kept as the file has them
    image.update(shape=[16, 16, 16], weights=None, preprocess={**image["preprocess"], "spacing": [1.0, 1.0, 1.0]},
                 vae={**image["vae"], "channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1,
                      "norm_num_groups": 4})
    spec["network"].update(channels=[8, 16], attention_levels=[False, True], num_res_blocks=1, num_head_channels=8,
                           norm_num_groups=4, cross_attention_dim=16)
    spec["data"] = {"split": {"val": 0.25, "test": 0.0, "seed": 0}}
    assert recipe == {"diffusion": {**spec["diffusion"]}, "prediction": "v"}
    assert (spec["diffusion"]["grid"], spec["diffusion"]["conditioning"]) == ("quadratic", "clean")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    table = _cohort(tmp_path / "cohort")
    steps = ["--steps", "2", "--batch-size", "2", "--val-every", "2", "--checkpoint-every", "2"]
    assert run(["train", "--spec", str(tmp_path / "spec.yaml"), "--data", str(table), "--out", str(tmp_path / "run"),
                *steps]) == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "spec.json").read_text())["spec"]
    assert saved["format_version"] == 1 and saved["diffusion"] == recipe["diffusion"]
    assert run(["predict", "--model", str(tmp_path / "run"), "--data", str(table), "--target", "sex",
                "--method", "point", "--out", str(tmp_path / "point.tsv")]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "point.tsv").open(), delimiter="\t"))
    assert len(rows) == 8 and {r["sex"] for r in rows} <= {"F", "M"}
    assert run(["sample", "--model", str(tmp_path / "run"), "--fix", "age=70", "--fix", "sex=F", "--conditioning",
                "clean", "--steps", "3", "--num-samples", "1", "--out", str(tmp_path / "clean")]) == 0, \
        capsys.readouterr().err
    assert json.loads((tmp_path / "clean" / "samples.json").read_text())["conditioning"] == "clean"


# -- the format version -----------------------------------------------------------------------------------
def test_a_hand_written_spec_may_leave_the_version_out_or_name_this_one():
    plain = tiny_spec_2d()
    assert mv.ModelSpec.from_dict(plain) == mv.ModelSpec.from_dict({**plain, "format_version": 1})
    with pytest.raises(mv.SpecError, match=r"^spec is in spec format 2; this metavoxel \(0\.1\.0\) reads spec "
                                           r"format 1 only: retrain the model with this metavoxel, or load it with"):
        mv.ModelSpec.from_dict({**plain, "format_version": 2})


@pytest.mark.parametrize("version", [None, 0, 2])
def test_a_saved_spec_of_another_format_is_refused_in_one_line(tmp_path, capsys, version):
    out = write_run(tmp_path / "run", tiny_spec_2d())
    saved = json.loads((out / "spec.json").read_text())
    assert saved["spec"]["format_version"] == 1
    from metavoxel.runs import load_run

    assert load_run(out).spec.format_version == 1  # this format loads
    if version is None:
        del saved["spec"]["format_version"]  # saved before formats were numbered
    else:
        saved["spec"]["format_version"] = version
    (out / "spec.json").write_text(json.dumps(saved))
    code = run(["sample", "--model", str(out), "--num-samples", "1", "--out", str(tmp_path / "samples")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    what = "was saved by metavoxel 0.1.0 before spec formats were numbered" if version is None else \
        f"is in spec format {version} (saved by metavoxel 0.1.0)"
    assert err.startswith(f"error: {out / 'spec.json'} {what}; this metavoxel (0.1.0) reads spec format 1 only: "
                          "retrain the model with this metavoxel, or load it with the metavoxel that wrote it")
    assert not (tmp_path / "samples").exists()
