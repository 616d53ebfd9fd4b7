"""`evaluate` and `predict` on a tiny untrained 2D run: what they print, refuse and report at the edges."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sample_runs import save_tiny_run
from tiny_specs import tiny_spec_2d

from metavoxel.cli import run
from metavoxel.data.splits import SPLITS_FORMAT

MIXTURE = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.25}
HEADER = "participant_id\timage\tage\tsex\n"
ROWS = [f"sub-{k:02d}\timg{k}.nii.gz\t{50 + 5 * k}\t{'FM'[k % 2]}" for k in range(6)]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A run (image 8×8, age, sex; trained with clean subsets, so point prediction is allowed), its cohort of six
    records with a splits.json (train sub-00..03, val sub-04, test sub-05), and one-record tables."""
    spec = tiny_spec_2d(diffusion={"timesteps": 20, "sampling_steps": 2, "training": dict(MIXTURE)})
    spec["variables"][2] = {"name": "sex", "kind": "categorical", "categories": ["F", "M"]}
    root = tmp_path_factory.mktemp("evaluate")
    save_tiny_run(root / "run", spec)
    rng = np.random.default_rng(0)
    for k in range(6):
        nib.save(nib.Nifti1Image(rng.random((8, 8)).astype(np.float32), np.eye(4)), str(root / f"img{k}.nii.gz"))
    (root / "all.tsv").write_text(HEADER + "".join(r + "\n" for r in ROWS))
    (root / "one.tsv").write_text(HEADER + ROWS[0] + "\n")
    (root / "other.tsv").write_text(HEADER + "sub-77\timg0.nii.gz\t90\tF\nsub-78\timg1.nii.gz\t80\tM\n")
    (root / "run" / "splits.json").write_text(json.dumps({
        "format": SPLITS_FORMAT, "train": [f"sub-{k:02d}" for k in range(4)], "val": ["sub-04"],
        "test": ["sub-05"]}))
    return root


def _evaluate(root: Path, data: str, out: str, *extra: str) -> int:
    return run(["evaluate", "--model", str(root / "run"), "--data", str(root / data), "--out", str(root / out),
                "-n", "2", "--steps", "1", "--features", "none", *extra])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "", "nothing on stdout before an error (no empty line, no progress bar)"
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


def test_a_single_record_is_evaluated_and_its_missing_spread_prints_as_n_a(root, capsys):
    assert _evaluate(root, "one.tsv", "one", "--split", "all", "--likelihood-timesteps", "0", "--grid", "uniform") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "age MAE " in out and "± n/a" in out and "wrote" in out
    metrics = json.loads((root / "one" / "metrics.json").read_text())
    assert metrics["regression"]["mae_sd"] is None and metrics["grid"] == "uniform"
    report = (root / "one" / "report.md").read_text()
    assert "1 evaluated (--split all) record," in report and "reverse steps on the uniform grid." in report


def test_an_evaluate_error_is_one_line_with_nothing_before_it(root, capsys):
    assert _evaluate(root, "all.tsv", "bad", "--categorical", "age") == 2
    assert "--categorical" in _one_error_line(capsys)
    assert not (root / "bad").exists()


@pytest.mark.parametrize("dropped", ["age", "image"])
def test_a_table_without_a_column_the_evaluation_reads_is_one_line_naming_it(root, capsys, dropped):
    keep = [k for k, c in enumerate(HEADER.split()) if c != dropped]
    pick = lambda line: "\t".join(line.split("\t")[k] for k in keep)  # noqa: E731
    (root / f"no-{dropped}.tsv").write_text("\n".join(pick(r) for r in [HEADER.strip(), *ROWS]) + "\n")
    assert _evaluate(root, f"no-{dropped}.tsv", f"no-{dropped}", "--split", "all", "--likelihood-timesteps", "0") == 2
    err = _one_error_line(capsys)
    flag = "--image" if dropped == "image" else "--continuous"
    assert f"no column for {dropped!r} ({flag})" in err and "data.columns" in err
    assert not (root / f"no-{dropped}").exists()


