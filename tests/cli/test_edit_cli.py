"""`metavoxel edit` on a scan in its own grid and orientation: what it writes, and bad requests (exit 2, nothing
written). An untrained tiny run: the mechanics, not the quality (benchmarks/edits.py measures that)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from tiny_runs import write_run
from tiny_specs import TINY_NET_2D

from metavoxel.cli import run
from metavoxel.presets import RECOMMENDED_TRAINING

PAPER = {"shared": 1.0, "clean": 0.0, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0}


def spec(training: dict) -> dict:
    return {
        "name": "tiny-edit",
        "variables": [
            {"name": "image", "kind": "image_latent", "channels": 1, "shape": [8, 8, 8],
             "vae": {"channels": [4, 4], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4},
             "preprocess": {"orientation": "RAS", "spacing": [2.0, 2.0, 2.0], "percentiles": [0.5, 99.5]}},
            {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
            {"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
        ],
        "diffusion": {"timesteps": 50, "sampling_steps": 3, "training": training, "conditioning": "clean"
                      if training["clean"] > 0 else "repaint"},
        "network": {**TINY_NET_2D, "spatial_dims": 3},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from io_anatomy import scan_affine, write_scan

    root = tmp_path_factory.mktemp("edit")
    clean = write_run(root / "clean", spec(dict(RECOMMENDED_TRAINING)))
    paper = write_run(root / "paper", spec(dict(PAPER)))
    affine = scan_affine("LPI", spacing=(1.5, 1.3, 1.4), shape=(12, 13, 11), rotate_z_deg=20.0)
    scan = write_scan(root / "scan.nii.gz", affine, (12, 13, 11))  # another grid and orientation than the model's
    return {"clean": clean, "paper": paper, "scan": scan, "root": root}


def edit(runs, out, *extra):
    return run(["edit", "--model", str(runs["clean"]), "--fix", f"image={runs['scan']}", "--fix", "age=60",
                "--fix", "sex=F", "--out", str(out), *extra])


def test_edit_writes_the_edited_scan_and_difference_in_the_scans_own_grid(runs, tmp_path, capsys):
    out = tmp_path / "older"
    assert edit(runs, out, "--set", "age=+10") == 0
    assert "edited to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["edit.json", "image_difference.nii.gz", "image_edited.nii.gz"]
    scan = nib.load(runs["scan"])
    edited, difference = nib.load(out / "image_edited.nii.gz"), nib.load(out / "image_difference.nii.gz")
    for image in (edited, difference):
        assert image.shape == scan.shape and np.allclose(image.affine, scan.affine, atol=1e-5)
    assert np.allclose(edited.get_fdata() - scan.get_fdata(), difference.get_fdata(), atol=1e-3)
    record = json.loads((out / "edit.json").read_text())
    assert record["changed"] == {"age": [70.0]} and record["observed"]["age"] == [60.0] and record["inferred"] == []
    assert record["images"]["image"]["space"] == "source" and record["output"] == "change"
    assert "not a measured follow-up" in record["meaning"]


def test_unchanged_values_give_back_the_scan_and_missing_values_are_inferred(runs, tmp_path, capsys):
    out = tmp_path / "same"
    assert run(["edit", "--model", str(runs["clean"]), "--fix", f"image={runs['scan']}", "--fix", "sex=F",
                "--set", "sex=F", "--out", str(out)]) == 0
    assert "(inferred)" in capsys.readouterr().out
    scan = nib.load(runs["scan"]).get_fdata()
    assert np.allclose(nib.load(out / "image_edited.nii.gz").get_fdata(), scan, atol=1e-4)
    assert json.loads((out / "edit.json").read_text())["inferred"] == ["age"]


def test_model_space_and_decoded_output(runs, tmp_path):
    out = tmp_path / "model"
    assert edit(runs, out, "--set", "sex=M", "--space", "model", "--output", "decoded", "--refine", "0") == 0
    assert nib.load(out / "image_edited.nii.gz").shape == (8, 8, 8)
    assert json.loads((out / "edit.json").read_text())["output"] == "decoded"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "weight=3"], "unknown variable"),
    (["--set", "image=x.nii.gz"], "is an image"),
    ([], "nothing to change"),
    (["--set", "age=+50"], "outside the model's range"),
    (["--set", "sex=+1"], "signed change"),
    (["--set", "age=70", "--output", "blend"], "--output must be one of"),
    (["--set", "age=70", "--refine", "-1"], "--refine must be"),
    (["--set", "age=70", "--space", "other"], "--space must be"),
])
def test_bad_requests_exit_2_with_one_line_and_write_nothing(runs, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    assert edit(runs, out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_a_model_without_clean_subsets_refuses_and_a_folder_it_did_not_write_is_not_replaced(runs, tmp_path, capsys):
    out = tmp_path / "paper"
    assert run(["edit", "--model", str(runs["paper"]), "--fix", f"image={runs['scan']}", "--set", "age=70",
                "--out", str(out)]) == 2
    assert "needs a model trained with clean subsets" in capsys.readouterr().err and not out.exists()
    assert edit(runs, runs["root"], "--set", "age=70") == 2
    assert "metavoxel edit did not write" in capsys.readouterr().err  # the folder holding the scan is not replaced
    assert sorted(p.name for p in runs["root"].iterdir()) == ["clean", "paper", "scan.nii.gz"]


def test_deviation_writes_a_zscore_map_in_the_scans_own_grid(runs, tmp_path, capsys):
    out = tmp_path / "dev"
    assert run(["deviation", "--model", str(runs["clean"]), "--fix", f"image={runs['scan']}", "--fix", "age=60",
                "-n", "3", "--out", str(out)]) == 0
    assert "(inferred)" in capsys.readouterr().out  # sex was not given
    assert sorted(p.name for p in out.iterdir()) == ["deviation.json", "image_expected.nii.gz", "image_sd.nii.gz",
                                                    "image_zscore.nii.gz"]
    scan = nib.load(runs["scan"])
    z = nib.load(out / "image_zscore.nii.gz")
    assert z.shape == scan.shape and np.allclose(z.affine, scan.affine, atol=1e-5)
    assert np.isfinite(z.get_fdata()).all()
    record = json.loads((out / "deviation.json").read_text())
    assert record["num_samples"] == 3 and record["inferred"] == ["sex"] and record["values"]["age"] == [60.0]
    model_space = tmp_path / "dev-model"
    assert run(["deviation", "--model", str(runs["clean"]), "--fix", f"image={runs['scan']}", "-n", "2",
                "--space", "model", "--reference", "reconstruction", "--out", str(model_space)]) == 0
    assert nib.load(model_space / "image_zscore.nii.gz").shape == (8, 8, 8)


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "1"], "at least 2 samples"),
    (["--sd-floor", "0"], "floor must be > 0"),
    (["--reference", "atlas"], "reference must be one of"),
    (["--fix", "weight=3"], "unknown variable"),
])
def test_deviation_bad_requests_exit_2_and_write_nothing(runs, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    assert run(["deviation", "--model", str(runs["clean"]), "--fix", f"image={runs['scan']}", "--out", str(out),
                *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert run(["deviation", "--model", str(runs["clean"]), "--fix", "age=60", "--out", str(out)]) == 2
    assert "add --fix image=SCAN.nii.gz" in capsys.readouterr().err


def test_editing_an_edit_into_its_own_folder_is_refused_before_any_work(runs, tmp_path, capsys):
    out = tmp_path / "older"
    assert edit(runs, out, "--set", "age=+10") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run(["edit", "--model", str(runs["clean"]), "--fix", f"image={out / 'image_edited.nii.gz'}",
                "--fix", "age=70", "--fix", "sex=F", "--set", "age=-10", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds --fix image" in err and len(err.splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
