"""Trust on the user's own scans, end to end on a tiny trained run: `train` writes calibration.json, `predict` adds
brain-PAD, its correction, the centile of the truth and a typicality percentile per record (warning for atypical
ones) without changing the answer, `calibrate` rewrites it for an older run, stale calibrations are refused."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors.numpy import load_file
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.typicality import typicality_terms
from metavoxel.evaluation.typicality import TypicalityWarning
from metavoxel.runs import RunWarning
from metavoxel.training import TrainConfig
from metavoxel.workflows.calibrate import CALIBRATION_FILE, MAPS_FILE, load_calibration
from metavoxel.workflows.predict import predict_run
from metavoxel.workflows.train import train_run

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")

CLEAN = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.0}


def _brain(rng, age: float) -> np.ndarray:
    """An 8×8 'brain' whose bright disc shrinks with age: something the model can read."""
    yy, xx = np.mgrid[:8, :8]
    radius = 3.5 - (age - 40) / 30
    return ((((yy - 3.5) ** 2 + (xx - 3.5) ** 2) < radius ** 2) * 0.8 + rng.normal(0, 0.03, (8, 8))).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    rng = np.random.default_rng(0)
    rows = ["participant_id\timage\tage\tgroup"]
    for i in range(24):
        age = float(rng.uniform(45, 90))
        nib.save(nib.Nifti1Image(_brain(rng, age), np.eye(4)), root / f"s{i}.nii.gz")
        rows.append(f"sub-{i:02d}\ts{i}.nii.gz\t{age:.1f}\t{'ABC'[i % 3]}")
    (root / "cohort.tsv").write_text("\n".join(rows) + "\n")
    spec = tiny_spec_2d(diffusion={"timesteps": 20, "sampling_steps": 3, "training": CLEAN, "conditioning": "clean"},
                        data={"split": {"val": 0.35, "test": 0.0}})
    config = TrainConfig(steps=30, batch_size=8, val_every=100, checkpoint_every=100, warmup_steps=0, lr=3e-3)
    train_run(mv.ModelSpec.from_dict(spec), root / "cohort.tsv", root / "run", config)
    return root


def _noise(root: Path) -> Path:
    """A scan of pure noise at ten times a brain's intensity."""
    rng = np.random.default_rng(5)
    nib.save(nib.Nifti1Image(rng.normal(0, 8, (8, 8)).astype(np.float32), np.eye(4)), root / "noise.nii.gz")
    return root / "noise.nii.gz"


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def test_train_writes_a_calibration_sealed_to_its_weights(run):
    data = json.loads((run / "run" / CALIBRATION_FILE).read_text())
    val = json.loads((run / "run" / "splits.json").read_text())
    assert data["n"] == len([s for s in val["val"]]) or data["n"] > 0
    scores = data["typicality"]["losses"]
    assert {"age,group,image", "group,image", "image"} <= set(scores)  # every set of given variables a request has
    assert set(scores["age,group,image"]) == {"image", "metadata"} and set(scores["image"]) == {"image"}
    classes = data["typicality"]["classes"]  # the categorical group: its validation records' mid-p values
    assert set(classes["age,group,image"]) == {"group"} and "image" not in classes and "group,image" in classes
    assert set(scores["group,image"]) == {"image"}  # no continuous metadata given: no level-standardised metadata
    assert len(scores["image"]["image"][0]) == data["typicality"]["levels"] == 5  # per-level losses
    maps = load_file(str(run / "run" / data["typicality"]["maps"]["file"]))  # the image's loss maps, sealed
    assert data["typicality"]["maps"]["sha256"] == hashlib.sha256((run / "run" / MAPS_FILE).read_bytes()).hexdigest()
    assert maps["image"].shape == (len(scores["image"]["image"]), 5, 8, 8) and "age" not in maps
    np.testing.assert_allclose(maps["age,group,image"].mean(axis=(2, 3)), scores["age,group,image"]["image"], rtol=1e-4)
    assert set(data["bias_correction"]["age"]) == {"sample", "point"}  # clean-trained: point prediction too
    assert load_calibration(run / "run") is not None


