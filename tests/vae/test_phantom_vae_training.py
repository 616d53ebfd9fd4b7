"""benchmarks/phantom_vae: the training's architecture is an option, recorded, held on resume, and read back by the
evaluation (a learning-curve experiment with a wider latent must not be judged with the shipped architecture)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("train", "evaluate", "data")


@pytest.fixture()
def scripts():
    """benchmarks/phantom_vae's train and evaluate modules, imported under their own names and then forgotten."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "phantom_vae"))
    saved = {name: sys.modules.pop(name) for name in SCRIPTS if name in sys.modules}
    try:
        yield importlib.import_module("train"), importlib.import_module("evaluate")
    finally:
        sys.path.remove(str(ROOT / "benchmarks" / "phantom_vae"))
        for name in SCRIPTS:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


class _Stop(Exception):
    pass


def test_a_wider_latent_is_trained_recorded_refused_on_resume_and_evaluated_with_its_own_architecture(
        scripts, tmp_path, monkeypatch, capsys):
    train, evaluate = scripts
    out = tmp_path / "latent16"
    built = {}

    def no_training(vae, *args, **kwargs):  # the step itself is metavoxel.vae.train_vae's (tested there)
        built["latent"] = vae.encode(torch.rand(1, 1, 32, 32, 32))[0].shape
        raise _Stop

    monkeypatch.setattr(train, "train_vae", no_training)
    monkeypatch.setattr(train, "check_matches_preprocessing", lambda volumes: 0.0)  # NIfTI reading: tested in data
    command = ["train.py", "--out", str(out), "--val-subjects", "1", "--stop-after", "recon"]
    monkeypatch.setattr(sys, "argv", [*command, "--latent-channels", "16"])
    with pytest.raises(_Stop):
        train.main()
    assert built["latent"] == (1, 16, 8, 8, 8)
    record = json.loads((out / "train.json").read_text())
    assert record["architecture"] == {**train.ARCHITECTURE, "latent_channels": 16}

    # the same folder with the shipped architecture (the default) is refused before anything is trained
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit, match="another architecture"):
        train.main()
    assert train.ARCHITECTURE["latent_channels"] == 8

    # a snapshot of that training is rebuilt with the architecture it recorded
    from safetensors.torch import save_file

    from metavoxel.vae.architecture import VAESpec, build_vae

    (out / "snapshots").mkdir(exist_ok=True)  # train.py made it
    torch.manual_seed(0)
    vae = build_vae(3, 1, VAESpec(**record["architecture"])).eval()
    save_file(vae.state_dict(), str(out / "snapshots" / "recon-000250.safetensors"))
    loaded = evaluate.load_snapshot(out / "snapshots" / "recon-000250.safetensors")
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x)[0], vae.encode(x)[0])
        stats = evaluate.latent_stats(loaded, x)
    assert stats["numbers"] == 16 * 8 ** 3 and stats["image_numbers"] == 32 ** 3
    assert stats["scale_factor"] == pytest.approx(1 / stats["std"])


def test_channel_counts_the_network_cannot_take_are_refused_in_one_line(scripts, tmp_path, monkeypatch):
    train, _ = scripts
    monkeypatch.setattr(sys, "argv", ["train.py", "--out", str(tmp_path / "x"), "--channels", "16,30,64"])
    with pytest.raises(SystemExit, match="divisible by norm_num_groups=8; choose other channel counts"):
        train.main()
    assert not (tmp_path / "x").exists()


def test_the_overfitting_test_trains_on_fixed_brains_measures_them_and_keeps_its_data_on_resume(
        scripts, tmp_path, monkeypatch):
    train, evaluate = scripts
    out = tmp_path / "overfit"
    seen = {}

    def one_validation(vae, train_images, val_images, config, *, progress, **kwargs):
        seen["train"] = train_images.clone()
        progress(1, config.steps, {"l1": 0.1, "adv_g": 0.0, "val_psnr": 20.0, "val_ssim": 0.5})
        raise _Stop

    monkeypatch.setattr(train, "train_vae", one_validation)
    monkeypatch.setattr(train, "check_matches_preprocessing", lambda volumes: 0.0)
    command = ["train.py", "--out", str(out), "--val-subjects", "1", "--stop-after", "recon", "--snapshot-every", "5"]
    monkeypatch.setattr(sys, "argv", [*command, "--train-subjects", "2"])
    with pytest.raises(_Stop):
        train.main()
    # the same two brains every epoch: the first two training brains, one of each phantom
    assert torch.equal(seen["train"], evaluate.training_brains(2))
    rows = [json.loads(line) for line in (out / "recon" / "fit.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and 0 < rows[0]["psnr"] < 60 and 0 <= rows[0]["ssim"] <= 1
    assert json.loads((out / "train.json").read_text())["train_subjects"] == 2

    # resuming on other data (fresh brains, the default) is refused before anything is trained
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit, match="other data"):
        train.main()


def test_the_robust_phase_joins_a_finished_training_and_trains_the_decoder_alone_on_noisy_latents(
        scripts, tmp_path, monkeypatch):
    """`--robust-steps`/`--first-phase`: a later phase may join a training whose phases are done (its settings are
    held), it runs with the encoder frozen and `--latent-noise`, and asking for no phase is refused in one line."""
    train, _ = scripts
    out = tmp_path / "vae"
    trained = []

    def record_only(vae, train_images, val_images, config, **kwargs):
        trained.append(config)
        return _report(config.steps)

    monkeypatch.setattr(train, "train_vae", record_only)
    monkeypatch.setattr(train, "check_matches_preprocessing", lambda volumes: 0.0)
    monkeypatch.setattr(train, "save_vae", lambda folder, vae, spec, report: _saved(folder))
    monkeypatch.setattr(sys, "argv", ["train.py", "--out", str(out), "--val-subjects", "1", "--recon-steps", "2",
                                      "--finish-steps", "2"])
    train.main()
    assert [c.train_encoder for c in trained] == [True, True] and {c.latent_noise for c in trained} == {0.0}

    monkeypatch.setattr(sys, "argv", ["train.py", "--out", str(out), "--val-subjects", "1", "--recon-steps", "2",
                                      "--finish-steps", "2", "--robust-steps", "3", "--latent-noise", "0.25"])
    train.main()
    robust = trained[-1]
    assert len(trained) == 3 and robust.steps == 3 and robust.latent_noise == 0.25 and not robust.train_encoder
    assert set(json.loads((out / "train.json").read_text())["phases"]) == {"recon", "finish", "robust"}

    monkeypatch.setattr(sys, "argv", ["train.py", "--out", str(tmp_path / "none"), "--first-phase", "robust"])
    with pytest.raises(SystemExit, match="no phase to train"):
        train.main()


def _report(steps):
    from metavoxel.vae.report import VAEReport

    return VAEReport(steps=steps, final={}, val={"psnr": 20.0, "ssim": 0.5}, scale_factor=1.0, latent_std=1.0,
                     perceptual=False, history=[], seconds=0.0)


def _saved(folder):
    """What save_vae leaves for train.py to see: a folder with vae.json, holding the weights of a fresh network."""
    import train as script

    from metavoxel.vae import save_vae
    from metavoxel.vae.architecture import VAESpec, build_vae

    spec = VAESpec(**script.ARCHITECTURE)
    save_vae(folder, build_vae(3, 1, spec), spec, _report(1))
