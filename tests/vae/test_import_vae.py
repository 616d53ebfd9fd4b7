"""`metavoxel import-vae`: the field's autoencoders, saved the way their bundles save them, come out as a metavoxel
VAE folder that encodes and decodes exactly as the MONAI module does, through `load_vae` and through an
``image_latent`` variable built from a spec pointing at the folder."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch
import yaml
from monai_bundles import core_bundle, generative_bundle, maisi_bundle, maisi_module

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.vae import import_vae, load_vae


def _volumes(shape, n=2, seed=1) -> torch.Tensor:
    return torch.rand(n, 1, *shape, generator=torch.Generator().manual_seed(seed))


def _same_numbers(module, vae, x) -> None:
    with torch.no_grad():
        mu, sigma = module.encode(x)
        mu2, sigma2 = vae.encode(x)
        assert torch.equal(mu, mu2) and torch.equal(sigma, sigma2)
        assert torch.equal(module.decode(mu), vae.decode(mu2))


def _latent_variable(folder, spec_dir, shape, **image):
    """The image_latent variable of a spec file in ``spec_dir`` whose weights name ``folder`` (no vae: given)."""
    spec = {"variables": [{"name": "image", "kind": "image_latent", "channels": 1, "shape": list(shape),
                           "weights": str(folder.relative_to(spec_dir)), **image},
                          {"name": "age", "kind": "continuous", "range": [40.0, 95.0]}],
            "diffusion": {"timesteps": 20, "sampling_steps": 2},
            "network": {"spatial_dims": len(shape), "channels": [8, 8], "attention_levels": [False, False],
                        "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8}}
    (spec_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mv.VAEInputWarning)  # the spec follows what the VAE expects
        loaded = mv.ModelSpec.from_file(spec_dir / "spec.yaml")
    return loaded, mv.JointModel(loaded).variables["image"]


def _encodes_like(variable, module, x, factor) -> None:
    with torch.no_grad():
        z = variable.encode(x)
        assert torch.equal(z, module.encode(x)[0] * factor)
        assert torch.equal(variable.decode(z), module.decode(z / factor))


def test_a_generative_models_bundle_with_old_key_names(tmp_path, capsys):
    bundle, module = generative_bundle(tmp_path / "bundle")
    out = tmp_path / "vae"
    assert run(["import-vae", str(bundle), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "GenerativeModels key names mapped" in printed and "tiny_generative_ldm 0.4.2" in printed
    vae, meta = load_vae(out)
    _same_numbers(module, vae, _volumes((16, 16, 16)))
    assert meta["version"] == 2 and meta["scale_factor"] is None
    assert meta["architecture"]["network"] == "AutoencoderKL" and meta["architecture"]["channels"] == [8, 16]
    p = meta["provenance"]
    weights = bundle / "models" / "model_autoencoder.pt"
    assert (p["key_names"], p["weights_file"], p["target"], p["bundle_version"]) == (
        "GenerativeModels", "models/model_autoencoder.pt", "generative.networks.nets.AutoencoderKL", "0.4.2")
    assert p["weights_file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert p["command"].startswith("metavoxel import-vae ") and p["imported"].endswith("+00:00")
    e = meta["expects"]  # the inference config holding the network wins over the training config's spacing
    assert (e["shape"], e["spacing"], e["orientation"]) == ([16, 16, 16], [1.5, 1.5, 1.5], "RAS")
    assert e["intensity"] == {"method": "percentiles", "percentiles": [0.0, 99.5], "range": [0.0, 1.0],
                              "window": None, "clip": False}
    assert "Spacingd" in e["sources"]["spacing"] and "inference.json" in e["sources"]["spacing"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "vae"]  # no staging folder left

    spec, image = _latent_variable(out, tmp_path, (16, 16, 16), scale_factor=0.5,
                                   preprocess={"spacing": [1.5, 1.5, 1.5], "percentiles": [0.0, 99.5]})
    assert spec.variables[0].vae.channels == [8, 16] and spec.variables[0].vae.nonlocal_attention == (True, True)
    _encodes_like(image, module, _volumes((16, 16, 16)), 0.5)


def test_a_monai_core_bundle_in_yaml_with_a_checkpoint_dict(tmp_path):
    bundle, module = core_bundle(tmp_path / "brain_ldm")
    result = import_vae(bundle, tmp_path / "vae")
    p = result.provenance
    assert (p["key_names"], p["weights_file"], p["state_key"], p["bundle"], p["bundle_version"]) == (
        "MONAI", "models/autoencoder.pt", "state_dict", "brain_ldm", "1.0.0")  # not the diffusion model's file
    assert p["config"] == "configs/inference.yaml" and p["network"] == "autoencoder_def"
    assert result.expects.shape == [16, 24] and result.expects.intensity.range == (0.0, 1.0)
    assert "metadata.json" in result.expects.sources["shape"]
    vae, meta = load_vae(tmp_path / "vae")
    assert meta["spatial_dims"] == 2
    _same_numbers(module, vae, _volumes((16, 24)))
    _spec, image = _latent_variable(tmp_path / "vae", tmp_path, (16, 24), scale_factor=2.0)
    _encodes_like(image, module, _volumes((16, 24)), 2.0)


def test_a_bundle_named_by_a_relative_path_from_its_parent_folder(tmp_path, monkeypatch, capsys):
    """As docs/vae.md types it: `import-vae bundles/NAME` from the folder holding bundles/ (the weights path the
    config builds from bundle_root is not joined onto the bundle folder twice)."""
    core_bundle(tmp_path / "bundles" / "brain_ldm")
    monkeypatch.chdir(tmp_path)
    assert run(["import-vae", "bundles/brain_ldm", "--out", "vae"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "vae" / "vae.json").read_text())["provenance"]["weights_file"] == "models/autoencoder.pt"


def test_a_maisi_bundle_picks_the_image_autoencoder(tmp_path):
    bundle, module = maisi_bundle(tmp_path / "maisi")
    result = import_vae(bundle, tmp_path / "vae")
    assert result.provenance["weights_file"] == "models/autoencoder_epoch273.pt"  # not the mask autoencoder's
    assert result.spec.network == "AutoencoderKlMaisi"
    assert (result.spec.num_splits, result.spec.dim_split, result.spec.norm_float16) == (2, 1, False)
    vae, _meta = load_vae(tmp_path / "vae")
    _same_numbers(module, vae, _volumes((16, 16, 16)))
    _spec, image = _latent_variable(tmp_path / "vae", tmp_path, (16, 16, 16), scale_factor=1.25)
    _encodes_like(image, module, _volumes((16, 16, 16)), 1.25)


def test_a_maisi_config_with_safetensors_weights_and_float16_norms(tmp_path):
    """MAISI keeps its arguments in configs/config_maisi.json; its float16 group norms run under CUDA autocast
    there and here also in float32 on the CPU, within float16 rounding of MONAI's own autocast result."""
    from safetensors.torch import save_file

    bundle, _ = maisi_bundle(tmp_path / "maisi")
    module = maisi_module(norm_float16=True)
    save_file(module.state_dict(), str(tmp_path / "autoencoder.safetensors"))
    assert run(["import-vae", str(bundle / "configs" / "config_maisi.json"), "--weights",
                str(tmp_path / "autoencoder.safetensors"), "--out", str(tmp_path / "vae")]) == 0
    vae, meta = load_vae(tmp_path / "vae")
    assert meta["architecture"]["norm_float16"] is True and meta["architecture"]["num_splits"] == 2
    assert meta["provenance"]["source"] == "config" and meta["provenance"]["bundle"] == "tiny_maisi"
    x = _volumes((16, 16, 16))
    with torch.no_grad():
        mu = vae.encode(x)[0]
        with torch.autocast("cpu", dtype=torch.float16):
            reference = module.encode(x)[0].float()
        assert mu.dtype == torch.float32
        torch.testing.assert_close(mu, reference, atol=2e-2, rtol=2e-2)
        assert vae.decode(mu).dtype == torch.float32