def test_predict_adds_brain_age_and_typicality_columns_without_changing_the_answer(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TypicalityWarning)
        on = _read(predict_run(run / "run", run / "cohort.tsv", "age", run / "on.tsv",
                               SamplingOptions(num_samples=4, seed=1), given=["image", "group"]))
    off = _read(predict_run(run / "run", run / "cohort.tsv", "age", run / "off.tsv",
                            SamplingOptions(num_samples=4, seed=1), given=["image", "group"], typicality=None))
    answer = ["age", "age_sd", "age_lower", "age_upper"]
    assert [[r[c] for c in answer] for r in on] == [[r[c] for c in answer] for r in off]
    assert "typicality_percentile" not in off[0] and "brain_pad" in off[0]
    calibration = load_calibration(run / "run")
    fit = calibration.correction("age", "sample")
    for r in on:
        pred, true = float(r["age"]), float(r["age_true"])
        assert float(r["brain_pad"]) == pytest.approx(pred - true, abs=1e-3)
        assert float(r["brain_pad_corrected"]) == pytest.approx(pred - (fit.intercept + fit.slope * true), abs=1e-3)
        assert float(r["brain_age_corrected"]) == pytest.approx(float(r["brain_pad_corrected"]) + true, abs=1e-3)
        assert float(r["age_centile"]) in {10.0, 30.0, 50.0, 70.0, 90.0}  # (rank + ½)/(S + 1), S = 4
        assert 0 <= float(r["typicality_percentile"]) <= 100 and r["metadata_percentile"] != "n/a"
        assert r["atypical"] in {"none", "image", "metadata", "image,metadata"}


def test_an_atypical_scan_is_flagged_by_name_and_part(run):
    """A scan of pure noise at ten times the intensity, beside a typical one: one warning, for the noise."""
    _noise(run)
    (run / "odd.tsv").write_text("participant_id\timage\tgroup\nsub-noise\tnoise.nii.gz\tA\nsub-00\ts0.nii.gz\tA\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = _read(predict_run(run / "run", run / "odd.tsv", "age", run / "odd_out.tsv",
                                 SamplingOptions(num_samples=2), given=["image", "group"]))
    flagged = [str(w.message) for w in caught if issubclass(w.category, TypicalityWarning)]
    assert len(flagged) == 1 and flagged[0].startswith("sub-noise (") and "the image" in flagged[0]
    assert rows[0]["atypical"] == "image" and float(rows[0]["typicality_percentile"]) > 99
    assert rows[1]["atypical"] == "none"


def test_the_score_of_a_record_does_not_depend_on_the_others(run):
    model = mv.runs.load_run(run / "run")
    images = [str(run / f"s{i}.nii.gz") for i in range(3)]
    together = typicality_terms(model, {"image": images, "group": ["A", "B", "C"]})
    alone = typicality_terms(model, {"image": images[1:2], "group": ["B"]})
    assert together.image[1] == pytest.approx(float(alone.image[0]))
    assert together.category_midp["group"][1] == pytest.approx(float(alone.category_midp["group"][0]))
    assert together.calls_per_record == 10 and len(set(together.image.tolist())) == 3


