"""The command line: help, plugins, schema, demo, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metavoxel.cli import run

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_the_commands(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("plugins", "schema", "demo", "evaluate", "phantom", "plot", "import-vae"):
        assert command in out


HELP_WITHOUT_TORCH = """
import sys
from metavoxel.cli import app, run
from typer.main import get_command

commands = sorted(get_command(app).commands)
codes = [run(["--help"])] + [run([name, "--help"]) for name in commands]
print(len(commands), set(codes), sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_help_of_the_app_and_of_every_command_does_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "16 {0} []"  # 16 commands, each --help exits 0, and no torch module


def test_plugins_lists_builtin_kinds_with_distribution(capsys):
    assert run(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("continuous", "categorical", "image", "image_latent"):
        assert kind in out
    assert "metavoxel" in out


def test_schema_writes_and_checks(tmp_path, capsys):
    assert run(["schema", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "modelspec.schema.json").is_file()
    assert (tmp_path / "examples" / "t1w_age_sex_latent.yaml").is_file()
    assert run(["schema", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "examples" / "toy_2d_pixel.yaml").write_text("stale")
    assert run(["schema", "--out", str(tmp_path), "--check"]) == 1
    assert "toy_2d_pixel.yaml" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.tmp")), "no temporary files left behind"


def test_usage_errors_exit_2_with_one_line(capsys):
    assert run(["schema", "--no-such-flag"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_console_script_is_installed_and_errors_have_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "metavoxel", "schema", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def _figure(png: Path) -> None:
    """A readable, non-blank PNG with its PDF beside it."""
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01, png
    assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF"), png


def test_demo_then_evaluate_end_to_end_quickly(tmp_path, capsys):
    """`metavoxel demo` (phantom → shipped VAE → model → five questions) on a tiny budget, then `metavoxel evaluate`."""
    assert run(["demo", "--out", str(tmp_path), "--subjects", "40", "--train-steps", "5", "--steps", "3",
                "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    for title in ("Unconditional samples", "Conditional generation", "Age from image + sex", "Sex from image + age",
                  "Half-brain inpainting", "metavoxel train --spec"):
        assert title in out
    for png in ("unconditional.png", "conditional.png", "inpainting.png"):
        _figure(tmp_path / png)
    assert (tmp_path / "cohort" / "participants.tsv").is_file() and (tmp_path / "model" / "spec.json").is_file()
    assert "True" in out  # inpainting kept the known voxels exactly
    import json

    demo = json.loads((tmp_path / "demo.json").read_text())  # every printed figure, with its constant
    checks = {c["name"]: c for c in demo["checks"]}
    assert {"age MAE (years)", "sex accuracy", "round-trip ages in increasing order (each sex)"} <= set(checks)
    # inpainting judged against brains that know nothing of the kept half, and the seam against the real brains'
    inpainted = checks["inpainted half: error against the truth"]
    assert inpainted["value"] == demo["metrics"]["inpainting_rms_repaint"] != demo["metrics"]["inpainting_rms_clean"]
    assert inpainted["constant"] == demo["metrics"]["inpainting_rms_unconditional"]
    seam = checks["inpainting seam (x the real brains' ratio)"]
    metrics = demo["metrics"]
    assert seam["value"] == pytest.approx(metrics["inpainting_seam_repaint"] / metrics["inpainting_seam_truth"])
    held_out = json.loads((tmp_path / "model" / "splits.json").read_text())["test"]
    assert metrics["inpainting_subjects"] == min(16, len(held_out))
    assert checks["age MAE (years)"]["constant"] == pytest.approx(demo["metrics"]["age_mae_baseline"])
    # the answer is the point prediction (the demo trains clean subsets); the samples' mean is reported beside it
    assert checks["age MAE (years)"]["value"] == demo["metrics"]["age_mae"] != demo["metrics"]["age_mae_samples"]
    assert demo["metrics"]["age_point_seconds_per_subject"] > 0
    assert any(n.startswith("age answer: point prediction, 5 network calls") for n in demo["notes"])
    # the VAE's line: which VAE, its PSNR on this cohort (its probe is in RESULTS.md, not re-measured by the demo)
    assert any(n.startswith("VAE: the shipped phantom VAE 'phantom-32-sharp' (the VAE never saw this cohort's brains")
               and "PSNR" in n and "probe" not in n for n in demo["notes"])
    assert not (tmp_path / "vae").exists()  # the shipped VAE is used where it lies: nothing trained, nothing copied
    assert demo["metrics"]["vae_val_psnr"] > 0 and "vae_probe_age_ratio" not in demo["metrics"]
    assert demo["metrics"]["fid_generated"] > 0 and demo["metrics"]["fid_reconstructed"] > 0
    # like counts on both sides of the FID ratio: as many free brains as held-out ones, all of them reconstructed
    fid = next(t for t in demo["tables"] if t["title"].startswith("Generated brains against"))
    n_test = len(json.loads((tmp_path / "model" / "splits.json").read_text())["test"])
    assert fid["rows"][0][0] == f"{max(8, n_test)} unconditional samples"
    assert fid["rows"][1][0].startswith(f"the VAE's reconstructions of {n_test} held-out brains")
    # the round trip beside its ceiling: what the same read-back gives for real held-out brains
    held_out = json.loads((tmp_path / "model" / "splits.json").read_text())["test"]
    round_trip = next(t for t in demo["tables"] if t["title"].startswith("Conditional generation, read back"))
    assert "ceiling (real brains)" in round_trip["columns"]
    assert demo["metrics"]["round_trip_ceiling_subjects"] == len(held_out)
    assert "Does the demo beat its constants" in out and ("NOT beat" in out) == (not all(
        c["met"] for c in demo["checks"]))
    assert [t["title"] for t in demo["tables"]][-1].startswith("Does the demo beat")

    evaluation = tmp_path / "eval"
    assert run(["evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "cohort"), "--out",
                str(evaluation), "--num-samples", "2", "--steps", "2", "--likelihood-timesteps", "2"]) == 0

    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_test"] == len(json.loads(
        (tmp_path / "model" / "splits.json").read_text())["test"])
    assert [row["given"] for row in metrics["table2"]] == ["I,C", "I", "C", "none", "population mean"]
    assert metrics["generation"]["network"].startswith("metavoxel-vae-encoder")
    unc = metrics["uncertainty"]  # 2 samples: [min, max] is a 1/3 interval, and the report says so
    assert unc["coverage_level"] == pytest.approx(1 / 3) and len(unc["rank_histogram"]["counts"]) == 3
    report = (evaluation / "report.md").read_text()
    assert "paper Table 2" in report and "not comparable with published FIDs" in report
    assert "Uncertainty of age" in report and "coverage of the 33.3% interval" in report and "CRPS" in report
    assert "coverage of a 90% interval needs --num-samples 20" in " ".join(capsys.readouterr().out.split())
    for png in ("age_scatter.png", "sex_calibration.png", "age_rank.png", "age_table2.png", "samples.png"):
        _figure(evaluation / png)
        assert f"]({png})" in report, f"report.md shows {png}"
    everyone = tmp_path / "eval-all"
    assert run(["evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "cohort"), "--out",
                str(everyone), "--split", "all", "--num-samples", "1", "--steps", "2", "--features", "none"]) == 0
    assert json.loads((everyone / "metrics.json").read_text())["n_test"] == 40
    assert run(["evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "cohort"), "--out",
                str(tmp_path / "bad"), "--categorical", "group"]) == 2
    assert "--categorical" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_plugins_reports_a_broken_plugin_and_still_lists_the_others(capsys, monkeypatch):
    import importlib.metadata as md

    from metavoxel.plugins import registry

    real = md.entry_points
    broken = md.EntryPoint(name="broken_kind", value="no_such_module_abc", group="metavoxel")

    def fake(**kwargs):
        found = list(real(**kwargs))
        return found + [broken] if kwargs.get("group") == "metavoxel" else found

    monkeypatch.setattr(md, "entry_points", fake)
    registry._cached_default.cache_clear()
    try:
        assert run(["plugins"]) == 0
        out = capsys.readouterr().out
        assert "failed" in out and "broken_kind" in out and "no_such_module_abc" in out
        assert "continuous" in out and "categorical" in out
        monkeypatch.setenv("METAVOXEL_DISABLE_PLUGINS", "broken_kind")
        assert run(["plugins"]) == 0
        out = capsys.readouterr().out
        assert "blocked: plugin 'broken_kind'" in out and "failed" not in out and "continuous" in out
    finally:
        registry._cached_default.cache_clear()


def test_demo_help_states_the_demo_recipe():
    """`metavoxel demo --help` names the DEMO recipe's budget, guidance and phantom settings as they are."""
    import typing

    from metavoxel.cli import commands
    from metavoxel.workflows.study import DEMO

    hints = typing.get_type_hints(commands.demo, include_extras=True)
    helps = {name: hint.__metadata__[0].help for name, hint in hints.items() if hasattr(hint, "__metadata__")}
    assert f"recipe's {DEMO.subjects})" in helps["subjects"] and f"(default {DEMO.vae_steps})" in helps["vae_steps"]
    assert f"(default {DEMO.train_steps})" in helps["train_steps"]
    assert f"(default {DEMO.guidance:g};" in helps["guidance"]
    doc = " ".join(commands.demo.__doc__.split())
    assert all(f"{k}={v:g}" in doc for k, v in DEMO.phantom.items())


def test_the_round_trip_ceiling_is_the_read_back_line_on_true_age_through_the_vae():
    """A reader that returns the truth has ceiling slope 1, r 1; the images go through decode(encode(x))."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from metavoxel.demo import _read_back_ceiling

    ages = [45.0, 60.0, 75.0, 90.0]
    images = 0.1 * torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1, 1).expand(4, 1, 2, 2, 2).contiguous()
    seen = []
    vae = SimpleNamespace(encode=lambda x: 2 * x, decode=lambda z: z / 2 + 0.5)  # reconstructions: x + 0.5
    ctx = SimpleNamespace(test={"image": images, "sex": ["F", "M", "F", "M"], "age": ages},
                          model=SimpleNamespace(variables={"image": vae}))

    def read_back(x, sexes, phase):
        seen.append(float(x.mean()))
        return np.array(ages) * (0.5 if x.mean() > 0.5 else 1.0)  # the reconstructions read back half the age

    ceiling = _read_back_ceiling(ctx, read_back)
    assert seen == pytest.approx([0.15, 0.65])  # raw images first, then their reconstructions
    assert ceiling["raw_slope"] == pytest.approx(1.0) and ceiling["raw_r"] == pytest.approx(1.0)
    assert ceiling["slope"] == pytest.approx(0.5) and ceiling["intercept"] == pytest.approx(0.0, abs=1e-9)
    assert ceiling["subjects"] == 4
