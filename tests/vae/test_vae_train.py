"""train_vae: the MAISI objective on tiny 3D blobs — reconstruction learns, the adversary waits for
adv_start, the metrics and the scale factor are what they claim, perceptual weights are the user's."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from monai.networks.nets import PatchDiscriminator
from safetensors.torch import save_file

from metavoxel.errors import CheckpointError, InputError
from metavoxel.vae import PERCEPTUAL_OFF_MESSAGE, VAETrainConfig, build_feature_network, train_vae

FAST = {"batch_size": 4, "lr": 2e-3, "disc_layers": 2, "disc_channels": 8}


def _config(**overrides) -> VAETrainConfig:
    return VAETrainConfig(**{**FAST, **overrides})


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


def test_reconstruction_learns_and_adversary_waits_for_adv_start(tiny_vae, blob_data):
    train, val = blob_data
    adv_start = 12
    disc = PatchDiscriminator(spatial_dims=3, num_layers_d=2, channels=8, in_channels=1, out_channels=1,
                              norm="INSTANCE")
    snapshots = [_flat(disc)]
    report = train_vae(tiny_vae, train, val, _config(steps=24, adv_start=adv_start, val_every=100),
                       discriminator=disc, progress=lambda step, steps, record: snapshots.append(_flat(disc)))

    l1 = [h["l1"] for h in report.history]
    assert sum(l1[-3:]) / 3 < 0.5 * sum(l1[:3]) / 3, l1
    assert all(h["adv_g"] == 0.0 and h["adv_d"] == 0.0 for h in report.history[:adv_start])
    assert all(h["adv_g"] > 0.0 and h["adv_d"] > 0.0 for h in report.history[adv_start:])
    # snapshots[i] is after step i (1-based): the discriminator moves first at step adv_start + 1
    assert all(torch.equal(snapshots[0], s) for s in snapshots[1:adv_start + 1])
    assert not torch.equal(snapshots[adv_start], snapshots[adv_start + 1])
    assert report.steps == 24 and len(report.history) == 24
    assert report.final == {k: v for k, v in report.history[-1].items() if k not in ("step", "lr") and "val" not in k}
    assert report.val == {k.removeprefix("val_"): v for k, v in report.history[-1].items() if "val" in k}


def test_metrics_and_scale_factor_match_a_recomputation(tiny_vae, blob_data):
    train, val = blob_data
    report = train_vae(tiny_vae, train, val, _config(steps=10, adv_start=100, val_every=5))

    assert [h["step"] for h in report.history if "val_psnr" in h] == [5.0, 10.0]
    assert math.isfinite(report.val_psnr) and report.val_psnr > 5
    assert math.isfinite(report.val_ssim) and 0 < report.val_ssim <= 1
    assert not tiny_vae.training
    with torch.no_grad():
        mu_train = tiny_vae.encode(train)[0]
        mu_val = tiny_vae.encode(val)[0]
        x_hat = tiny_vae.decode(mu_val).clamp(0, 1)
    assert report.latent_std == pytest.approx(mu_train.double().std().item(), rel=1e-5)
    assert report.scale_factor == pytest.approx(1.0 / mu_train.double().std().item(), rel=1e-5)
    mse = ((x_hat - val) ** 2).flatten(1).mean(1)  # (N,)
    assert report.val_psnr == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), rel=1e-4)
    assert report.val["l1"] == pytest.approx((x_hat - val).abs().mean().item(), rel=1e-4)


def test_same_seed_same_run_and_datasets_work_like_tensors(tiny_spec, blob_data):
    from metavoxel.vae.architecture import build_vae

    train, val = blob_data
    runs = []
    for images in (train, [train[i] for i in range(len(train))]):  # a tensor, then a list "dataset"
        torch.manual_seed(3)
        vae = build_vae(3, 1, tiny_spec)
        runs.append(train_vae(vae, images, val, _config(steps=4, adv_start=2, val_every=4, seed=7)).history)
    assert runs[0] == runs[1]


def test_perceptual_off_without_weights_says_so_once(tiny_vae, blob_data, caplog):
    train, val = blob_data
    with caplog.at_level(logging.WARNING, logger="metavoxel.vae"):
        report = train_vae(tiny_vae, train, None, _config(steps=2, adv_start=100))
    lines = [r.getMessage() for r in caplog.records if "perceptual" in r.getMessage()]
    assert lines == [PERCEPTUAL_OFF_MESSAGE]
    assert "never downloads" in lines[0] and "--perceptual-weights" in lines[0]
    assert report.perceptual is False and all(h["perceptual"] == 0.0 for h in report.history)
    assert report.val == {} and report.val_psnr is None


def test_perceptual_on_with_user_supplied_safetensors(tiny_vae, blob_data, tmp_path, caplog):
    train, _val = blob_data
    torch.manual_seed(0)
    weights = tmp_path / "resnet10.safetensors"
    save_file({k: v.contiguous() for k, v in build_feature_network("resnet10").state_dict().items()}, str(weights))
    with caplog.at_level(logging.WARNING, logger="metavoxel.vae"):
        report = train_vae(tiny_vae, train, None, _config(steps=2, adv_start=100, perceptual_weights=weights))
    assert report.perceptual is True
    assert all(h["perceptual"] > 0.0 for h in report.history)
    assert all(h["loss"] > h["l1"] + 1e-6 * h["kl"] for h in report.history)  # the term enters the loss
    assert not [r for r in caplog.records if "perceptual" in r.getMessage()]


def test_perceptual_weights_must_exist_and_fit(tiny_vae, blob_data, tmp_path):
    train, _val = blob_data
    with pytest.raises(InputError, match="do not exist"):
        train_vae(tiny_vae, train, None, _config(steps=1, perceptual_weights=tmp_path / "missing.safetensors"))
    partial = tmp_path / "partial.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 1, 7, 7, 7)}, str(partial))
    with pytest.raises(CheckpointError, match="missing tensors") as info:
        train_vae(tiny_vae, train, None, _config(steps=1, perceptual_weights=partial))
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable"):
        train_vae(tiny_vae, train, None, _config(steps=1, perceptual_weights=garbage))


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_where_not(tiny_vae, blob_data, monkeypatch):
    train, val = blob_data
    before = _flat(tiny_vae)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(InputError, match="bf16.*CPU with bf16 instructions"):
        train_vae(tiny_vae, train, val, _config(steps=1, precision="bf16"), device="cpu")
    assert torch.equal(before, _flat(tiny_vae))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    report = train_vae(tiny_vae, train, val, _config(steps=2, adv_start=100, precision="bf16"), device="cpu")
    assert math.isfinite(report.val_psnr) and not torch.equal(before, _flat(tiny_vae))


def test_a_resumed_training_ends_as_one_that_never_stopped(tiny_spec, blob_data, tmp_path):
    """Weights, both optimisers, the batch order, the crops and the posterior noise all continue exactly."""
    from metavoxel.vae.architecture import build_vae

    train, val = blob_data
    settings = {"adv_start": 3, "val_every": 2, "checkpoint_every": 2, "patch_size": [8, 8, 8], "batch_size": 3,
                "disc_layers": 1}

    def fresh():
        torch.manual_seed(5)
        return build_vae(3, 1, tiny_spec)

    def losses(history):  # the stopped run also validated at its last step, as every run does
        return [{k: v for k, v in row.items() if not k.startswith("val_")} for row in history]

    whole, again = fresh(), fresh()
    straight = train_vae(whole, train, val, _config(steps=6, **settings))
    train_vae(fresh(), train, val, _config(steps=3, **settings), state_dir=tmp_path / "state")
    resumed = train_vae(again, train, val, _config(steps=6, **settings), state_dir=tmp_path / "state", resume=True)
    assert losses(resumed.history) == losses(straight.history) and resumed.val == straight.val
    assert torch.equal(_flat(again), _flat(whole)) and resumed.scale_factor == straight.scale_factor
    with pytest.raises(InputError, match=r"other settings \(lr 0.002 -> 0.001\)"):
        train_vae(fresh(), train, val, _config(steps=6, **{**settings, "lr": 1e-3}), state_dir=tmp_path / "state",
                  resume=True)
    with pytest.raises(CheckpointError, match="no training state to resume"):
        train_vae(fresh(), train, val, _config(steps=6, **settings), state_dir=tmp_path / "none", resume=True)


@pytest.mark.parametrize(("images", "message"), [
    (torch.rand(2, 1, 16, 16, 16) * 2, "intensities must lie in"),
    (torch.rand(2, 1, 15, 16, 16), "divisible by the VAE downsampling factor 2"),
    (torch.rand(2, 2, 16, 16, 16), "do not fit a 3D VAE with 1 input channel"),
    (torch.rand(16, 16, 16), "expected a tensor"),
])
def test_bad_images_are_refused(tiny_vae, images, message):
    with pytest.raises(InputError, match=message):
        train_vae(tiny_vae, images, None, _config(steps=1))


def test_patches_and_discriminator_size_are_checked(tiny_vae, blob_data):
    train, _val = blob_data
    with pytest.raises(InputError, match="disc_layers=3 needs training volumes of at least 24"):
        train_vae(tiny_vae, train, None, _config(steps=2, adv_start=0, disc_layers=3))
    with pytest.raises(InputError, match="patch_size"):
        train_vae(tiny_vae, train, None, _config(steps=1, patch_size=[8, 8, 7]))
    report = train_vae(tiny_vae, train, None, _config(steps=2, adv_start=100, patch_size=[8, 8, 8]))
    assert report.steps == 2 and math.isfinite(report.scale_factor)


def test_config_is_strict():
    with pytest.raises(ValueError, match="extra"):
        VAETrainConfig(step=3)
    with pytest.raises(ValueError, match="perceptual_weight is 0"):
        VAETrainConfig(perceptual_weights="w.safetensors", perceptual_weight=0)
    assert VAETrainConfig().lr == 1e-4 and VAETrainConfig().kl_weight == 1e-6


def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    from metavoxel.vae.config import learning_rate_factor

    config = _config(steps=10, warmup_steps=2, lr_schedule="cosine")
    factors = [learning_rate_factor(config, i) for i in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]  # warm-up, then the top of the cosine
    assert all(a > b for a, b in zip(factors[2:], factors[3:]))  # strictly decreasing after the warm-up
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert [learning_rate_factor(_config(steps=4), i) for i in range(4)] == [1.0] * 4
    with pytest.raises(ValueError, match="lr_schedule"):
        VAETrainConfig(lr_schedule="linear")


def test_the_learning_rate_each_step_used_is_recorded(tiny_vae, blob_data):
    train, val = blob_data
    report = train_vae(tiny_vae, train, None, _config(steps=3, adv_start=1, lr_schedule="cosine"))
    assert [r["lr"] for r in report.history] == pytest.approx([2e-3, 2e-3 * 0.75, 2e-3 * 0.25])
    assert "lr" not in report.final and report.seconds > 0


def test_initial_log_var_starts_the_posterior_near_noise_free(tiny_vae, blob_data):
    train, _val = blob_data
    train_vae(tiny_vae, train, None, _config(steps=1, adv_start=100, initial_log_var=-10.0))
    with torch.no_grad():
        sigma = tiny_vae.encode(train)[1]
    assert float(sigma.max()) < 0.01  # exp(-10 / 2) = 0.0067, one step later
    with pytest.raises(InputError, match="initial_log_var needs a MONAI autoencoder"):
        train_vae(torch.nn.Linear(1, 1), train, None, _config(steps=1, initial_log_var=-10.0))


def test_latent_noise_reaches_the_decoder_scaled_per_image_up_to_its_bound(tiny_vae, blob_data):
    """`latent_noise`: decode sees z + u k SD(mu) eps with u ~ U(0, 1) per image, so the noise SD of each image lies
    within [0, k SD(mu)] and differs between images; at 0 the step is MONAI's own forward."""
    from metavoxel.vae.train import _reconstruct, _start_log_var

    train, _ = blob_data
    _start_log_var(tiny_vae, -12.0)  # the posterior near noise-free: what reaches decode is mu + the added noise
    seen = {}
    decode = tiny_vae.decode
    tiny_vae.decode = lambda z: seen.update(z=z) or decode(z)
    k = 0.5
    torch.manual_seed(0)
    _reconstruct(tiny_vae, train, _config(latent_noise=k, train_encoder=False))
    with torch.no_grad():
        mu, _ = tiny_vae.encode(train)
    dims = tuple(range(1, mu.dim()))
    ratio = (seen["z"] - mu).std(dim=dims) / mu.std(dim=dims)
    assert bool((ratio <= k * 1.15).all()) and float(ratio.max() - ratio.min()) > 0.05
    torch.manual_seed(0)
    plain = _reconstruct(tiny_vae, train, _config())[0]
    torch.manual_seed(0)
    assert torch.equal(plain, tiny_vae(train)[0])


