"""`predict` on a table: where it writes, what it labels, and one answer per subject whatever else is in the table."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sample_runs import save_tiny_run
from tiny_specs import tiny_spec_2d

from metavoxel.diffusion.options import SamplingOptions
from metavoxel.errors import InputError
from metavoxel.workflows.predict import predict_output, predict_run

HEADER = "participant_id\tsession\timage\tgroup\tage\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """An untrained tiny 2D run (image 8×8, age, group): determinism and labels need no training."""
    root = save_tiny_run(tmp_path_factory.mktemp("predict"), tiny_spec_2d(diffusion={"timesteps": 20,
                                                                                       "sampling_steps": 2}))
    rng = np.random.default_rng(0)
    for k in range(4):
        nib.save(nib.Nifti1Image(rng.random((8, 8)).astype(np.float32), np.eye(4)), str(root / f"img{k}.nii.gz"))
    return root


def _table(root: Path, name: str, rows: list[str]) -> Path:
    path = root / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


ROWS = ["sub-01\tn/a\timg0.nii.gz\tA\t50", "sub-02\t\timg1.nii.gz\tB\t60", "sub-03\t2\timg2.nii.gz\tC\t70",
        "sub-04\tn/a\timg3.nii.gz\tA\t80"]


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def _predict(run: Path, table: Path, out, **kw) -> Path:
    return predict_run(run, table, "age", out, SamplingOptions(num_samples=2, seed=3, **kw), given=["image", "group"])


@pytest.fixture(scope="module", autouse=True)
def _session_column():
    """The tiny spec has no data section: read the session column like a spec with data.session_column would."""
    from metavoxel.data import DataSpec
    from metavoxel.workflows import predict

    real = predict.read_cohort
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict, "read_cohort", lambda data, variables, spec, **kw: real(
            data, variables, DataSpec(session_column="session"), **kw))
        yield


@pytest.fixture(scope="module")
def full(run) -> list[dict[str, str]]:
    return _read(_predict(run, _table(run, "all.tsv", ROWS), run / "all_out.tsv"))


def test_the_same_subject_gets_the_same_answer_whatever_else_is_in_the_table(run, full):
    alone = _read(_predict(run, _table(run, "one.tsv", ROWS[2:3]), run / "one_out.tsv"))
    swapped = _read(_predict(run, _table(run, "swapped.tsv", [ROWS[3], ROWS[0]]), run / "swapped_out.tsv",
                             batch_size=2))  # one record per network call, against all four in one
    assert alone == [full[2]]
    assert swapped == [full[3], full[0]]
    assert len({r["age"] for r in full}) > 1  # different subjects do get their own draws


def test_session_na_stays_na_and_source_is_the_image(run, full):
    rows = full
    assert [r["session"] for r in rows] == ["n/a", "n/a", "ses-2", "n/a"]
    assert [Path(r["source"]) for r in rows] == [(run / f"img{k}.nii.gz").resolve() for k in range(4)]


def test_out_names_a_folder_or_a_file(run):
    table = _table(run, "out.tsv", ROWS[:1])
    folder = run / "existing"
    folder.mkdir()
    assert _predict(run, table, folder) == folder / "predictions.tsv"
    assert _predict(run, table, f"{run / 'fresh'}/") == run / "fresh" / "predictions.tsv"
    assert (run / "fresh" / "predictions.tsv").is_file() and len(_read(folder / "predictions.tsv")) == 1


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write into .*not a folder"):
        predict_output(blocker / "preds.tsv")
    (tmp_path / "d" / "predictions.tsv").mkdir(parents=True)
    with pytest.raises(InputError, match="expected a file"):
        predict_output(f"{tmp_path / 'd'}/")
    from metavoxel.workflows import predict

    monkeypatch.setattr(predict, "load_run", lambda *a, **k: pytest.fail("work started before --out was checked"))
    with pytest.raises(InputError, match="not a folder"):
        predict_run(tmp_path / "no-run", tmp_path / "t.tsv", "age", blocker / "x.tsv")


def test_cli_out_with_a_trailing_slash_writes_into_that_folder(run, capsys):
    from metavoxel.cli import run as cli

    table = _table(run, "cli.tsv", ROWS[:1])
    code = cli(["predict", "--model", str(run), "--data", str(table), "--target", "age", "-n", "1", "--out",
                f"{run / 'cli_out'}/"])
    assert code == 0 and (run / "cli_out" / "predictions.tsv").is_file()
    blocker = run / "blocker.txt"
    blocker.write_text("x")
    code = cli(["predict", "--model", str(run), "--data", str(table), "--target", "age", "--out", f"{blocker}/x.tsv"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write into" in err and "Traceback" not in err
