"""save_vae / load_vae / weights_hash: an exact round trip, and one-line refusals of anything that does
not match."""

from __future__ import annotations

import json

import pytest
import torch
from metavoxel.vae.architecture import VAESpec, build_vae
from safetensors.torch import load_file, save_file

from metavoxel.errors import CheckpointError, InputError
from metavoxel.vae import VAEReport, load_vae, save_vae, weights_hash


def _report() -> VAEReport:
    return VAEReport(steps=3, final={"loss": 0.1, "l1": 0.09}, val={"l1": 0.05, "psnr": 24.0, "ssim": float("inf")},
                     scale_factor=1.75, latent_std=1 / 1.75, perceptual=False, history=[{"step": 1.0}])


def _one_line_error(directory, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_vae(directory)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def saved(tmp_path, tiny_vae, tiny_spec):
    directory = tmp_path / "vae"
    save_vae(directory, tiny_vae, tiny_spec.model_dump(), _report())
    return directory


def test_round_trip_gives_identical_outputs_and_leaves_no_temp_files(saved, tiny_vae):
    assert sorted(p.name for p in saved.iterdir()) == ["vae.json", "vae.safetensors"]
    loaded, meta = load_vae(saved)
    x = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, sigma = tiny_vae.eval().encode(x)
        mu2, sigma2 = loaded.encode(x)
        assert torch.equal(mu, mu2) and torch.equal(sigma, sigma2)
        assert torch.equal(tiny_vae.decode(mu), loaded.decode(mu2))
    assert not loaded.training
    assert meta["scale_factor"] == 1.75 and meta["metrics"]["val"]["psnr"] == 24.0
    assert meta["metrics"]["val"]["ssim"] is None  # non-finite numbers are stored as null, JSON stays strict
    assert meta["architecture"]["latent_channels"] == 2 and meta["spatial_dims"] == 3 and meta["channels"] == 1
    assert meta["weights_sha256"] == weights_hash(tiny_vae) == weights_hash(loaded)


def test_weights_hash_changes_with_any_weight_and_only_then(tiny_vae, tiny_spec):
    before = weights_hash(tiny_vae)
    assert weights_hash(tiny_vae) == before == weights_hash(tiny_vae.state_dict())
    with torch.no_grad():
        next(iter(tiny_vae.parameters())).view(-1)[0] += 1e-6
    changed = weights_hash(tiny_vae)
    assert changed != before
    torch.manual_seed(5)
    assert weights_hash(build_vae(3, 1, tiny_spec)) not in (before, changed)


def test_json_mismatch_is_refused(saved):
    meta = json.loads((saved / "vae.json").read_text())
    meta["architecture"]["latent_channels"] = 3
    (saved / "vae.json").write_text(json.dumps(meta))
    _one_line_error(saved, "does not fit the architecture.*shape")

    meta["architecture"]["latent_channels"] = 2
    meta["architecture"]["norm_num_groups"] = 3  # not a divisor of the channels
    (saved / "vae.json").write_text(json.dumps(meta))
    _one_line_error(saved, "architecture does not validate")

    meta["architecture"]["norm_num_groups"] = 4
    meta["scale_factor"] = -1
    (saved / "vae.json").write_text(json.dumps(meta))
    _one_line_error(saved, "'scale_factor'")

    meta["scale_factor"], meta["format"] = 1.0, "something-else"
    (saved / "vae.json").write_text(json.dumps(meta))
    _one_line_error(saved, "not a metavoxel VAE checkpoint")

    (saved / "vae.json").write_text("{not json")
    _one_line_error(saved, "not readable JSON")


def test_weights_that_do_not_fit_or_were_swapped_are_refused(saved, tiny_spec):
    other = build_vae(3, 1, VAESpec(**{**tiny_spec.model_dump(), "latent_channels": 4}))
    original = load_file(str(saved / "vae.safetensors"))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(saved / "vae.safetensors"))
    message = _one_line_error(saved, "does not fit the architecture")
    assert "has shape" in message

    tampered = dict(original)
    key = sorted(tampered)[0]
    tampered[key] = tampered[key] + 1
    save_file(tampered, str(saved / "vae.safetensors"))
    _one_line_error(saved, "sha256")

    (saved / "vae.safetensors").write_bytes(b"\x00" * 10)
    _one_line_error(saved, "not a readable .safetensors")
    (saved / "vae.safetensors").unlink()
    _one_line_error(saved, "no vae.safetensors")


def test_missing_folder_and_wrong_spec(tmp_path, tiny_vae, tiny_spec):
    _one_line_error(tmp_path / "nowhere", "no vae.json")
    with pytest.raises(InputError, match="does not match vae_spec"):
        save_vae(tmp_path / "x", tiny_vae, {**tiny_spec.model_dump(), "channels": [8, 8]})
    with pytest.raises(InputError, match="does not validate"):
        save_vae(tmp_path / "x", tiny_vae, {**tiny_spec.model_dump(), "typo": 1})
    assert not (tmp_path / "x").exists()


def test_resave_replaces_atomically(saved, tiny_vae, tiny_spec):
    with torch.no_grad():
        next(iter(tiny_vae.parameters())).view(-1)[0] += 1.0
    save_vae(saved, tiny_vae, tiny_spec, None)
    loaded, meta = load_vae(saved)
    assert meta["weights_sha256"] == weights_hash(tiny_vae) and meta["scale_factor"] == 1.0
    assert sorted(p.name for p in saved.iterdir()) == ["vae.json", "vae.safetensors"]
