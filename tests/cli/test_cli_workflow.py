"""End to end on a tiny 3D NIfTI cohort: train-vae -> encode -> train -> sample -> predict, and bad input."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from metavoxel.cli import run

N = 12


def _head(age: float, sex: str, rng: np.random.Generator) -> np.ndarray:
    """A 16³ blob whose radius grows with age and whose centre shifts with sex."""
    grid = np.stack(np.meshgrid(*[np.arange(16.0)] * 3, indexing="ij"))
    centre = np.array([7.5 + (1.5 if sex == "M" else -1.5), 7.5, 7.5])[:, None, None, None]
    radius = 3.0 + 3.0 * (age - 40) / 55
    blob = np.exp(-((grid - centre) ** 2).sum(0) / (2 * radius**2))
    return (blob + 0.02 * rng.standard_normal(blob.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        age, sex = float(rng.uniform(40, 95)), "F" if i % 2 else "M"
        data, affine = _head(age, sex, rng), np.diag([1.0, 1.0, 1.0, 1.0])
        if i % 3 == 0:  # some scans stored LPS: same anatomy, flipped axes and affine
            data = data[::-1, ::-1].copy()
            affine = np.diag([-1.0, -1.0, 1.0, 1.0])
            affine[:3, 3] = [15.0, 15.0, 0.0]
        (root / "images").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), root / "images" / f"sub-{i:02d}_T1w.nii.gz")
        rows.append({"participant_id": f"sub-{i:02d}", "age": f"{age:.1f}", "sex": "male" if sex == "M" else "f",
                     "t1": f"images/sub-{i:02d}_T1w.nii.gz"})
    with (root / "cohort.tsv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    spec = {
        "name": "tiny-t1w",
        "variables": [
            {"name": "image", "kind": "image_latent", "shape": [16, 16, 16],
             "vae": {"channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4},
             "preprocess": {"spacing": [1.0, 1.0, 1.0], "percentiles": [0.5, 99.5]}},
            {"name": "age", "kind": "continuous", "range": [40, 95]},
            {"name": "sex", "kind": "categorical", "categories": ["F", "M"],
             "aliases": {"female": "F", "male": "M"}},
        ],
        "diffusion": {"timesteps": 50, "sampling_steps": 4,
                      "training": {"shared": 1.0, "clean": 0.0, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0},
                      "conditioning": "repaint"},
        "network": {"spatial_dims": 3, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
                    "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16},
        "data": {"columns": {"image": "t1"}, "split": {"val": 0.2, "test": 0.2, "seed": 0}},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root, spec


def _preview_shows_images_side_by_side(out) -> None:
    """preview.png (with preview.pdf beside it) holds one row: the given scan, then the result, 3 planes each."""
    import matplotlib.image

    image = matplotlib.image.imread(out / "preview.png")
    assert image.shape[1] > 3 * image.shape[0] and image[..., :3].std() > 0.01
    assert (out / "preview.pdf").read_bytes().startswith(b"%PDF")


def _ok(argv: list[str]) -> None:
    code = run([str(a) for a in argv])
    assert code == 0, f"metavoxel {' '.join(map(str, argv))} exited {code}"


@pytest.fixture(scope="module")
def trained(cohort):
    root, spec = cohort
    _ok(["train-vae", "--spec", root / "spec.yaml", "--data", root / "cohort.tsv", "--out", root / "vae",
         "--steps", 3, "--batch-size", 2, "--adv-start", 1, "--disc-layers", 2])
    meta = json.loads((root / "vae" / "vae.json").read_text())
    spec["variables"][0].update(weights=str(root / "vae" / "vae.safetensors"), scale_factor=meta["scale_factor"])
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    _ok(["encode", "--spec", root / "spec.yaml", "--data", root / "cohort.tsv", "--cache", root / "cache"])
    _ok(["train", "--spec", root / "spec.yaml", "--data", root / "cohort.tsv", "--out", root / "run", "--steps", 4,
         "--batch-size", 2, "--val-every", 2, "--checkpoint-every", 2, "--cache", root / "cache"])
    return root


def test_run_directory_is_complete(trained):
    run_dir = trained / "run"
    for name in ("spec.json", "model.safetensors", "best.safetensors", "metrics.jsonl", "splits.json", "MODEL_CARD.md",
                 "state.json", "train.json"):
        assert (run_dir / name).is_file(), name
    splits = json.loads((run_dir / "splits.json").read_text())
    subjects = [set(splits[k]) for k in ("train", "val", "test")]
    assert all(subjects) and sum(len(s) for s in subjects) == len(set().union(*subjects)) == N  # disjoint, complete
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "Not for clinical use" in card and "age (train): mean" in card
    assert not list(run_dir.rglob("*.tmp"))


def test_train_vae_resumes_and_refuses_to_restart_over_a_training(trained, capsys):
    common = ["train-vae", "--spec", trained / "spec.yaml", "--data", trained / "cohort.tsv", "--out",
              trained / "vae-resumed", "--batch-size", 2, "--adv-start", 1, "--disc-layers", 2]
    _ok([*common, "--steps", 2])
    assert run([str(a) for a in [*common, "--steps", 3]]) == 2
    assert "already holds a VAE training; pass --resume" in capsys.readouterr().err
    _ok([*common, "--steps", 3, "--resume"])
    assert json.loads((trained / "vae-resumed" / "vae.json").read_text())["metrics"]["steps"] == 3
    assert run([str(a) for a in [*common, "--steps", 3, "--lr-schedule", "linear"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid VAE training settings: lr_schedule:") and err.count("\n") == 1


def test_every_file_a_run_a_cache_and_a_sample_write_gets_the_mode_open_would_give(trained):
    """safetensors files too (save_file writes them 0600): 0644 under umask 022, like the JSON, NIfTI and PNG."""
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    out = trained / "modes"
    _ok(["sample", "--model", trained / "run", "--fix", "age=70", "--out", out])
    files = [p for folder in ("run", "cache", "vae", "modes") for p in (trained / folder).rglob("*") if p.is_file()]
    kinds = {p.name.split(".", 1)[-1] for p in files}
    assert {"safetensors", "json", "nii.gz", "png", "jsonl", "md"} <= kinds
    assert any(p.parent.name.startswith("state-") for p in files) and any(p.parent.name == "shards" for p in files)
    wrong = {str(p.relative_to(trained)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~umask}
    assert not wrong, f"expected mode {oct(0o666 & ~umask)}: {wrong}"


def test_train_vae_reports_how_much_signal_the_reconstructions_keep(trained):
    metrics = json.loads((trained / "vae" / "vae.json").read_text())["metrics"]
    age, sex = metrics["probe"]["age"], metrics["probe"]["sex"]
    assert age["kind"] == "continuous" and {"mae_raw", "mae_recon", "mae_baseline", "ratio"} <= set(age)
    assert sex["kind"] == "categorical" and 0 <= sex["accuracy_recon"] <= 1
    assert age["mae_refit"] >= 0 and 0 <= sex["accuracy_refit"] <= 1  # the probe refitted on reconstructions
    assert age["test"] == len(json.loads((trained / "run" / "splits.json").read_text())["val"])
    assert metrics["val"]["psnr"] > 0 and metrics["seconds"] > 0


def test_encode_again_encodes_nothing(trained, capsys):
    _ok(["encode", "--spec", trained / "spec.yaml", "--data", trained / "cohort.tsv", "--cache", trained / "cache"])
    assert f"{N} images: {N} were cached, 0 encoded" in capsys.readouterr().out


def test_sample_with_image_and_sex_fixed_predicts_age(trained, capsys):
    out = trained / "s1"
    scan = trained / "images" / "sub-03_T1w.nii.gz"
    _ok(["sample", "--model", trained / "run", "--fix", f"image={scan}", "--fix", "sex=female", "-n", 3, "--out", out,
         "--grid", "uniform"])
    printed = capsys.readouterr().out
    assert "50%" in printed and "90%" not in printed  # the printed interval is named by its real level
    summary = json.loads((out / "samples.json").read_text())
    sex, age = summary["variables"]["sex"], summary["variables"]["age"]
    assert sex["samples"] == [["F", "F", "F"]] and sex["fixed"] == [True]
    assert len(age["samples"][0]) == 3
    assert set(age["summary"]) == {"mean", "sd", "lower", "upper", "level", "num_samples"}
    assert age["summary"]["level"] == [0.5]  # [min, max] of 3 samples: a 50% interval, never called 90%
    assert summary["fixed"] == {"image": str(scan), "sex": "female"}
    assert summary["grid"] == "uniform"  # as asked (the spec's default is quadratic)
    assert not list(out.glob("*.nii.gz"))  # the whole image was given: nothing generated to write


def test_inpainting_is_written_back_in_the_scans_own_grid(trained):
    scan = trained / "images" / "sub-00_T1w.nii.gz"  # an LPS scan
    source = nib.load(scan)
    mask = np.zeros(source.shape, dtype=np.float32)
    mask[:8] = 1
    nib.save(nib.Nifti1Image(mask, source.affine), trained / "mask.nii.gz")
    out = trained / "s2"
    _ok(["sample", "--model", trained / "run", "--fix", f"image={scan}", "--mask", f"image={trained / 'mask.nii.gz'}",
         "--out", out])
    result = nib.load(out / "image_sample00.nii.gz")
    assert result.get_data_dtype() == np.float32
    np.testing.assert_allclose(result.affine, source.affine)
    assert result.shape == source.shape and int(result.header["sform_code"]) > 0
    _preview_shows_images_side_by_side(out)
    assert json.loads((out / "image_sample00.json").read_text())["space"] == "source"


def test_generated_image_carries_the_model_grid_affine(trained):
    out = trained / "s3"
    _ok(["sample", "--model", trained / "run", "--fix", "age=70", "--fix", "sex=M", "--out", out])
    image = nib.load(out / "image_sample00.nii.gz")
    assert image.shape == (16, 16, 16)
    np.testing.assert_allclose(np.diag(image.affine)[:3], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(image.affine @ [8, 8, 8, 1], [0, 0, 0, 1])  # centre voxel at the world origin


def test_predict_writes_one_row_per_subject(trained):
    out = trained / "preds.tsv"
    _ok(["predict", "--model", trained / "run", "--data", trained / "cohort.tsv", "--target", "age", "--given",
         "image,sex", "-n", 2, "--out", out])
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert len(rows) == N
    assert set(rows[0]) == {"participant_id", "session", "source", "age", "age_sd", "age_lower", "age_upper",
                            "age_level", "age_num_samples", "age_true", "brain_pad", "brain_pad_corrected",
                            "brain_age_corrected", "age_centile", "typicality_percentile", "image_percentile",
                            "metadata_percentile", "atypical"}  # docs/trust.md
    assert rows[0]["participant_id"] == "sub-00" and float(rows[0]["age_lower"]) <= float(rows[0]["age_upper"])
    assert float(rows[0]["age_level"]) == pytest.approx(1 / 3, abs=1e-4) and rows[0]["age_num_samples"] == "2"
    out = trained / "sex.tsv"
    _ok(["predict", "--model", trained / "run", "--data", trained / "cohort.tsv", "--target", "sex", "--out", out])
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert {"sex_p_F", "sex_p_M", "sex", "sex_num_samples", "sex_true"} <= set(rows[0]) and rows[0]["sex_num_samples"] == "3"
    assert rows[0]["sex"] in ("F", "M")


@pytest.mark.parametrize(("args", "message"), [
    (["--fix", "weight=80"], "unknown variable(s) weight; this model has image, age, sex"),
    (["--fix", "Age=70"], "unknown variable(s) Age (did you mean 'age'?); this model has image, age, sex"),
    (["--mask", "imge=m.nii.gz"], "--mask: unknown variable(s) imge (did you mean 'image'?)"),
    (["--fix", "sex=X"], "unknown category 'X'"),
    (["--fix", "age=old"], "expected a number"),
    (["--fix", "age=150"], "outside the model's range [40, 95]"),
    (["--fix", "image=README.md"], "is not a NIfTI file"),
    (["--fix", "image=nope.nii.gz"], "does not exist"),
    (["--fix", "age"], "is not NAME=VALUE"),
    (["--fix", "age=60", "--fix", "sex=F", "--fix", "image=IMG"], "every variable is fixed"),
    (["--fix", "age=60", "--conditioning", "clean"], "needs a model trained with clean subsets"),
    (["--fix", "age=60", "--guidance", "1"], "needs a model trained with prior subsets"),
    (["--fix", "age=60", "--grid", "cosine"], "--grid (the sampling grid's spacing) must be one of uniform, quadratic"),
])
def test_bad_input_is_one_line_with_exit_code_2(trained, capsys, args, message):
    args = [a.replace("IMG", str(trained / "images" / "sub-01_T1w.nii.gz")) for a in args]
    out = trained / "bad"
    code = run(["sample", "--model", str(trained / "run"), *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists(), "nothing is written for bad input"


def test_point_prediction_of_a_paper_recipe_model_is_refused_in_one_line(trained, capsys):
    out = trained / "point.tsv"
    code = run(["predict", "--model", str(trained / "run"), "--data", str(trained / "cohort.tsv"), "--target", "age",
                "--method", "point", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "point prediction needs a model trained with clean subsets" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    evaluation = trained / "point-eval"
    code = run(["evaluate", "--model", str(trained / "run"), "--data", str(trained / "cohort.tsv"), "--split", "all",
                "--method", "point", "--out", str(evaluation)])
    err = capsys.readouterr().err
    assert code == 2 and "point prediction needs a model trained with clean subsets" in err and "--method" in err
    assert len(err.strip().splitlines()) == 1 and not evaluation.exists()


def test_a_mixture_model_predicts_by_point_and_samples_clean_with_guidance(trained, cohort):
    _root, spec = cohort
    mixture = {**spec, "diffusion": {**spec.get("diffusion", {}), "training": {"shared": 0.5, "clean": 0.25,
               "independent": 0.1, "prior": 0.15, "keep_masks": 0.25}, "conditioning": "clean"}}
    (trained / "mixture.yaml").write_text(yaml.safe_dump(mixture))
    _ok(["train", "--spec", trained / "mixture.yaml", "--data", trained / "cohort.tsv", "--out", trained / "mix",
         "--steps", 2, "--batch-size", 2, "--val-every", 2, "--checkpoint-every", 2, "--cache", trained / "cache"])
    out = trained / "point.tsv"
    _ok(["predict", "--model", trained / "mix", "--data", trained / "cohort.tsv", "--target", "sex", "--method",
         "point", "--out", out])
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert len(rows) == N and rows[0]["sex"] in ("F", "M")
    assert abs(float(rows[0]["sex_p_F"]) + float(rows[0]["sex_p_M"]) - 1) < 1e-3
    _ok(["sample", "--model", trained / "mix", "--fix", "age=70", "--fix", "sex=M", "--guidance", 1.5,
         "--out", trained / "guided"])
    assert json.loads((trained / "guided" / "samples.json").read_text())["grid"] == "quadratic"  # a new spec's


@pytest.mark.slow
def test_evaluate_reports_point_predictions_beside_sampling(trained, cohort, capsys):
    if not (trained / "mix" / "spec.json").is_file():  # written by the test above when it ran first
        _root, spec = cohort
        mixture = {**spec, "diffusion": {**spec.get("diffusion", {}), "training": {"shared": 0.5, "clean": 0.5},
                                         "conditioning": "clean"}}
        (trained / "mixture.yaml").write_text(yaml.safe_dump(mixture))
        _ok(["train", "--spec", trained / "mixture.yaml", "--data", trained / "cohort.tsv", "--out", trained / "mix",
             "--steps", 2, "--batch-size", 2, "--cache", trained / "cache"])
    evaluation = trained / "mix-eval"
    _ok(["evaluate", "--model", trained / "mix", "--data", trained / "cohort.tsv", "--split", "all",
         "--method", "point", "-n", 1, "--steps", 2, "--likelihood-timesteps", 0, "--features", "none", "--out", evaluation])
    assert "point prediction (5 network calls per subject): age MAE" in " ".join(capsys.readouterr().out.split())
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["point"]["calls_per_subject"] == 5 and metrics["point"]["classification"]["n"] == N
    assert "regression" in metrics and "(point prediction, 5 network calls)" in (evaluation / "report.md").read_text()


def test_not_a_run_directory_exits_2(tmp_path, capsys):
    assert run(["sample", "--model", str(tmp_path), "--fix", "age=60"]) == 2
    assert "is not a metavoxel run directory" in capsys.readouterr().err


def test_translation_to_another_image_is_written_in_the_given_scans_grid(cohort, tmp_path):
    root, _spec = cohort
    rows = list(csv.DictReader((root / "cohort.tsv").open(), delimiter="\t"))
    for row in rows:  # a second, FLAIR-like image of the same anatomy
        source = nib.load(root / row["t1"])
        flair = root / row["t1"].replace("_T1w", "_FLAIR")
        nib.save(nib.Nifti1Image(1.0 - np.asarray(source.dataobj), source.affine), flair)
        row["flair"] = str(flair.relative_to(root))
    table = root / "two_images.tsv"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    prep = {"spacing": [1.0, 1.0, 1.0], "percentiles": [0.5, 99.5]}
    spec = {"variables": [{"name": "t1", "kind": "image", "shape": [16, 16, 16], "preprocess": prep},
                          {"name": "flair", "kind": "image", "shape": [16, 16, 16], "preprocess": prep},
                          {"name": "age", "kind": "continuous", "range": [40, 95]}],
            "diffusion": {"timesteps": 50, "sampling_steps": 3},
            "network": {"spatial_dims": 3, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
                        "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16},
            "data": {"split": {"val": 0.2, "test": 0.2}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    _ok(["train", "--spec", tmp_path / "spec.yaml", "--data", table, "--out", tmp_path / "run", "--steps", 2,
         "--batch-size", 2])
    scan = root / "images" / "sub-03_T1w.nii.gz"  # stored LPS
    _ok(["sample", "--model", tmp_path / "run", "--fix", f"t1={scan}", "--out", tmp_path / "s"])
    flair = nib.load(tmp_path / "s" / "flair_sample00.nii.gz")
    np.testing.assert_allclose(flair.affine, nib.load(scan).affine)
    assert flair.shape == nib.load(scan).shape and flair.get_data_dtype() == np.float32
    _preview_shows_images_side_by_side(tmp_path / "s")  # the given T1 beside the generated FLAIR
    _ok(["sample", "--model", tmp_path / "run", "--fix", f"t1={scan}", "--space", "model", "--out", tmp_path / "m"])
    assert json.loads((tmp_path / "m" / "flair_sample00.json").read_text())["space"] == "model"