def test_a_split_of_a_run_without_splits_json_points_to_split_all(root, tmp_path, capsys):
    shutil.copytree(root / "run", tmp_path / "run", ignore=shutil.ignore_patterns("splits.json"))
    assert run(["evaluate", "--model", str(tmp_path / "run"), "--data", str(root / "all.tsv"), "--out",
                str(tmp_path / "e"), "-n", "2", "--steps", "1", "--features", "none"]) == 2
    assert "has no splits.json, so its test split is not known; evaluate every record of --data with --split all" \
        in _one_error_line(capsys)


def test_split_all_uses_the_training_mean_when_the_splits_cover_the_data_and_warns_likelihood_is_skipped(root,
                                                                                                         capsys):
    assert _evaluate(root, "all.tsv", "everyone", "--split", "all", "--likelihood-timesteps", "2") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "likelihood classification of sex is skipped" in err and "--split all" in err
    metrics = json.loads((root / "everyone" / "metrics.json").read_text())
    assert metrics["population_mean"] == pytest.approx(np.mean([50, 55, 60, 65]))  # train sub-00..03, not all six
    assert metrics["population_mean_from"] == "the run's training split" and "likelihood" not in metrics
    assert "is the mean age of the run's training split" in (root / "everyone" / "report.md").read_text()


def test_split_all_on_another_cohort_says_whose_mean_it_uses(root, capsys):
    assert _evaluate(root, "other.tsv", "other", "--split", "all", "--likelihood-timesteps", "0") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "population mean of age" in err and "the evaluated records" in err and "likelihood" not in err
    metrics = json.loads((root / "other" / "metrics.json").read_text())
    assert metrics["population_mean"] == pytest.approx(85.0)
    assert metrics["population_mean_from"].startswith("the evaluated records")


@pytest.fixture(scope="module")
def own(root) -> Path:
    """A run trained on all.tsv as `metavoxel train` records it: splits.json with the subjects' fingerprints (train
    sub-00..03, val sub-04, test sub-05), train.json with the training split's mean age."""
    from metavoxel.data import DataSpec, read_cohort, save_splits
    from metavoxel.runs import load_run

    run_dir = root / "own"
    shutil.copytree(root / "run", run_dir)
    model = load_run(run_dir)
    cohort = read_cohort(root / "all.tsv", model.variables, DataSpec())
    save_splits(run_dir / "splits.json", {"train": [0, 1, 2, 3], "val": [4], "test": [5]}, cohort)
    (run_dir / "train.json").write_text(json.dumps({"train_means": {"age": 57.5}}))
    rows = [f"sub-{k:02d}\timg{5 - k}.nii.gz\t{90 - 3 * k}\t{'MF'[k % 2]}" for k in range(6)]  # the same ids
    (root / "same_ids.tsv").write_text(HEADER + "".join(r + "\n" for r in rows))
    return run_dir


def test_another_cohort_with_the_runs_subject_ids_is_evaluated_as_all_against_the_runs_mean(root, own, capsys):
    argv = ["evaluate", "--model", str(own), "--data", str(root / "same_ids.tsv"), "--out", str(root / "same"),
            "-n", "2", "--steps", "1", "--features", "none", "--likelihood-timesteps", "0"]
    assert run(argv) == 0  # --split test, the default
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("warning:") == 1, err  # said once
    assert (f"--data {root / 'same_ids.tsv'} is not the cohort this run was trained on (the data of 6 of its 6 "
            "subjects differ from those the run was trained on (e.g. sub-00)); --split test is evaluated as --split "
            "all (every record), and Table 2's population mean of age is the run's training split (its mean, "
            "recorded in train.json)") in err
    metrics = json.loads((root / "same" / "metrics.json").read_text())
    assert metrics["split"] == "all" and metrics["regression"]["n"] == 6 and metrics["population_mean"] == 57.5
    assert metrics["foreign_cohort"].startswith("the data of 6 of its 6 subjects differ")
    assert run([*argv[:4], str(root / "all.tsv"), "--out", str(root / "own-test"), *argv[7:]]) == 0  # its own cohort
    assert json.loads((root / "own-test" / "metrics.json").read_text())["regression"]["n"] == 1  # test: sub-05
    assert "not the cohort" not in capsys.readouterr().err


