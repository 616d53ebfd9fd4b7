"""An imported VAE records no latent scale factor; `encode` and `train` compute it on the cohort's training split
(1/std of the posterior means, as `train-vae` does) and record it in the VAE folder, once."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.data import DataSpec, read_cohort, split_subjects
from metavoxel.runs import load_run
from metavoxel.vae import import_vae, load_vae
from monai_bundles import generative_bundle

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")


@pytest.fixture
def study(tmp_path):
    """An imported VAE in vae/, a spec pointing at it without a factor, and a cohort of four 16³ scans."""
    bundle, _ = generative_bundle(tmp_path / "bundle")
    import_vae(bundle, tmp_path / "vae")
    rng = np.random.default_rng(0)
    rows = ["participant_id\timage\tage"]
    for i in range(4):
        nib.save(nib.Nifti1Image(rng.uniform(0, 1, (16, 16, 16)).astype(np.float32), np.eye(4)), tmp_path / f"{i}.nii")
        rows.append(f"sub-{i}\t{i}.nii\t{60 + i}")
    (tmp_path / "cohort.tsv").write_text("\n".join(rows) + "\n")
    spec = {"variables": [{"name": "image", "kind": "image_latent", "channels": 1, "shape": [16, 16, 16],
                           "weights": "vae"},
                          {"name": "age", "kind": "continuous", "range": [40.0, 95.0]}],
            "diffusion": {"timesteps": 20, "sampling_steps": 2},
            "network": {"spatial_dims": 3, "channels": [8, 8], "attention_levels": [False, False],
                        "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8},
            "data": {"split": {"val": 0.25, "test": 0.0}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def _expected_factor(study: Path) -> tuple[float, int]:
    """1/std (unbiased, every element) of the posterior means of the training split's images."""
    spec = mv.ModelSpec.from_file(study / "spec.yaml")
    spec.variables[0].scale_factor = 1.0  # only to build the variables the cohort is read with
    cohort = read_cohort(study / "cohort.tsv", mv.JointModel(spec).variables, spec.data or DataSpec())
    train = split_subjects(cohort, spec.data.split)["train"]
    vae, _ = load_vae(study / "vae")
    images = torch.stack([torch.from_numpy(np.asarray(nib.load(p).dataobj, dtype=np.float32))[None]
                          for p in cohort.batch(train)["image"]])
    with torch.no_grad():
        mu = vae.encode(images)[0].double()
    return 1.0 / float(mu.std()), len(train)


def test_encode_computes_and_records_the_factor_once(study, capsys):
    expected, n_train = _expected_factor(study)
    assert n_train == 3  # one subject of four is held out for validation and does not set the factor
    args = ["encode", "--spec", str(study / "spec.yaml"), "--data", str(study / "cohort.tsv"), "--cache",
            str(study / "latents")]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "recorded no latent scale factor; computed" in out and "3 training images" in out
    meta = json.loads((study / "vae" / "vae.json").read_text())
    assert meta["scale_factor"] == pytest.approx(expected, rel=1e-5)
    assert meta["scale_factor_source"]["images"] == 3 and meta["scale_factor_source"]["split"] == "train"
    assert meta["provenance"]["key_names"] == "GenerativeModels"  # the rest of the record is kept
    assert run(args) == 0
    again = capsys.readouterr().out
    assert "computed" not in again and "4 were cached" in again
    assert mv.ModelSpec.from_file(study / "spec.yaml").variables[0].scale_factor == meta["scale_factor"]


def test_train_computes_it_too_and_the_run_records_it(study):
    from metavoxel.training import TrainConfig
    from metavoxel.workflows.train import train_run

    lines = []
    config = TrainConfig(steps=1, batch_size=2, val_every=1, checkpoint_every=1, warmup_steps=0)
    train_run(study / "spec.yaml", study / "cohort.tsv", study / "run", config, report=lines.append)
    recorded = json.loads((study / "vae" / "vae.json").read_text())["scale_factor"]
    assert recorded == pytest.approx(_expected_factor(study)[0], rel=1e-5)
    assert any("computed" in line for line in lines)
    saved = json.loads((study / "run" / "spec.json").read_text())["spec"]
    assert saved["variables"][0]["scale_factor"] == recorded and saved["variables"][0]["vae"]["channels"] == [8, 16]
    assert load_run(study / "run").variables["image"].scale_factor == recorded
