"""`train_run` writes a run directory only once training can start, and leaves no partial run behind."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import metavoxel as mv
from metavoxel.data import CohortError
from metavoxel.training import TrainConfig
from metavoxel.workflows import train
from metavoxel.workflows.train import train_run

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")

SPEC = {
    "variables": [
        {"name": "image", "kind": "image", "channels": 1, "shape": [8, 8, 8]},
        {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
    ],
    "diffusion": {"timesteps": 20, "sampling_steps": 2},
    "network": {"spatial_dims": 3, "channels": [8, 8], "attention_levels": [False, False], "num_res_blocks": 1,
                "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8},
    "data": {"split": {"val": 0.0, "test": 0.0}},
}
CONFIG = TrainConfig(steps=1, batch_size=2, val_every=1, checkpoint_every=1, warmup_steps=0)


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["participant_id\timage\tage"]
    for i in range(4):
        nib.save(nib.Nifti1Image(rng.uniform(0, 1, (8, 8, 8)).astype(np.float32), np.eye(4)), tmp_path / f"{i}.nii")
        rows.append(f"sub-{i}\t{i}.nii\t{60 + i}")
    rows.append("sub-9\t\t70")  # a row without an image: trains the age only, and is counted
    (tmp_path / "cohort.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path / "cohort.tsv"


def _fail(*args, **kwargs):
    raise mv.InputError("something found once training starts")


def test_a_nan_scan_stops_before_anything_is_written(cohort, tmp_path):
    data = np.asarray(nib.load(tmp_path / "2.nii").dataobj).copy()
    data[:3, :3, :3] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "2.nii")
    with pytest.raises(CohortError, match="row 4, column 'image': image: '2.nii' has 27 NaN voxels"):
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, tmp_path / "run", CONFIG)
    assert not (tmp_path / "run").exists()


def test_a_failure_before_training_saves_a_state_leaves_no_partial_run(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train", _fail)
    lines = []
    with pytest.raises(mv.InputError, match="once training starts"):
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, tmp_path / "run", CONFIG, report=lines.append)
    assert not (tmp_path / "run").exists()
    assert lines == [f"{cohort}: 5 records of 5 subjects, 4 with an image, 1 without (metadata only: cohort.tsv "
                     "row 6)"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")  # a folder the user made: only what the run added goes
    with pytest.raises(mv.InputError):
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, tmp_path / "mine", CONFIG)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_run_with_a_saved_state_is_kept_for_resume(cohort, tmp_path, monkeypatch):
    def fail_after_a_checkpoint(*args, run_dir, **kwargs):
        (run_dir / "state.json").write_text("{}")
        _fail()

    monkeypatch.setattr(train, "train", fail_after_a_checkpoint)
    with pytest.raises(mv.InputError):
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, tmp_path / "run", CONFIG)
    assert {"spec.json", "splits.json", "train.json", "state.json"} <= {p.name for p in (tmp_path / "run").iterdir()}


def test_a_scan_refused_while_encoding_is_named_by_its_row_and_nothing_is_left(cohort, tmp_path, monkeypatch):
    def encode_cohort(model, part, **kwargs):  # as the preprocessing refuses a scan off the model grid
        raise mv.InputError(f"image: {str(tmp_path / '3.nii')!r} is constant on the model grid; check the file")

    monkeypatch.setattr(train, "encode_cohort", encode_cohort)
    with pytest.raises(mv.InputError) as err:
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, tmp_path / "run", CONFIG)
    assert str(err.value).startswith("cohort.tsv row 5, column 'image': image: ")
    assert not (tmp_path / "run").exists()


def test_the_log_gets_every_metrics_row_and_what_it_wrote_goes_with_a_failed_run(cohort, tmp_path):
    """`train --tensorboard`'s `log=` pass-through: it sees the rows of metrics.jsonl, and files it adds under the
    run directory (TensorBoard's event file) are removed with the run when training fails before a saved state."""
    out = tmp_path / "run"
    rows = []

    def log(row):
        (out / "tensorboard").mkdir(exist_ok=True)
        (out / "tensorboard" / "events.out").write_text("scalars")
        rows.append(row)
        raise mv.InputError("the log failed")

    with pytest.raises(mv.InputError, match="the log failed"):
        train_run(mv.ModelSpec.model_validate(SPEC), cohort, out, CONFIG, log=log)
    assert [row["step"] for row in rows] == [1] and "loss" in rows[0]
    assert not out.exists()

    seen = []
    train_run(mv.ModelSpec.model_validate(SPEC), cohort, out, CONFIG, log=seen.append)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert seen == logged and (out / "state.json").exists()