def test_a_frozen_encoder_keeps_the_latent_space_while_the_decoder_learns(tiny_vae, blob_data, tmp_path):
    """`train_encoder=False`: the encoder and the posterior convolutions end bit for bit as they began (so a
    diffusion model trained in the latent stays valid); the decoder trains; and a training state written before
    these fields existed resumes with their defaults."""
    import json

    train, val = blob_data
    latent = [tiny_vae.encoder, tiny_vae.quant_conv_mu, tiny_vae.quant_conv_log_sigma]
    before, decoder = [_flat(m) for m in latent], _flat(tiny_vae.decoder)
    report = train_vae(tiny_vae, train, val, _config(steps=3, adv_start=1, latent_noise=0.3, train_encoder=False))
    assert all(torch.equal(_flat(m), b) for m, b in zip(latent, before))
    assert not torch.equal(_flat(tiny_vae.decoder), decoder) and math.isfinite(report.final["l1"])

    train_vae(tiny_vae, train, val, _config(steps=2), state_dir=tmp_path / "state")
    pointer = json.loads((tmp_path / "state" / "state.json").read_text())
    meta_path = tmp_path / "state" / pointer["dir"] / "state.json"
    meta = json.loads(meta_path.read_text())
    for field in ("latent_noise", "train_encoder"):
        del meta["config"][field]
    meta_path.write_text(json.dumps(meta))
    resumed = train_vae(tiny_vae, train, val, _config(steps=3), state_dir=tmp_path / "state", resume=True)
    assert resumed.steps == 3