def test_the_spec_records_the_resolved_architecture_and_a_run_rebuilds_without_the_folder(tmp_path):
    import shutil

    bundle, _ = maisi_bundle(tmp_path / "maisi")
    import_vae(bundle, tmp_path / "vae")
    spec, _image = _latent_variable(tmp_path / "vae", tmp_path, (16, 16, 16), scale_factor=1.0)
    saved = spec.to_dict()
    shutil.rmtree(tmp_path / "vae")
    rebuilt = mv.JointModel(mv.ModelSpec.from_dict(saved), load_weights=False)  # as load_run builds it
    assert rebuilt.spec.variables[0].vae.network == "AutoencoderKlMaisi"
    assert type(rebuilt.variables["image"].vae).__name__ == "AutoencoderKlMaisi"


def test_v1_folders_still_load_and_other_versions_are_refused(tmp_path):
    """A train-vae folder written before version 2 (no network, expects or provenance) reads as it is."""
    from metavoxel.vae import save_vae
    from metavoxel.vae.architecture import VAESpec, build_vae

    old_fields = {"channels": [4, 4], "latent_channels": 2, "num_res_blocks": 1, "attention_levels": None,
                  "norm_num_groups": 4, "nonlocal_attention": False}
    torch.manual_seed(0)
    module = build_vae(3, 1, VAESpec(**old_fields)).eval()
    save_vae(tmp_path / "vae", module, VAESpec(**old_fields))
    meta = json.loads((tmp_path / "vae" / "vae.json").read_text())
    (tmp_path / "vae" / "vae.json").write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(mv.CheckpointError, match=r"format version 3, this metavoxel reads version 1 or 2"):
        load_vae(tmp_path / "vae")
    v1 = {k: v for k, v in meta.items() if k not in ("expects", "provenance")}
    (tmp_path / "vae" / "vae.json").write_text(json.dumps({**v1, "version": 1, "architecture": old_fields}))
    vae, loaded = load_vae(tmp_path / "vae")
    assert loaded["scale_factor"] == 1.0
    _same_numbers(module, vae, _volumes((8, 8, 8)))