def test_evaluate_help_says_which_half_of_point_evaluation_each_option_shapes(capsys):
    assert run(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "-n, --steps and --grid shape the sampled answers only" in text and "apply to both" in text


# -- predict ----------------------------------------------------------------------------------------
def _predict(root: Path, out: str, *extra: str, data: str = "all.tsv") -> int:
    return run(["predict", "--model", str(root / "run"), "--data", str(root / data), "--target", "age",
                "--out", str(root / out), *extra])


@pytest.mark.parametrize("extra, named", [
    (["-n", "5"], "--num-samples does not apply to --method point"),
    (["--steps", "2", "--guidance", "0"], "--steps, --guidance do not apply to --method point"),
    (["--conditioning", "repaint"], "--conditioning does not apply"),
    (["--grid", "uniform"], "--grid does not apply"),
])
def test_point_prediction_refuses_sampling_options_given_to_it(root, capsys, extra, named):
    assert _predict(root, "refused.tsv", "--method", "point", *extra) == 2
    err = _one_error_line(capsys)
    assert named in err and "use --method sample" in err and not (root / "refused.tsv").exists()


def test_point_prediction_honours_precision_and_the_default_options(root):
    assert _predict(root, "bf16.tsv", "--method", "point", "--precision", "bf16") == 0
    assert _predict(root, "fp32.tsv", "--method", "point") == 0
    rows = [list(csv.DictReader((root / f).open(), delimiter="\t")) for f in ("bf16.tsv", "fp32.tsv")]
    assert len(rows[0]) == len(rows[1]) == 6 and all(r["age"] for r in rows[0])
    assert _predict(root, "sampled.tsv", "-n", "2", "--steps", "1") == 0  # sampling still takes its options


def test_an_unknown_grid_is_refused_in_one_line_before_any_work(root, capsys):
    assert _predict(root, "grid.tsv", "--grid", "cosine") == 2
    assert "grid (the sampling grid's spacing) must be one of uniform, quadratic" in _one_error_line(capsys)
    assert _evaluate(root, "all.tsv", "grid-eval", "--split", "all", "--grid", "linear") == 2
    assert "got 'linear'" in _one_error_line(capsys)
    assert not (root / "grid.tsv").exists() and not (root / "grid-eval").exists()


def test_an_empty_given_is_refused_in_one_line(root, capsys):
    assert _predict(root, "empty.tsv", "--given", "") == 2
    assert "--given names no variable" in _one_error_line(capsys) and not (root / "empty.tsv").exists()


def test_a_row_without_an_image_is_announced_in_prediction_terms(root, capsys):
    (root / "no_image.tsv").write_text(HEADER + "sub-00\t\t50\tF\n" + ROWS[1] + "\n")
    assert _predict(root, "no_image_out.tsv", "-n", "1", "--steps", "1", data="no_image.tsv") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "1 record has no image; it is predicted from its other given variables only" in err
    assert "train" not in err


def test_a_table_error_names_rows_without_an_image_in_prediction_terms(root, capsys):
    """The refused table's `also:` line about a row without an image says how predict uses it, not training."""
    (root / "bad_no_image.tsv").write_text(HEADER + "sub-00\t\t50\tF\n" + ROWS[1] + "\nsub-09\timg0.nii.gz\told\tF\n")
    assert _predict(root, "bad_out.tsv", "-n", "1", "--steps", "1", data="bad_no_image.tsv") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "also: 1 record has no image; it is predicted from its other given variables only" in err
    assert "kept to train" not in err and not (root / "bad_out.tsv").exists()


def test_two_runs_of_one_session_are_not_sampled_with_the_same_noise(root):
    bids = root / "bids"
    (bids / "sub-01" / "ses-1" / "anat").mkdir(parents=True)
    (bids / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t60\tF\n")
    image = nib.load(str(root / "img0.nii.gz"))
    for run_label in ("run-1", "run-2"):  # the same scan twice: only the seed can make their samples differ
        nib.save(image, str(bids / "sub-01" / "ses-1" / "anat" / f"sub-01_ses-1_{run_label}_T1w.nii.gz"))
    assert run(["predict", "--model", str(root / "run"), "--data", str(bids), "--target", "age", "-n", "2",
                "--steps", "2", "--out", str(root / "runs.tsv")]) == 0
    rows = list(csv.DictReader((root / "runs.tsv").open(), delimiter="\t"))
    assert [r["source"].split("_")[-2] for r in rows] == ["run-1", "run-2"]
    assert rows[0]["age"] != rows[1]["age"]
