"""A kind whose z has more dimensions than its value (time of day as (cos, sin)), installed as a plugin,
goes through `metavoxel train`, `sample --fix`, `sample` and `predict` with exit code 0 and sensible output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fake_dist import forget, install

import metavoxel as mv
from metavoxel.cli import run

SOURCE = (Path(__file__).resolve().parents[1] / "cyclic_kind.py").read_text()
N = 24


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("cyclic")
    install(root / "site", monkeypatch, distribution="metavoxel-cyclic", version="0.2", module="metavoxel_cyclic",
            source=SOURCE, entry_point="cyclic")
    monkeypatch.delenv("METAVOXEL_DISABLE_PLUGINS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads mostly wait for each other on a shared CPU
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        hour = float(rng.uniform(0, 24))
        image = np.full((8, 8), 0.5 + 0.4 * np.cos(2 * np.pi * hour / 24), dtype=np.float32)
        mv.write_nifti(root / "cohort" / f"sub-{i:02d}.nii.gz", image + 0.02 * rng.standard_normal((8, 8)), np.eye(4))
        rows.append({"participant_id": f"sub-{i:02d}", "image": f"sub-{i:02d}.nii.gz", "time": f"{hour:.2f}"})
    with open(root / "cohort" / "cohort.tsv", "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    spec = {"name": "clock", "variables": [{"name": "image", "kind": "image", "channels": 1, "shape": [8, 8]},
                                           {"name": "time", "kind": "cyclic", "period": 24.0}],
            "diffusion": {"timesteps": 50, "sampling_steps": 4},
            "network": {"spatial_dims": 2, "channels": [8, 16], "attention_levels": [False, True],
                        "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16},
            "data": {"split": {"val": 0.1, "test": 0.1, "seed": 0}}}
    (root / "clock.yaml").write_text(yaml.safe_dump(spec))
    yield root
    torch.set_num_threads(threads)
    monkeypatch.undo()
    forget("metavoxel_cyclic")


def _ok(argv: list, capsys) -> str:
    code = run([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, f"metavoxel {' '.join(map(str, argv))} exited {code}: {captured.err}"
    return captured.out


def test_train_sample_and_predict_a_kind_with_two_dimensional_z(workdir, capsys):
    run_dir = workdir / "run"
    _ok(["train", "--spec", workdir / "clock.yaml", "--data", workdir / "cohort" / "cohort.tsv", "--out", run_dir,
         "--steps", 4, "--batch-size", 4], capsys)
    assert json.loads((run_dir / "spec.json").read_text())["plugins"]["cyclic"] == {
        "distribution": "metavoxel-cyclic", "version": "0.2"}

    out = _ok(["sample", "--model", run_dir, "--fix", "time=6.5", "--out", workdir / "fixed"], capsys)
    fixed = json.loads((workdir / "fixed" / "samples.json").read_text())["variables"]["time"]
    assert fixed["fixed"] == [True] and fixed["samples"][0][0] == pytest.approx(6.5, abs=1e-3)
    assert (workdir / "fixed" / "image_sample00.nii.gz").is_file() and "fixed" in out

    out = _ok(["sample", "--model", run_dir, "--num-samples", 3, "--out", workdir / "free"], capsys)
    free = json.loads((workdir / "free" / "samples.json").read_text())["variables"]["time"]
    assert all(0 <= h < 24 for h in free["samples"][0]) and set(free["summary"]) == {"mean", "resultant"}
    assert "resultant" in out  # the kind's own summary keys, rendered as they are

    _ok(["predict", "--model", run_dir, "--data", workdir / "cohort" / "cohort.tsv", "--target", "time",
         "--num-samples", 2, "--out", workdir / "time.tsv"], capsys)
    rows = list(csv.DictReader((workdir / "time.tsv").open(), delimiter="\t"))
    assert len(rows) == N and list(rows[0]) == ["participant_id", "session", "source", "time", "time_resultant",
                                               "time_true", "typicality_percentile", "image_percentile",
                                               "metadata_percentile", "atypical"]  # no brain-PAD: time wraps
    assert all(0 <= float(r["time"]) < 24 and 0 <= float(r["time_resultant"]) <= 1 + 1e-6 for r in rows)


def test_a_fixed_value_outside_the_declared_range_is_refused(workdir, capsys):
    run_dir = workdir / "run"
    if not (run_dir / "model.safetensors").is_file():
        pytest.skip("needs the run trained by the previous test")
    assert run(["sample", "--model", str(run_dir), "--fix", "time=25", "--out", str(workdir / "bad")]) == 2
    err = capsys.readouterr().err
    assert "outside the model's range [0, 24]" in err and not (workdir / "bad").exists()
