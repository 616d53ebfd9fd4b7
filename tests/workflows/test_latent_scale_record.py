"""Everything that changes a latent is in its cache key, and the latent scale factor comes from the VAE's own
record; a spec's relative paths start at the spec file's folder, not the current directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from tiny_specs import tiny_latent_spec_3d

from metavoxel.errors import SpecError
from metavoxel.spec import ModelSpec
from metavoxel.vae import VAEReport, save_vae
from metavoxel.vae.architecture import VAESpec, build_vae


def _spec(**image) -> dict:
    spec = tiny_latent_spec_3d()
    spec["variables"][0].update(image)
    return spec


@pytest.fixture
def vae_run(tmp_path) -> Path:
    """A spec folder with a train-vae output in vae/ (scale factor 1.75 recorded)."""
    arch = VAESpec(**tiny_latent_spec_3d()["variables"][0]["vae"])
    torch.manual_seed(0)
    report = VAEReport(steps=1, final={"loss": 0.1}, val={}, scale_factor=1.75, latent_std=1 / 1.75,
                       perceptual=False, history=[])
    save_vae(tmp_path / "specs" / "vae", build_vae(3, 1, arch), arch.model_dump(), report)
    return tmp_path / "specs"


def _write(folder: Path, spec: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_factor_is_read_from_the_vae_run_and_paths_start_at_the_spec(vae_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = ModelSpec.from_file(_write(vae_run, _spec(weights="vae/vae.safetensors")))
    image = spec.variables[0]
    assert image.weights == str((vae_run / "vae" / "vae.safetensors").resolve())
    assert image.scale_factor == 1.75
    import metavoxel as mv

    assert mv.JointModel(spec).variables["image"].scale_factor == 1.75  # the VAE weights load from there too


@pytest.mark.parametrize("given, ok", [(1.75, True), (1.7500, True), (1.0, False), (8.75, False)])
def test_a_factor_that_disagrees_with_the_record_is_refused(vae_run, given, ok):
    path = _write(vae_run, _spec(weights="vae/vae.safetensors", scale_factor=given))
    if ok:
        assert ModelSpec.from_file(path).variables[0].scale_factor == given
        return
    with pytest.raises(SpecError, match=r"scale_factor .* disagrees with 1\.7500 recorded in .*vae\.json"):
        ModelSpec.from_file(path)


def test_a_stored_runs_spec_is_not_checked_against_a_later_vae(vae_run):
    weights = str(vae_run / "vae" / "vae.safetensors")
    spec = ModelSpec.from_dict(_spec(weights=weights, scale_factor=1.0))  # e.g. the VAE was retrained since
    assert spec.variables[0].scale_factor == 1.0


def test_weights_without_a_record_need_the_factor(tmp_path):
    from safetensors.torch import save_file

    import metavoxel as mv

    arch = VAESpec(**tiny_latent_spec_3d()["variables"][0]["vae"])
    save_file(build_vae(3, 1, arch).state_dict(), str(tmp_path / "weights.safetensors"))
    with pytest.raises(SpecError, match="scale_factor is not given and there is no vae.json"):
        mv.JointModel(ModelSpec.from_file(_write(tmp_path, _spec(weights="weights.safetensors"))))
    assert mv.JointModel(_spec(weights=str(tmp_path / "weights.safetensors"), scale_factor=2.0))


def test_a_new_scale_factor_encodes_again(tmp_path):
    from metavoxel.workflows.vae import encode_run

    rng = np.random.default_rng(0)
    rows = ["participant_id\timage\tage\tsex"]
    for k in range(2):
        nib.save(nib.Nifti1Image(rng.random((8, 8, 8)).astype(np.float32), np.eye(4)), str(tmp_path / f"{k}.nii.gz"))
        rows.append(f"sub-{k}\t{k}.nii.gz\t60\tF")
    (tmp_path / "cohort.tsv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "latents"
    first = encode_run(ModelSpec.from_dict(_spec(scale_factor=1.0)), tmp_path / "cohort.tsv", cache)
    again = encode_run(ModelSpec.from_dict(_spec(scale_factor=1.0)), tmp_path / "cohort.tsv", cache)
    other = encode_run(ModelSpec.from_dict(_spec(scale_factor=5.0)), tmp_path / "cohort.tsv", cache)
    assert (first["cached_before"], again["cached_before"], other["cached_before"]) == (0, 2, 0)
    index = json.loads((cache / "index.json").read_text())["entries"]
    assert len(index) == 4  # two images × two encoders
    from metavoxel.vae import LatentCache
    from metavoxel.workflows.encode import cache_key

    import metavoxel as mv

    keys = [cache_key(mv.JointModel(_spec(scale_factor=f)).variables["image"]) for f in (1.0, 5.0)]
    one, five = (LatentCache(cache).get(tmp_path / "0.nii.gz", key) for key in keys)
    torch.testing.assert_close(five, 5.0 * one)


def test_the_key_changes_with_everything_that_changes_a_latent():
    import metavoxel as mv
    from metavoxel.workflows.encode import cache_key

    base = _spec(scale_factor=1.0)
    variants = [base, _spec(scale_factor=2.0), _spec(scale_factor=1.0, preprocess={"spacing": [2.0] * 3})]
    arch = copy.deepcopy(base)
    arch["variables"][0]["vae"]["norm_num_groups"] = 2  # same weight shapes, other latents
    variants.append(arch)
    keys = {cache_key(mv.JointModel(v).variables["image"]) for v in variants}
    assert len(keys) == len(variants)
    assert cache_key(mv.JointModel(base).variables["image"]) == cache_key(mv.JointModel(base).variables["image"])
