"""Nothing the user brought is overwritten, an output folder is one run's whole, and inputs are checked for what
they mean (issue 28, kinds 1, 4 and 5): exit codes, messages and what is on disk.

A tiny untrained 2D run (image 8×8, age, group) is written once; sampling it takes milliseconds.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_errors import one_line_error
from tiny_runs import write_run
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.cli import run
from metavoxel.io.atomic import write_json
from metavoxel.workflows import sample as sample_workflow
from metavoxel.workflows.sample import sample_run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    write_run(root / "run", tiny_spec_2d())
    rng = np.random.default_rng(0)
    for k in range(3):
        mv.write_nifti(root / f"img{k}.nii.gz", rng.random((8, 8)).astype(np.float32), np.eye(4))
    keep = np.zeros((8, 8), dtype=np.float32)
    keep[:4] = 1
    mv.write_nifti(root / "keep.nii.gz", keep, np.eye(4))
    (root / "t20.tsv").write_text("participant_id\timage\tage\tgroup\n" + "".join(
        f"sub-{k}\timg{k}.nii.gz\t{50 + 10 * k}\tA\n" for k in range(3)))
    return root


def _ok(argv, capsys) -> str:
    code = run([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.err


# -- 1. never overwrite what the user brought ----------------------------------------------------------
def test_predict_never_writes_over_the_table_it_reads(root, capsys, tmp_path, monkeypatch):
    table = root / "t20.tsv"
    before = table.read_bytes()
    predict = ["predict", "--model", root / "run", "--data", table, "--target", "age", "-n", "1", "--steps", "1"]
    err = one_line_error([*predict, "--out", table], capsys)
    assert f"--out '{table}' is the file --data reads ('{table}'); writing there would replace it" in err
    monkeypatch.chdir(root)
    one_line_error([*predict, "--out", "t20.tsv"], capsys)  # the same file, relative
    (tmp_path / "link.tsv").symlink_to(table)
    one_line_error([*predict, "--out", tmp_path / "link.tsv"], capsys)  # through a symlink
    os.link(table, tmp_path / "hard.tsv")
    one_line_error([*predict, "--out", tmp_path / "hard.tsv"], capsys)  # a hard link of it
    err = one_line_error([*predict, "--out", root / "img1.nii.gz"], capsys)  # an image the table names
    assert "is the file --data (image of t20.tsv row 3) reads" in err
    one_line_error([*predict, "--out", root / "run" / "spec.json"], capsys)  # a file of the model
    assert table.read_bytes() == before and (root / "run" / "spec.json").is_file()


def test_inpainting_what_was_generated_into_the_same_default_out_is_refused(root, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ok(["sample", "--model", root / "run", "--fix", "age=70"], capsys)  # --out samples
    scan = tmp_path / "samples" / "image_sample00.nii.gz"
    before = scan.read_bytes()
    err = one_line_error(["sample", "--model", root / "run", "--fix", "image=samples/image_sample00.nii.gz",
                            "--mask", f"image={root / 'keep.nii.gz'}"], capsys)
    assert ("--out 'samples' holds --fix image 'samples/image_sample00.nii.gz', and this command replaces that "
            "folder as a whole: choose another --out") in err
    assert scan.read_bytes() == before
    _ok(["sample", "--model", root / "run", "--fix", "image=samples/image_sample00.nii.gz", "--mask",
         f"image={root / 'keep.nii.gz'}", "--out", "inpainted"], capsys)
    summary = json.loads((tmp_path / "inpainted" / "samples.json").read_text())
    assert summary["masks"] == {"image": str(root / "keep.nii.gz")} and scan.read_bytes() == before
    err = one_line_error(["sample", "--model", root / "run", "--fix", "age=70", "--out", root], capsys)
    assert "holds --model (spec.json)" in err or "did not write" in err  # the folder of the model: never replaced


# -- 4. an output folder holds one run's files or the previous run's --------------------------------------
def test_a_new_sample_replaces_the_earlier_output_whole(root, tmp_path):
    out = tmp_path / "o"
    sample_run(root / "run", {"age": "70"}, {}, out, SamplingOptions(num_samples=3, steps=1))
    assert sorted(p.name for p in out.glob("image_sample*")) == [f"image_sample0{k}.{e}" for k in range(3)
                                                                  for e in ("json", "nii.gz")]
    _result, files = sample_run(root / "run", {"age": "90"}, {}, out, SamplingOptions(num_samples=1, steps=1))
    assert sorted(p.name for p in out.iterdir()) == ["image_sample00.json", "image_sample00.nii.gz", "preview.pdf",
                                                     "preview.png", "samples.json"]  # samples 01, 02 went with 70
    assert json.loads((out / "samples.json").read_text())["fixed"] == {"age": "90"}
    assert all(f.parent == out and f.is_file() for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left


@pytest.mark.parametrize("when", ["sampling", "writing"])
def test_an_interrupted_sample_leaves_the_earlier_output_as_it_was(root, tmp_path, monkeypatch, when):
    out = tmp_path / "o"
    sample_run(root / "run", {"age": "70"}, {}, out, SamplingOptions(num_samples=2, steps=1))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (SIGINT) at this point

    if when == "writing":  # after the images, at samples.json
        monkeypatch.setattr(sample_workflow, "write_json", lambda path, data: (
            interrupt() if path.name == "samples.json" else write_json(path, data)))
    with pytest.raises(KeyboardInterrupt):
        sample_run(root / "run", {"age": "90"}, {}, out, SamplingOptions(num_samples=1, steps=2),
                   progress=interrupt if when == "sampling" else None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_sample_refuses_an_out_that_is_a_file_or_a_users_folder_before_sampling(root, capsys, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setattr(sample_workflow, "load_run", lambda *a, **k: pytest.fail("checked before the model loads"))
    err = one_line_error(["sample", "--model", root / "run", "--fix", "age=70", "--out", tmp_path / "notes.txt"],
                           capsys)
    assert f"--out '{tmp_path / 'notes.txt'}' is a file; metavoxel sample writes a folder of files there" in err
    err = one_line_error(["sample", "--model", root / "run", "--out", tmp_path], capsys)
    assert "is a folder that metavoxel sample did not write (it has no samples.json" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_evaluate_never_replaces_a_folder_holding_its_inputs(root, capsys):
    err = one_line_error(["evaluate", "--model", root / "run", "--data", root / "t20.tsv", "--out", root / "run",
                            "--split", "all"], capsys)
    assert "did not write" in err or "holds --model" in err
    assert (root / "run" / "model.safetensors").is_file()


# -- 5. one line, exit 2, never a traceback; inputs checked for what they mean ----------------------------
@pytest.mark.parametrize("command", [
    ["sample", "--fix", "age=70"],
    ["predict", "--data", "DATA", "--target", "age"],
    ["evaluate", "--data", "DATA"],
    ["train", "--spec", "SPEC", "--data", "DATA"],
])
def test_a_seed_out_of_range_is_one_line(root, capsys, tmp_path, command):
    argv = [a.replace("DATA", str(root / "t20.tsv")).replace("SPEC", str(root / "run" / "spec.json"))
            for a in command]
    argv[1:1] = [] if command[0] == "train" else ["--model", str(root / "run")]
    err = one_line_error([*argv, "--seed", "99999999999999999999", "--out", tmp_path / "o"], capsys)
    assert "--seed 99999999999999999999 is outside [0, 9223372036854775807]" in err
    assert not (tmp_path / "o").exists()


def test_a_folder_given_as_an_image_says_it_is_a_folder(root, capsys, tmp_path):
    dicom = tmp_path / "dicom_series"
    dicom.mkdir()
    err = one_line_error(["sample", "--model", root / "run", "--fix", f"image={dicom}", "--out", tmp_path / "s"],
                           capsys)
    assert f"'{dicom}' is a folder, not an image file" in err and "dcm2niix" in err
    (tmp_path / "t.tsv").write_text(f"participant_id\timage\tage\tgroup\nsub-1\t{dicom}\t60\tA\n")
    code = run(["predict", "--model", str(root / "run"), "--data", str(tmp_path / "t.tsv"), "--target", "age",
                "--out", str(tmp_path / "p.tsv")])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder, not an image file" in err and "does not exist" not in err


def test_a_table_reusing_one_scan_for_several_rows_warns_once_naming_them(root, capsys, tmp_path):
    (tmp_path / "t.tsv").write_text("participant_id\timage\tage\tgroup\n" + "".join(
        f"sub-{k}\t{root / ('img0.nii.gz' if k != 1 else 'img1.nii.gz')}\t{50 + k}\tA\n" for k in range(3)))
    err = _ok(["predict", "--model", root / "run", "--data", tmp_path / "t.tsv", "--target", "age", "-n", "1",
               "--steps", "1", "--out", tmp_path / "p.tsv"], capsys)
    lines = [line for line in err.splitlines() if "one image file serves" in line]
    assert len(lines) == 1 and "2 records (t.tsv row 2, t.tsv row 4: " in lines[0] and lines[0].startswith("warning:")
