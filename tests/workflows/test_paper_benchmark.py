"""benchmarks/paper/run.py runs every stage end to end (on its ``tiny`` smoke budget) and reuses them."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

import metavoxel as mv

ROOT = Path(__file__).resolve().parents[2]


def load_runner():
    sys.path.insert(0, str(ROOT / "benchmarks" / "paper"))
    try:
        return importlib.import_module("run")
    finally:
        sys.path.pop(0)


def test_tiny_benchmark_runs_every_stage_writes_the_report_and_reuses_its_stages(tmp_path, capsys):
    runner = load_runner()
    out, results = tmp_path / "bench", tmp_path / "RESULTS.md"
    results.write_text("# earlier results\n")
    assert runner.main(["--config", "tiny", "--out", str(out), "--results", str(results), "--append"]) == 0

    for name in ("report.md", "metrics.json", "age_scatter.png", "sex_calibration.png", "samples_by_model.png",
                 "age_rank.png", "age_table2.png", "ablations.png"):
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert (out / name).with_suffix(".pdf").is_file(), name
    for variant in ("joint", "image-only", "continuous-sex", "joint-mixture", "joint-matched"):
        assert (out / variant / "model.safetensors").is_file(), variant
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"metavoxel", "image_only", "continuous_sex", "baselines", "ablation", "targets", "conditioning",
            "conditioning_targets"} <= set(metrics)
    # the conditioning comparison: each model trained as its name says, each mode measured or refused
    specs = {name: json.loads((out / name / "spec.json").read_text())["spec"]["diffusion"]
             for name in ("joint", "joint-mixture", "joint-matched")}
    assert specs["joint"]["training"]["shared"] == 1 and specs["joint-mixture"]["training"]["clean"] > 0
    assert specs["joint"]["gaussian"]["name"] == "scaled_linear" and specs["joint-matched"]["gaussian"]["name"] == "cosine"
    image = {name: json.loads((out / name / "spec.json").read_text())["spec"]["variables"][0]["prediction"]
             for name in runner.MODELS}
    assert image == {**{name: "eps" for name in runner.MODELS}, "joint-mixture": "v"}  # the paper's eps; a new spec's v
    rows = metrics["conditioning"]["rows"]
    assert "refused" not in rows["mixture · clean"] and "refused" not in rows["paper recipe · repaint"]
    assert rows["mixture · clean"]["calibration_samples"] == 4 and rows["mixture · clean"]["coverage_level"] == 0.6
    assert set(metrics["conditioning"]["likelihood"]) == {"paper", "matched", "mixture"}
    assert metrics["conditioning"]["point"]["calls_per_subject"] <= 5
    assert {c["target"] for c in metrics["conditioning_targets"]} >= {"read-back r", "spread-skill", "seam"}
    # what inpainting through the VAE can reach: its reconstruction of the truth, pasted the same way
    ceiling = metrics["conditioning"]["ceiling"]
    assert ceiling["inpaint_rms_vae"] > 0 and ceiling["inpaint_seam_vae"] > 0
    assert set(metrics["baselines"]) == {"densenet121", "vit"}
    assert [row["steps"] for row in metrics["ablation"]["steps"]] == [2, 3]
    assert [row["samples"] for row in metrics["ablation"]["samples"]] == [1, 2]
    # coverage is stored with the level its interval really has: none for 1 sample, [min, max] = 1/3 for 2
    assert [row["coverage_level"] for row in metrics["ablation"]["samples"]] == [None, pytest.approx(1 / 3)]
    assert metrics["metavoxel"]["uncertainty"]["num_samples"] == 2
    # the continuous-sex variant is evaluated on its own 0/1 codes, and every sampled age is in [40, 95]
    assert metrics["continuous_sex"]["classification"]["accuracy"] is not None
    table2 = {row["given"]: row for row in metrics["metavoxel"]["table2"]}
    assert set(table2) >= {"I,C", "I", "C", "none"}
    assert all(row["mae"] <= 55 for row in table2.values())  # an untrained model, but its ages stay in range

    report = (out / "report.md").read_text()
    for heading in ("Table 1 analogue", "Table 2 analogue", "Targets (measured in this run)", "Ablations",
                    "Uncertainty of age given image and sex", "coverage of the 33.3% interval",
                    "Conditioning: paper recipe, matched schedules and the mixture", "target (mixture · clean)"):
        assert heading in report
    assert "90%" not in report.replace("coverage of a 90% interval needs", "")  # no interval sold as 90%
    appended = results.read_text()
    assert appended.startswith("# earlier results\n") and "`python benchmarks/paper/run.py --config tiny" in appended

    # `metavoxel evaluate --regressor --classifier` reads generated images back with the trained baselines
    from metavoxel.evaluation import EvaluationOptions
    from metavoxel.workflows.evaluate import evaluate_run

    fidelity = evaluate_run(out / "joint", out / "cohort", tmp_path / "eval", features=None,
                            options=EvaluationOptions(num_samples=1, steps=2, likelihood_timesteps=0, table2=False),
                            regressor=out / "baselines" / "densenet121-age",
                            classifier=out / "baselines" / "densenet121-sex")["conditional_fidelity"]
    assert fidelity["continuous_mae"] >= 0 and 0 <= fidelity["categorical_accuracy"] <= 1

    # a second run trains nothing again: the models and baselines are reused as they are
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    stamps.update({p: p.stat().st_mtime_ns for p in out.glob("baselines/*/baseline.json")})
    assert len(stamps) == 9
    capsys.readouterr()
    assert runner.main(["--config", "tiny", "--out", str(out), "--results", str(results), "--train-only"]) == 0
    assert {p: p.stat().st_mtime_ns for p in [*out.glob("*/model.safetensors"), *out.glob("baselines/*/baseline.json")]} == stamps
    printed = capsys.readouterr().out
    assert "training" not in printed and "run again without --train-only" in printed
    assert results.read_text() == appended

    # --skip leaves parts out of the measurement and says so in the report; an unknown part is refused
    skipped = tmp_path / "SKIPPED.md"
    assert runner.main(["--config", "tiny", "--out", str(out), "--results", str(skipped), "--append",
                        "--skip", "matched,jumps,ablations,continuous-sex"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped"] == ["ablations", "continuous-sex", "jumps", "matched"]
    assert metrics["ablation"] is None and metrics["continuous_sex"] is None
    assert set(metrics["conditioning"]["likelihood"]) == {"paper", "mixture"}
    assert "mixture · clean" in metrics["conditioning"]["rows"]
    assert not [label for label in metrics["conditioning"]["rows"] if "matched" in label or "jumps" in label]
    text = skipped.read_text()
    assert "Not run (`--skip`): ablations, continuous-sex, jumps, matched." in text
    assert "Not run (`--skip ablations`)." in text
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--config", "tiny", "--out", str(out), "--skip", "vit"])
    assert exit_info.value.code == 2 and "--skip: unknown part(s) vit" in capsys.readouterr().err

    # a model folder trained on another recipe (here: the mixture before its image predicted v) is refused
    stored = out / "joint-mixture" / "recipe.json"
    recipe = json.loads(stored.read_text())
    stored.write_text(json.dumps({**recipe, "predictions": {}}))
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--config", "tiny", "--out", str(out), "--train-only"])
    assert exit_info.value.code == 2 and "joint-mixture holds a model trained on another recipe" in capsys.readouterr().err
    stored.write_text(json.dumps(recipe))

    # the same directory with another configuration would reuse stages trained for the first: refused
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--config", "tiny", "--out", str(out), "--phantom", "age_effect=2"])
    assert exit_info.value.code == 2
    assert "holds a run of another configuration" in capsys.readouterr().err


def test_phantom_settings_are_applied_named_and_checked():
    runner = load_runner()
    tiny = runner.CONFIGS["tiny"]
    bench = runner.with_phantom(tiny, ["age_effect=2", "noise=0"])
    assert bench.recipe.phantom == {"age_effect": 2.0, "noise": 0.0}
    assert "age_effect=2, noise=0" in bench.notes and tiny.recipe.phantom == {}
    assert runner.with_phantom(tiny, []) is tiny
    for bad, message in (("age_effect", "KEY=NUMBER"), ("age_effect=big", "KEY=NUMBER"), ("colour=1", "colour"),
                         ("subjects=3", "subjects"), ("noise=-1", "noise")):
        with pytest.raises(mv.InputError, match=message):
            runner.with_phantom(tiny, [bad])


def test_a_foreign_non_empty_directory_is_refused(tmp_path, capsys):
    runner = load_runner()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--config", "tiny", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "holds no benchmark.json" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cost_counts_a_training_step_as_forward_plus_twice_the_work_backward():
    sys.path.insert(0, str(ROOT / "benchmarks" / "paper"))
    try:
        cost = importlib.import_module("cost")
    finally:
        sys.path.pop(0)
    tiny = cost.CONFIGS["tiny"]
    rows = {row["network"]: row for row in cost.costs(tiny)}
    train = rows["U-Net, MetaVoxel and continuous-sex (train step)"]
    reverse = rows["U-Net, one reverse step of one sample"]
    assert 2.5 < train["step_flops"] / (tiny.recipe.batch_size * reverse["step_flops"]) < 3.5
    assert train["params"] == reverse["params"] > 0 and train["steps"] == tiny.recipe.train_steps
    text = cost.report("tiny", tiny, list(rows.values()), measured_minutes=1.0)
    assert "| **training, all networks** |" in text and "GFLOP/s achieved" in text


def test_the_ablation_figure_draws_lines_with_seconds_on_a_second_axis(tmp_path, monkeypatch):
    """benchmarks/paper/ablation_figure.py: one row per ablation, one panel per metric, a twin seconds axis."""
    import matplotlib.image

    sys.path.insert(0, str(ROOT / "benchmarks" / "paper"))
    try:
        figure_module = importlib.import_module("ablation_figure")
    finally:
        sys.path.pop(0)
    drawn, real = [], figure_module.save_figure
    monkeypatch.setattr(figure_module, "save_figure", lambda fig, path, **kw: drawn.append(fig) or real(fig, path, **kw))
    ablation = {"steps": [{"steps": s, "mae": 9 / s, "accuracy": 0.8, "fid": 40 / s, "seconds_per_subject": s / 10}
                          for s in (10, 20, 50)],
                "samples": [{"samples": s, "mae": 3 / s, "accuracy": 0.7, "seconds_per_subject": s}
                            for s in (1, 3)]}
    png, pdf = figure_module.ablation_lines(tmp_path / "ablations.png", ablation, unit="years")
    assert matplotlib.image.imread(png)[..., :3].std() > 0.01 and pdf.read_bytes().startswith(b"%PDF")
    labels = [ax.get_ylabel() for ax in drawn[0].axes]
    assert labels.count("s / subject") == 5  # steps: MAE, accuracy, FID; samples: MAE, accuracy
    assert labels.count("age MAE (years)") == 2 and labels.count("FID") == 1
    with pytest.raises(mv.InputError, match="'steps' or 'samples'"):
        figure_module.ablation_lines(tmp_path / "none.png", {})
