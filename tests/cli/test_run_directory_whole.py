"""A run directory is one consistent whole, and a model is what it was trained as (issue 28, kinds 2 and 3).

`train --resume` continues exactly the run it finds or refuses before writing anything, naming what differs;
one process writes a run directory; a damaged run is reported as such; a hand-edited spec.json is refused.
One tiny run is trained once (2D 8×8 images, age, sex; 3 steps) and copied for each test that changes it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from cli_errors import one_line_error

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.io.lock import writer_lock

SPEC = {
    "name": "tiny-run",
    "variables": [{"name": "image", "kind": "image", "channels": 1, "shape": [8, 8]},
                  {"name": "age", "kind": "continuous", "range": [40, 95]},
                  {"name": "sex", "kind": "categorical", "categories": ["F", "M"]}],
    "diffusion": {"timesteps": 20, "sampling_steps": 2},
    "network": {"spatial_dims": 2, "channels": [8, 8], "attention_levels": [False, False], "num_res_blocks": 1,
                "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8},
    "data": {"split": {"val": 0.2, "test": 0.2, "seed": 0}},
}
TRAIN = ["--steps", "3", "--batch-size", "2", "--val-every", "1", "--checkpoint-every", "1"]
RUN_FILES = ("spec.json", "splits.json", "train.json", "model.safetensors", "state.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    rng = np.random.default_rng(0)
    rows = ["participant_id\timage\tage\tsex"]
    for k in range(10):
        mv.write_nifti(root / f"img{k}.nii.gz", rng.random((8, 8)).astype(np.float32), np.eye(4))
        rows.append(f"sub-{k:02d}\timg{k}.nii.gz\t{45 + 5 * k}\t{'FM'[k % 2]}")
    (root / "cohort.tsv").write_text("\n".join(rows) + "\n")
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    assert run(["train", "--spec", str(root / "spec.yaml"), "--data", str(root / "cohort.tsv"), "--out",
                str(root / "run"), *TRAIN]) == 0
    return root


@pytest.fixture
def copy(trained, tmp_path):
    """A copy of the trained run, its spec and its cohort, to change."""
    for name in ("cohort.tsv", "spec.yaml", *(f"img{k}.nii.gz" for k in range(10))):
        shutil.copy(trained / name, tmp_path / name)
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path


def _snapshot(run_dir):
    return {name: (run_dir / name).read_bytes() for name in RUN_FILES}


def _resume(root, spec="spec.yaml", *extra):
    return ["train", "--spec", root / spec, "--data", root / "cohort.tsv", "--out", root / "run", *TRAIN, "--resume",
            *extra]


def test_resume_with_a_changed_network_is_refused_and_the_run_still_samples(copy, capsys):
    spec = {**SPEC, "network": {**SPEC["network"], "channels": [8, 16]}}
    (copy / "wider.yaml").write_text(yaml.safe_dump(spec))
    before = _snapshot(copy / "run")
    err = one_line_error(_resume(copy, "wider.yaml"), capsys)
    assert "--resume: the spec differs from the run's" in err and "network.channels [8, 8] -> [8, 16]" in err
    assert _snapshot(copy / "run") == before  # nothing rewritten
    assert run(["sample", "--model", str(copy / "run"), "--fix", "age=60", "--out", str(copy / "s")]) == 0


def test_resume_with_another_split_seed_range_or_learning_rate_is_refused(copy, capsys):
    before = _snapshot(copy / "run")
    for change, named in ((lambda s: s["data"]["split"].update(seed=5), "data.split.seed 0 -> 5"),
                          (lambda s: s["variables"][1].update(range=[0, 120]),
                           "variables[age].range [40.0, 95.0] -> [0.0, 120.0]")):
        spec = json.loads(json.dumps(SPEC))
        change(spec)
        (copy / "changed.yaml").write_text(yaml.safe_dump(spec))
        assert named in one_line_error(_resume(copy, "changed.yaml"), capsys)
    err = one_line_error(_resume(copy, "spec.yaml", "--lr", "0.001"), capsys)
    assert "the training settings differ from the run's train.json (lr 0.0001 -> 0.001)" in err
    assert _snapshot(copy / "run") == before


def test_resume_on_a_changed_cohort_is_refused_naming_the_subject(copy, capsys):
    table = (copy / "cohort.tsv").read_text().replace("sub-03\timg3.nii.gz\t60", "sub-03\timg3.nii.gz\t61")
    (copy / "cohort.tsv").write_text(table)
    err = one_line_error(_resume(copy), capsys)
    assert "is not the cohort the run was trained on (1 subject(s) changed (e.g. sub-03))" in err


def test_resume_of_the_same_run_continues_and_may_change_how_often_it_logs(copy, capsys):
    before = _snapshot(copy / "run")
    assert run([str(a) for a in _resume(copy, "spec.yaml", "--val-every", "3")]) == 0
    assert run([str(a) for a in _resume(copy, "run/spec.json")]) == 0  # the run's own spec.json, as advised
    after = _snapshot(copy / "run")
    assert all(after[k] == before[k] for k in ("spec.json", "splits.json", "train.json"))  # the run's own, kept


def test_a_second_writer_is_refused_before_it_writes(copy, capsys):
    before = _snapshot(copy / "run")
    with writer_lock(copy / "run", what="held"):  # another `metavoxel train` on the same --out
        err = one_line_error(_resume(copy), capsys)
        assert f"the run directory '{copy / 'run'}' is being written by another metavoxel process" in err
        err = one_line_error(["train", "--spec", copy / "spec.yaml", "--data", copy / "cohort.tsv", "--out",
                                copy / "run", *TRAIN], capsys)
        assert "is being written by another metavoxel process" in err
    err = one_line_error(["train", "--spec", copy / "spec.yaml", "--data", copy / "cohort.tsv", "--out",
                            copy / "run", *TRAIN], capsys)  # once it is free: a run is there, and no --resume
    assert "already holds a training run (spec.json, model.safetensors, best.safetensors); pass --resume" in err
    err = one_line_error(["train", "--spec", copy / "run" / "spec.json", "--data", copy / "cohort.tsv", "--out",
                            copy / "run", *TRAIN], capsys)
    assert f"--out (spec.json) '{copy / 'run' / 'spec.json'}' is the file --spec reads" in err
    assert _snapshot(copy / "run") == before


def test_a_damaged_run_is_reported_with_what_to_do(copy, capsys):
    state = json.loads((copy / "run" / "state.json").read_text())["dir"]
    shutil.rmtree(copy / "run" / state)
    err = one_line_error(_resume(copy), capsys)
    assert f"the run in {copy / 'run'} is damaged: state.json names the training state {state}, which is missing" in err
    assert "train again into a new --out" in err
    (copy / "run" / "model.safetensors").unlink()
    err = one_line_error(["sample", "--model", copy / "run", "--fix", "age=60", "--out", copy / "s"], capsys)
    assert "is damaged: it has a training state but no model.safetensors" in err
    (copy / "run" / "spec.json").write_text("{not json")
    assert "spec.json is damaged" in one_line_error(["sample", "--model", copy / "run", "--out", copy / "s"], capsys)


@pytest.mark.parametrize("edit", [lambda s: s["variables"][2].update(categories=["M", "F"]),
                                  lambda s: s["variables"][1].update(range=[0, 120])],
                         ids=["categories swapped", "range widened"])
def test_a_hand_edited_spec_of_a_trained_model_is_refused(copy, capsys, edit):
    saved = json.loads((copy / "run" / "spec.json").read_text())
    edit(saved["spec"])  # the tensors still fit: only the seal tells
    (copy / "run" / "spec.json").write_text(json.dumps(saved))
    err = one_line_error(["sample", "--model", copy / "run", "--fix", "age=66", "--out", copy / "s"], capsys)
    assert "spec.json is not the spec model.safetensors was trained with" in err
    assert not (copy / "s").exists()


def test_advice_for_values_outside_the_trained_range_never_edits_the_spec(copy, capsys):
    err = one_line_error(["sample", "--model", copy / "run", "--fix", "age=97", "--out", copy / "s"], capsys)
    assert "need a model trained with a wider declared range" in err and "widen" not in err
    (copy / "old.tsv").write_text("participant_id\timage\tage\tsex\nsub-99\timg0.nii.gz\t97\tF\n")
    code = run(["predict", "--model", str(copy / "run"), "--data", str(copy / "old.tsv"), "--target", "sex",
                "--out", str(copy / "p.tsv")])
    err = capsys.readouterr().err
    assert code == 2 and "'97' is outside the declared range [40, 95]" in err and "spec" not in err.split("range")[-1]
    assert "a model answers only within the range it was trained on" in err and not (copy / "p.tsv").exists()
