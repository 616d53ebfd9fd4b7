"""What the CLI tells the user: warnings as one line, what was written, a few class probabilities."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import yaml

from metavoxel.cli import run
from metavoxel.cli.display import top_probabilities
from metavoxel.cli.run_commands import _written


def test_a_warning_prints_as_one_readable_line(tmp_path, capsys, monkeypatch):
    from metavoxel.io.preprocess import SpacingWarning
    from metavoxel.workflows import vae

    def encode_run(*args, **kwargs):
        warnings.warn("image: 'scan.nii.gz' has voxels of 11×11×11 mm but the model works at 1.5×1.5×1.5 mm\n"
                      "(a factor 7.3 on axis R)", SpacingWarning, stacklevel=2)
        return {"images": 1, "cached_before": 0}

    monkeypatch.setattr(vae, "encode_run", encode_run)
    assert run(["encode", "--spec", str(tmp_path / "s.yaml"), "--data", str(tmp_path), "--cache",
                str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: image: 'scan.nii.gz' has voxels of 11×11×11 mm but the model works at 1.5×1.5×1.5 mm "
                   "(a factor 7.3 on axis R)\n")
    assert warnings.showwarning.__module__ == "warnings"  # restored after the command


def test_train_with_a_nan_scan_exits_2_and_writes_nothing(tmp_path, capsys):
    data = np.random.default_rng(0).uniform(0, 1, (8, 8, 8)).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "scan.nii.gz")
    (tmp_path / "cohort.tsv").write_text("participant_id\timage\tage\nsub-1\tscan.nii.gz\t60\nsub-2\tscan.nii.gz\tx\n")
    spec = {"variables": [{"name": "image", "kind": "image", "channels": 1, "shape": [8, 8, 8]},
                          {"name": "age", "kind": "continuous", "range": [40, 95]}],
            "network": {"spatial_dims": 3, "channels": [8, 8], "attention_levels": [False, False],
                        "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    code = run(["train", "--spec", str(tmp_path / "spec.yaml"), "--data", str(tmp_path / "cohort.tsv"), "--out",
                str(tmp_path / "run"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "row 2, column 'image': image: 'scan.nii.gz' has 1 NaN voxel (of 512)" in err
    assert "row 3, column 'image'" in err and "row 3, column 'age'" in err  # with the table's other problems
    assert not (tmp_path / "run").exists()


def test_sample_lists_what_it_wrote(tmp_path):
    (tmp_path / "samples.json").write_text("{}")
    assert _written([tmp_path / "samples.json"], tmp_path) == f"wrote samples.json to {tmp_path}"
    names = [f"image_sample{k:02d}.nii.gz" for k in range(6)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name.replace(".nii.gz", ".json")).write_text("{}")
    files = [tmp_path / n for n in names[:2]] + [tmp_path / "preview.png", tmp_path / "samples.json"]
    assert _written(files, tmp_path) == (f"wrote image_sample00.nii.gz, image_sample01.nii.gz with JSON sidecars, "
                                         f"preview.png, samples.json to {tmp_path}")
    files = [tmp_path / n for n in names] + [tmp_path / "samples.json"]
    assert _written(files, tmp_path) == (f"wrote image_sample00.nii.gz … image_sample05.nii.gz (6 images) with JSON "
                                         f"sidecars, samples.json to {tmp_path}")


def test_many_classes_show_the_top_few_and_the_rest_total():
    assert top_probabilities(["F", "M"], [0.25, 0.75]) == "F 0.25, M 0.75"  # few classes: all, in their order
    categories = [f"c{k}" for k in range(300)]
    probs = np.full(300, 0.5 / 295)
    probs[[7, 2, 150, 299, 0]] = [0.2, 0.1, 0.1, 0.05, 0.05]
    assert top_probabilities(categories, probs) == "c7 0.20, c2 0.10, c150 0.10, c0 0.05, c299 0.05, 295 others 0.50"


def test_unknown_names_get_the_nearest_one():
    from metavoxel.errors import did_you_mean

    names = ["image", "age", "sex"]
    assert did_you_mean("Age", names) == " (did you mean 'age'?)"  # case first, as table columns are matched
    assert did_you_mean("imgae", names) == " (did you mean 'image'?)"
    assert did_you_mean("weight", names) == ""


def test_a_typicality_threshold_of_0_or_100_is_one_line_before_any_work(tmp_path, capsys):
    """The engine flags above a percentile strictly inside (0, 100); the flag said so only after sampling (sample
    then wrote its answer with a note, predict and evaluate failed after all their work)."""
    from cli_errors import one_line_error

    for command, value in (("sample", "100"), ("predict", "0"), ("evaluate", "100")):
        err = one_line_error([command, "--model", tmp_path / "nowhere", "--typicality-threshold", value], capsys)
        assert "--typicality-threshold must be a percentile strictly between 0 and 100" in err
