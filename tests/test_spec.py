"""ModelSpec: strict validation with field paths, files, JSON round trips, and the committed schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_specs import tiny_spec_2d
from hypothesis import given
from hypothesis import strategies as st

import metavoxel as mv
from metavoxel.schema_files import render_schema_files, stale_schema_files

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_kind_lists_the_known_kinds_with_the_field_path():
    spec = tiny_spec_2d()
    spec["variables"][1]["kind"] = "continous"
    with pytest.raises(mv.SpecError, match=r"variables\.1: .*'continous'.*'categorical', 'continuous', 'image'"):
        mv.ModelSpec.from_dict(spec)


def test_kind_parameters_are_validated_by_the_kind_with_the_field_path():
    spec = tiny_spec_2d()
    spec["variables"][1]["range"] = [95, 40]
    spec["variables"][2]["categories"] = ["A"]
    spec["variables"][0]["colour"] = "red"
    with pytest.raises(mv.SpecError) as err:
        mv.ModelSpec.from_dict(spec)
    message = str(err.value)
    assert "variables.1.continuous: Value error, range must be two finite numbers with lo < hi" in message
    assert "variables.2.categorical.categories" in message
    assert "variables.0.image.colour: Extra inputs are not permitted" in message


def test_model_level_errors():
    with pytest.raises(mv.SpecError, match="variable names must be unique; repeated: age"):
        spec = tiny_spec_2d()
        spec["variables"].append({"name": "age", "kind": "continuous", "range": [0, 1]})
        mv.ModelSpec.from_dict(spec)
    with pytest.raises(mv.SpecError, match="sampling_steps .* cannot exceed timesteps"):
        mv.ModelSpec.from_dict(tiny_spec_2d(diffusion={"timesteps": 10, "sampling_steps": 20}))
    with pytest.raises(mv.SpecError, match="attention_levels has 1 entries but channels has 2"):
        mv.ModelSpec.from_dict(tiny_spec_2d(network={"spatial_dims": 2, "channels": [8, 16], "attention_levels": [True],
                                                      "norm_num_groups": 4}))
    with pytest.raises(mv.SpecError, match="the cosine schedule takes 's'"):
        mv.ModelSpec.from_dict(tiny_spec_2d(diffusion={"gaussian": {"name": "cosine", "beta_start": 0.1}}))


def test_from_file_yaml_and_json(tmp_path):
    import yaml

    spec = mv.ModelSpec.from_dict(tiny_spec_2d())
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(tiny_spec_2d()))
    (tmp_path / "m.json").write_text(json.dumps(tiny_spec_2d()))
    assert mv.ModelSpec.from_file(tmp_path / "m.yaml") == spec == mv.ModelSpec.from_file(tmp_path / "m.json")
    (tmp_path / "bad.yaml").write_text("variables:\n  - name: age\n    range: [40, 95\n  - name: sex\n")
    with pytest.raises(mv.SpecError) as err:
        mv.ModelSpec.from_file(tmp_path / "bad.yaml")
    assert str(err.value) == (f"{tmp_path / 'bad.yaml'}:4:9: invalid YAML: expected ',' or ']', but got ':' (while "
                              "parsing a flow sequence at 3:12); fix the syntax there")
    (tmp_path / "bad.json").write_text('{"variables": [1,]}')
    with pytest.raises(mv.SpecError, match=r"bad.json:1:18: invalid JSON: Expecting value; fix the syntax there"):
        mv.ModelSpec.from_file(tmp_path / "bad.json")
    with pytest.raises(mv.SpecError, match="does not exist"):
        mv.ModelSpec.from_file(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(mv.SpecError, match="must hold a mapping"):
        mv.ModelSpec.from_file(tmp_path / "list.yaml")


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def specs(draw):
    """Random valid specs: one image plus any mix of continuous and categorical variables."""
    picked = draw(st.lists(names.filter(lambda n: n != "image"), max_size=4, unique=True))
    variables = [{"name": "image", "kind": "image", "shape": [8, 8], "loss_weight": draw(st.floats(0, 5))}]
    for name in picked:
        if draw(st.booleans()):
            lo = draw(st.floats(-1e3, 1e3))
            variables.append({"name": name, "kind": "continuous", "range": [lo, lo + draw(st.floats(0.1, 1e3))]})
        else:
            k = draw(st.integers(2, 6))
            variables.append({"name": name, "kind": "categorical", "categories": [f"c{i}" for i in range(k)]})
    steps = draw(st.integers(2, 500))
    return {"variables": variables, "seed": draw(st.integers(0, 2**31)),
            "diffusion": {"timesteps": steps, "sampling_steps": draw(st.integers(1, steps)),
                          "eta": draw(st.floats(0, 1))},
            "network": {"spatial_dims": 2, "channels": [8, 16], "attention_levels": [False, True],
                        "norm_num_groups": 4}}


@given(specs())
def test_spec_json_round_trips(data):
    spec = mv.ModelSpec.from_dict(data)
    again = mv.ModelSpec.model_validate_json(spec.to_json())
    assert again == spec and again.to_dict() == spec.to_dict()
    assert [type(v).__name__ for v in again.variables] == [type(v).__name__ for v in spec.variables]


def test_committed_schema_files_are_current():
    stale = stale_schema_files(ROOT / "schemas")
    assert not stale, f"regenerate with `metavoxel schema --out schemas`: {stale}"


def test_example_specs_build_and_the_schema_names_every_builtin_kind():
    files = render_schema_files()
    schema = json.loads(files["modelspec.schema.json"])
    kinds = {d["properties"]["kind"]["const"] for d in schema["$defs"].values() if "kind" in d.get("properties", {})
             and "const" in d["properties"]["kind"]}
    assert kinds == {"continuous", "categorical", "image", "image_latent"}
    for stem in ("t1w_age_sex_latent", "t1w_age_sex_latent_paper"):
        spec = mv.ModelSpec.from_file(ROOT / f"schemas/examples/{stem}.yaml")
        assert [v.kind for v in spec.variables] == ["image_latent", "continuous", "categorical"]
    toy = mv.ModelSpec.from_file(ROOT / "schemas/examples/toy_2d_pixel.yaml")
    assert mv.JointModel(toy).grid == (16, 16)


def test_a_latent_image_predicts_v_unless_its_spec_or_the_paper_preset_names_eps():
    from tiny_specs import tiny_latent_spec_3d

    new = mv.ModelSpec.from_dict(tiny_latent_spec_3d())
    assert [getattr(v, "prediction", None) for v in new.variables] == ["v", "eps", None]
    assert mv.JointModel(new).variables["image"].prediction == "v"
    assert mv.ModelSpec.from_dict(tiny_spec_2d()).variables[0].prediction == "eps"  # a pixel image: the paper's
    saved = json.loads(json.dumps(new.to_dict()))
    assert saved["variables"][0]["prediction"] == "v"  # a spec written now names it, so it loads as written
    del saved["variables"][0]["prediction"]  # every other field present: still v, no guessing from the others
    assert mv.ModelSpec.from_dict(saved).variables[0].prediction == "v"
    paper = mv.ModelSpec.from_file(ROOT / "schemas/examples/t1w_age_sex_latent_paper.yaml")
    assert [getattr(v, "prediction", None) for v in paper.variables] == ["eps", "eps", None]  # the paper preset