def test_calibrate_rewrites_it_and_stale_weights_switch_it_off(run, tmp_path, capsys):
    from metavoxel.cli import run as cli

    copy = tmp_path / "old"
    shutil.copytree(run / "run", copy)
    (copy / CALIBRATION_FILE).unlink()
    notes = []
    rows = _read(predict_run(copy, run / "cohort.tsv", "age", tmp_path / "p.tsv", SamplingOptions(num_samples=1),
                             report=notes.append))
    assert len(notes) == 1 and "has no calibration.json" in notes[0] and "metavoxel calibrate --model" in notes[0]
    assert rows[0]["typicality_percentile"] == "n/a" and rows[0]["brain_pad_corrected"] == "n/a"
    assert rows[0]["brain_pad"] != "n/a"
    assert cli(["calibrate", "--model", str(copy), "--data", str(run / "cohort.tsv")]) == 0
    assert (copy / CALIBRATION_FILE).read_text() == (run / "run" / CALIBRATION_FILE).read_text()
    assert (copy / MAPS_FILE).read_bytes() == (run / "run" / MAPS_FILE).read_bytes()
    model = mv.runs.load_run(copy)  # trained further: other weights under the same spec
    state = {k: v + 1e-3 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    mv.runs.save_weights(copy / "model.safetensors", state, spec=model.spec)
    with pytest.warns(RunWarning, match="other weights"):
        assert load_calibration(copy) is None
    assert cli(["calibrate", "--model", str(tmp_path / "nowhere")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    (copy / "splits.json").unlink()
    assert cli(["calibrate", "--model", str(copy), "--data", str(run / "cohort.tsv")]) == 2
    assert "has no splits.json, so its validation split is not known" in capsys.readouterr().err


def test_calibrate_seals_with_the_weights_it_read_and_waits_for_no_writer(run, tmp_path, capsys, monkeypatch):
    """Weights replaced while calibrate computes (a copy, a `train --resume`): the calibration is of the weights it
    read, so it is sealed with their digest and the new ones switch it off; a run another process writes (its
    writer lock held, as `train` holds it) is refused in one line."""
    from cli_errors import one_line_error

    from metavoxel.io.lock import writer_lock
    from metavoxel.workflows import calibrate as calibrate_module

    copy = tmp_path / "run"
    shutil.copytree(run / "run", copy)
    with writer_lock(copy, what=f"the run directory {str(copy)!r}"):
        err = one_line_error(["calibrate", "--model", copy, "--data", run / "cohort.tsv"], capsys)
    assert "is being written by another metavoxel process" in err
    (copy / MAPS_FILE).rename(tmp_path / "maps")
    (copy / MAPS_FILE).mkdir()  # refused before any work, not a traceback after all of it
    err = one_line_error(["calibrate", "--model", copy, "--data", run / "cohort.tsv"], capsys)
    assert "calibration.safetensors is a folder, where calibrate writes a file" in err
    (copy / MAPS_FILE).rmdir()
    (tmp_path / "maps").rename(copy / MAPS_FILE)
    computed = calibrate_module.calibrate_cohort

    def then_replaced(model, *args, **kwargs):
        out = computed(model, *args, **kwargs)
        state = {k: v + 1e-3 if v.is_floating_point() else v for k, v in model.state_dict().items()}
        mv.runs.save_weights(copy / "model.safetensors", state, spec=model.spec)
        return out

    monkeypatch.setattr(calibrate_module, "calibrate_cohort", then_replaced)
    calibrate_module.calibrate_run(copy, run / "cohort.tsv")
    sealed = json.loads((copy / CALIBRATION_FILE).read_text())["weights_sha256"]
    assert sealed == json.loads((run / "run" / CALIBRATION_FILE).read_text())["weights_sha256"]
    with pytest.warns(RunWarning, match="other weights"):
        assert load_calibration(copy) is None


def test_sample_reports_the_typicality_of_its_fixed_values_in_samples_json(run, capsys):
    from metavoxel.cli import run as cli

    code = cli(["sample", "--model", str(run / "run"), "--fix", f"image={_noise(run)}", "--fix", "group=A",
                "--out", str(run / "sampled")])
    captured = capsys.readouterr()
    scored = json.loads((run / "sampled" / "samples.json").read_text())["typicality"]
    assert code == 0 and scored["flagged"] and scored["atypical"] == ["image"] and scored["percentile"] > 99
    assert "warning: " in captured.err and "noise.nii.gz (given with group=A): typicality percentile" in captured.err
    code = cli(["sample", "--model", str(run / "run"), "--fix", "age=60", "--no-typicality", "--out",
                str(run / "plain")])
    assert code == 0 and "typicality" not in json.loads((run / "plain" / "samples.json").read_text())
    keep = np.zeros((8, 8), dtype=np.float32)
    keep[:, :4] = 1  # half the image: the noise there is scored, the rest generated
    nib.save(nib.Nifti1Image(keep, np.eye(4)), run / "half.nii.gz")
    scored = {}
    for scan in (_noise(run), run / "s0.nii.gz"):
        code = cli(["sample", "--model", str(run / "run"), "--fix", f"image={scan}", "--mask",
                    f"image={run / 'half.nii.gz'}", "--fix", "group=A", "--out", str(run / "masked")])
        assert code == 0
        scored[scan.name] = json.loads((run / "masked" / "samples.json").read_text())["typicality"]
    noise, brain = scored["noise.nii.gz"], scored["s0.nii.gz"]
    assert noise["masked"] and brain["masked"] and noise["percentile"] > 95 > brain["percentile"]  # 8 validation records
    assert noise["image_percentile"] > brain["image_percentile"] and noise["given"] == "group,image"
    # the value given with a masked image is not scored, and samples.json and the command's output say so
    assert "metadata_percentile" not in brain and "(group=A)" in brain["note"]
    assert "values given with it (group=A)" in " ".join(capsys.readouterr().out.split())


def test_an_older_or_damaged_calibration_is_noted_or_refused_never_a_crash(run, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(run / "run", copy)
    data = json.loads((copy / CALIBRATION_FILE).read_text())
    (copy / MAPS_FILE).write_bytes((copy / MAPS_FILE).read_bytes()[:-8] + b"\0" * 8)  # not the sealed sidecar
    with pytest.warns(RunWarning, match="is damaged"):
        assert load_calibration(copy) is None
    (copy / CALIBRATION_FILE).write_text(json.dumps({**data, "format": 99}))
    with pytest.warns(RunWarning, match=r"written by a newer metavoxel \(format 99; this one reads up to \d+\)"):
        assert load_calibration(copy) is None
    (copy / CALIBRATION_FILE).write_text(json.dumps({**data, "format": 2, "typicality": {"levels": 5, "seed": 0,
                                                                                          "losses": {}}}))
    notes = []
    rows = _read(predict_run(copy, run / "cohort.tsv", "age", tmp_path / "p.tsv", SamplingOptions(num_samples=1),
                             given=["image", "group"], report=notes.append))
    assert notes == [f"note: {copy / CALIBRATION_FILE} is from an earlier metavoxel (format 2), so typicality is "
                     f"n/a; run `metavoxel calibrate --model {copy}` to compute it again"]
    assert rows[0]["typicality_percentile"] == "n/a" and rows[0]["brain_pad_corrected"] != "n/a"  # its fit is kept


def test_a_given_set_the_calibration_has_no_reference_for_is_noted_by_sample_and_predict(run, tmp_path):
    """A model of more than 4 variables is calibrated for all of them and all but one; a request giving fewer gets
    n/a, said in a note (here the reference for the image alone is taken out of a copy)."""
    from metavoxel.workflows.sample import sample_run

    copy = tmp_path / "run"
    shutil.copytree(run / "run", copy)
    data = json.loads((copy / CALIBRATION_FILE).read_text())
    del data["typicality"]["losses"]["image"]
    data["typicality"]["classes"].pop("image", None)
    (copy / CALIBRATION_FILE).write_text(json.dumps(data))
    sample_run(copy, {"image": str(run / "s0.nii.gz")}, {}, tmp_path / "out", SamplingOptions(num_samples=1))
    scored = json.loads((tmp_path / "out" / "samples.json").read_text())["typicality"]
    assert scored["percentile"] is None
    assert scored["note"].startswith("note: typicality is n/a: the run's calibration has no reference for the given "
                                     "variables image")
    notes = []
    rows = _read(predict_run(copy, run / "cohort.tsv", "age", tmp_path / "p.tsv", SamplingOptions(num_samples=1),
                             given=["image"], report=notes.append))
    assert {r["typicality_percentile"] for r in rows} == {"n/a"}
    assert notes[-1:] == ["note: typicality is n/a for 24 record(s): the run's calibration has no reference for the "
                          "given variables image (it covers every set of at most 4 variables, else all of them and "
                          "all but one)"]


def test_evaluate_reports_brain_age_metrics_and_each_records_typicality(run, capsys):
    from metavoxel.cli import run as cli

    code = cli(["evaluate", "--model", str(run / "run"), "--data", str(run / "cohort.tsv"), "--split", "val",
                "--continuous", "age", "--categorical", "group", "--features", "none", "--likelihood-timesteps", "0",
                "-n", "2", "--out", str(run / "eval")])
    out = capsys.readouterr().out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    ages, typ = metrics["brain_age"], metrics["typicality"]
    assert code == 0 and set(ages["before"]) == {"mae", "r", "r2", "pad_mean", "pad_age_r"}
    assert ages["after"] is not None and ages["correction"]["slope"] == pytest.approx(
        load_calibration(run / "run").correction("age", "sample").slope)
    assert ages["before"]["mae"] == pytest.approx(metrics["regression"]["mae"])
    assert typ["n"] == metrics["n_test"] == len(typ["records"]) and typ["given"] == "image,age,group"
    report = (run / "eval" / "report.md").read_text()
    assert "brain-PAD" in report and "Typicality of the evaluated records" in report
    assert "brain age: r " in out and "typicality: " in out


def test_check_flags_a_swapped_label_and_an_implausible_age_against_the_image(run, capsys):
    """Calibration stubbed to a known fit (ŷ ≈ y, σ = 1): each flag is the documented rule applied to the record's
    own point prediction (seeded by its subject, as `predict` seeds it)."""
    from metavoxel.cli import run as cli
    from metavoxel.data.records import subject_seed
    from metavoxel.evaluation.brain_age import BiasCorrection
    from metavoxel.workflows import check as check_module

    calibration = load_calibration(run / "run")
    calibration.bias["age"]["point"] = BiasCorrection(0.0, 1.0, 10, "test", residual_sd=1.0)
    model = mv.runs.load_run(run / "run")
    image = str(run / "s0.nii.gz")

    def point(subject, fix, target):
        return model.point_predict(fix, target, seeds=[subject_seed(model.spec.seed, subject, None)])

    probs = point("sub-00", {"image": [image]}, "group").probs["group"][0]  # the row gives no age
    worst = "ABC"[int(probs.argmin())]
    near = float(point("sub-01", {"image": [image], "group": ["A"]}, "age").mean["age"][0])
    far = float(point("sub-02", {"image": [image], "group": ["A"]}, "age").mean["age"][0])
    far_age = 40.0 if far > 70 else 95.0
    rows = [f"sub-00\ts0.nii.gz\t\t{worst}", f"sub-01\ts0.nii.gz\t{near:.3f}\tA",
            f"sub-02\ts0.nii.gz\t{far_age}\tA", "sub-03\t\t60\tA"]
    (run / "check.tsv").write_text("participant_id\timage\tage\tgroup\n" + "".join(r + "\n" for r in rows))
    threshold = (float(probs.min()) + float(probs.max())) / 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(check_module, "load_calibration", lambda run_dir: calibration)
        code = cli(["check", "--model", str(run / "run"), "--data", str(run / "check.tsv"), "--out",
                    str(run / "checks.tsv"), "--min-probability", f"{threshold:.6f}", "--variables", "group,age"])
    assert code == 0, capsys.readouterr().err
    table = _read(run / "checks.tsv")
    assert float(table[0]["group_p"]) == pytest.approx(float(probs.min()), abs=1e-3)
    assert table[0]["group_flag"] == "yes" and table[0]["flags"] == "group" and table[0]["age_flag"] == "n/a"
    assert table[1]["age_flag"] == "no" and abs(float(table[1]["age_z"])) < 1e-2
    assert float(table[2]["age_z"]) == pytest.approx(far - far_age, abs=1e-2) and table[2]["age_flag"] == "yes"
    assert table[3]["flags"] == "none" and table[3]["age_flag"] == "n/a"  # no image: nothing to check against
    assert "record(s) flagged" in capsys.readouterr().out
    assert cli(["check", "--model", str(run / "run"), "--data", str(run / "check.tsv"), "--out",
                str(run / "c2.tsv"), "--variables", "image"]) == 2


def test_check_writes_checks_tsv_in_a_folder_and_refuses_a_table_it_cannot_check(run, tmp_path, capsys):
    """--out FOLDER gets checks.tsv, never over a predictions.tsv there; a table without images (a misnamed image
    column) is refused in one line instead of a table of n/a saying 0 records flagged."""
    from cli_errors import one_line_error

    from metavoxel.cli import run as cli

    (tmp_path / "predictions.tsv").write_text("mine\n")
    assert cli(["check", "--model", str(run / "run"), "--data", str(run / "cohort.tsv"), "--out", str(tmp_path),
                "--variables", "group"]) == 0
    assert (tmp_path / "predictions.tsv").read_text() == "mine\n"
    assert len(_read(tmp_path / "checks.tsv")) == 24 and "checks.tsv" in capsys.readouterr().out
    rows = [line.split("\t") for line in (run / "cohort.tsv").read_text().splitlines()]
    (tmp_path / "t1.tsv").write_text("".join("\t".join([r[0], r[2], r[3]]) + "\n" for r in rows))  # no image
    err = one_line_error(["check", "--model", run / "run", "--data", tmp_path / "t1.tsv", "--out",
                          tmp_path / "none.tsv"], capsys)
    assert "no record has an image (image)" in err and "data.columns" in err
    assert not (tmp_path / "none.tsv").exists()
    err = one_line_error(["check", "--model", run / "run", "--data", run / "cohort.tsv", "--variables", ",", "--out",
                          tmp_path / "none.tsv"], capsys)  # not "the table holds none of the model's variables"
    assert "--variables names no variable" in err


def test_check_by_sampling_reads_the_records_own_predictive_as_predict_draws_it(run, capsys):
    """`check --method sample`: the age samples are `predict`'s for the same seed, samples and steps (each record
    seeded by its subject), and each flag is the documented t rule on them; no calibration is read."""
    from metavoxel.cli import run as cli
    from metavoxel.evaluation.predictive_check import sampled_check
    from metavoxel.workflows import check as check_module

    rows = ["sub-01\ts1.nii.gz\t61.0\tA", "sub-02\ts2.nii.gz\t95.0\tB", "sub-03\ts3.nii.gz\t40.0\tC"]
    (run / "check_s.tsv").write_text("participant_id\timage\tage\tgroup\n" + "".join(r + "\n" for r in rows))
    predicted = _read(predict_run(run / "run", run / "check_s.tsv", "age", run / "check_s_pred.tsv",
                                  SamplingOptions(num_samples=5, steps=3, seed=4), given=["image", "group"],
                                  typicality=None))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(check_module, "load_calibration", lambda run_dir: pytest.fail("the sampled check read it"))
        code = cli(["check", "--model", str(run / "run"), "--data", str(run / "check_s.tsv"), "--out",
                    str(run / "checks_s.tsv"), "--variables", "age", "--method", "sample", "-n", "5", "--steps", "3",
                    "--seed", "4", "--level", "0.9"])
    assert code == 0, capsys.readouterr().err
    table = _read(run / "checks_s.tsv")
    assert list(table[0])[3:] == ["age", "age_predicted", "age_sd", "age_z", "age_centile", "age_flag", "flags"]
    model = mv.runs.load_run(run / "run")
    from metavoxel.data.records import subject_seed

    for r, p, (subject, image, _age, group) in zip(table, predicted, [row.split("\t") for row in rows]):
        assert float(r["age_predicted"]) == pytest.approx(float(p["age"]), abs=1e-3)
        draws = model.sample(fix={"image": [str(run / image)], "group": [group]}, options=SamplingOptions(
            num_samples=5, steps=3, seeds=[subject_seed(4, subject, None)]))
        check = sampled_check(draws.samples["age"].double().reshape(1, 5), [float(r["age"])], level=0.9)
        assert float(r["age_z"]) == pytest.approx(float(check.t[0]), abs=1e-3)
        assert float(r["age_centile"]) == pytest.approx(float(check.centile[0]), abs=1e-2)
        assert r["age_flag"] == ("yes" if check.flagged[0] else "no")
    assert cli(["check", "--model", str(run / "run"), "--data", str(run / "check_s.tsv"), "--out",
                str(run / "c3.tsv"), "--method", "sample", "-n", "2"]) == 2  # a spread needs 3 samples


def test_train_without_calibration_leaves_it_to_calibrate(run, tmp_path):
    spec = json.loads((run / "run" / "spec.json").read_text())["spec"]
    config = TrainConfig(steps=1, batch_size=4, val_every=10, checkpoint_every=10, warmup_steps=0)
    train_run(mv.ModelSpec.from_dict(spec), run / "cohort.tsv", tmp_path / "plain", config, calibrate=False)
    assert (tmp_path / "model.safetensors").exists() is False and (tmp_path / "plain" / "model.safetensors").is_file()
    assert not (tmp_path / "plain" / CALIBRATION_FILE).exists()
