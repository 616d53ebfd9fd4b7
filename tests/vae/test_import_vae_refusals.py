"""What `metavoxel import-vae` refuses — one ``error:`` line, exit code 2, nothing written — and what a spec pointing
at an imported VAE may not contradict (its architecture, channels, the intensity range it was trained on) or is
warned about (grid, spacing, orientation)."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
import yaml
from monai_bundles import GENERATIVE_ARGS, core_bundle, generative_bundle, generative_monai_module, \
    generative_names, maisi_bundle

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.vae import import_vae


def _bad_pickle(state):
    return {"model": torch.nn.Linear(2, 2), "state": state}  # an object torch.load(weights_only=True) refuses


def _bundle(tmp_path, case: str):
    """A bundle (and extra CLI arguments) with one thing wrong."""
    root = tmp_path / "bundle"
    if case == "no config":
        (root / "models").mkdir(parents=True)
        return root, []
    if case == "unknown target":
        generative_bundle(root, arguments={"_target_": "monai.networks.nets.UNet"})
        return root, []
    if case == "argument of another class":
        channels = GENERATIVE_ARGS["num_channels"]
        generative_bundle(root, arguments={"channels": channels})
        return root, []
    if case == "missing tensors":
        state = generative_names(generative_monai_module().state_dict())
        generative_bundle(root, state={k: v for k, v in state.items() if "decoder.blocks.1." not in k})
        return root, []
    if case == "unexpected tensors":
        state = generative_names(generative_monai_module().state_dict())
        generative_bundle(root, state={**state, "discriminator.weight": torch.zeros(2)})
        return root, []
    if case == "shapes that do not fit":
        generative_bundle(root, state=generative_names(generative_monai_module(latent_channels=3).state_dict()))
        return root, []
    if case == "not a plain state dict":
        generative_bundle(root, weights=_bad_pickle(generative_monai_module().state_dict()))
        return root, []
    if case == "not a checkpoint":
        generative_bundle(root)
        (root / "models" / "model_autoencoder.pt").write_bytes(b"not a checkpoint")
        return root, []
    if case == "channels in and out differ":
        maisi_bundle(root)
        return root, ["--network", "mask_generation_autoencoder_def"]
    if case == "no weights named":
        core_bundle(root)
        config = root / "configs" / "inference.yaml"
        config.write_text(config.read_text().replace("$@load_autoencoder_func(torch.load(@load_autoencoder_path))",
                                                     "$None"))
        return root, []
    raise AssertionError(case)


CASES = {
    "no config": "has no configs/",
    "unknown target": r"_target_ 'monai.networks.nets.UNet' is not an autoencoder metavoxel imports",
    "argument of another class": r"takes no argument 'channels'",
    "missing tensors": r"do not fit the architecture the config declares \(\d+ missing tensors, e.g. "
                       r"'decoder.blocks.1.",
    "unexpected tensors": r"1 unexpected tensors \(e.g. 'discriminator.weight'\)",
    "shapes that do not fit": r"do not fit the architecture .*size mismatch",
    "not a plain state dict": r"is not a plain state dict: torch.load\(weights_only=True\) refuses the objects "
                              r"pickled in it \(it pickles torch.nn.modules.linear.Linear\)",
    "not a checkpoint": r"is not a readable PyTorch checkpoint",
    "channels in and out differ": r"maps 8 channels to 125; metavoxel needs an image autoencoder",
    "no weights named": r"loads no weights file into 'autoencoder_def' .*give it with --weights",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    bundle, extra = _bundle(tmp_path, case)
    out = tmp_path / "vae"
    assert run(["import-vae", str(bundle), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(CASES[case], err), err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging folder either


def test_an_existing_vae_folder_is_kept_without_overwrite(tmp_path, capsys):
    bundle, _ = generative_bundle(tmp_path / "bundle")
    out = tmp_path / "vae"
    assert run(["import-vae", str(bundle), "--out", str(out)]) == 0
    before = (out / "vae.json").read_text()
    assert run(["import-vae", str(bundle), "--out", str(out)]) == 2
    assert "already holds a VAE" in capsys.readouterr().err
    assert (out / "vae.json").read_text() == before
    assert run(["import-vae", str(bundle), "--out", str(out), "--overwrite", "--spacing", "1,1,1"]) == 0
    meta = json.loads((out / "vae.json").read_text())
    assert meta["provenance"]["command"].endswith("--spacing 1,1,1 --overwrite")
    assert meta["expects"]["spacing"] == [1.5, 1.5, 1.5]  # what the bundle's config states wins


def test_what_the_bundle_leaves_unstated_can_be_given(tmp_path, capsys):
    bundle, _ = core_bundle(tmp_path / "bundle")
    assert run(["import-vae", str(bundle), "--out", str(tmp_path / "vae"), "--spacing", "1,1",
                "--orientation", "ras"]) == 0
    assert "not stated" not in capsys.readouterr().out
    meta = json.loads((tmp_path / "vae" / "vae.json").read_text())["expects"]
    assert (meta["spacing"], meta["orientation"], meta["sources"]["spacing"]) == ([1.0, 1.0], "RAS",
                                                                                  "given to import-vae")
    assert run(["import-vae", str(bundle), "--out", str(tmp_path / "other"), "--orientation", "RAX"]) == 2
    assert "orientation 'RAX' must be axis codes" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def _spec_file(tmp_path, **image) -> str:
    image = {"scale_factor": 1.0, **image}
    image = {k: v for k, v in image.items() if not (k == "scale_factor" and v is None)}
    spec = {"variables": [{"name": "image", "kind": "image_latent", "channels": 1, "shape": [16, 16, 16],
                           "weights": "vae", **image}],
            "network": {"spatial_dims": 3, "channels": [8, 8], "attention_levels": [False, False],
                        "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 8}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def imported(tmp_path):
    bundle, _ = generative_bundle(tmp_path / "bundle")
    import_vae(bundle, tmp_path / "vae")
    return tmp_path


def _warnings(path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mv.ModelSpec.from_file(path)
    return [str(w.message) for w in caught if issubclass(w.category, mv.VAEInputWarning)]


def test_a_spec_that_contradicts_the_folder_is_refused_naming_the_field(imported):
    arch = {**{k: v for k, v in GENERATIVE_ARGS.items() if k in ("num_res_blocks", "norm_num_groups")},
            "channels": [8, 16], "latent_channels": 2, "attention_levels": [False, True], "nonlocal_attention": True}
    assert mv.ModelSpec.from_file(_spec_file(imported, vae=arch))  # the same architecture, spelled out
    assert mv.ModelSpec.from_file(_spec_file(imported, vae={**arch, "use_checkpoint": True}))  # memory only
    with pytest.raises(mv.SpecError, match=r"vae.latent_channels 4 disagrees with 2 recorded in .*vae.json"):
        mv.ModelSpec.from_file(_spec_file(imported, vae={**arch, "latent_channels": 4}))
    with pytest.raises(mv.SpecError, match=r"vae.nonlocal_attention \[False, True\] disagrees"):
        mv.ModelSpec.from_file(_spec_file(imported, vae={**arch, "nonlocal_attention": [False, True]}))
    with pytest.raises(mv.SpecError, match=r"channels 2 disagrees with the 1 image channel"):
        mv.ModelSpec.from_file(_spec_file(imported, channels=2))
    with pytest.raises(mv.SpecError, match=r"shape \[16, 16\] is 2D but the VAE .* is 3D"):
        mv.ModelSpec.from_file(_spec_file(imported, shape=[16, 16]))


def test_preprocessing_unlike_the_vaes_is_warned_about_once_per_difference(imported):
    same = {"spacing": [1.5, 1.5, 1.5], "percentiles": [0.0, 99.5]}
    assert _warnings(_spec_file(imported, preprocess=same)) == []
    assert _warnings(_spec_file(imported, preprocess=None)) == []  # the files are the user's to prepare
    notes = _warnings(_spec_file(imported, shape=[32, 32, 32],
                                 preprocess={"spacing": [2.0, 2.0, 2.0], "orientation": "LPS",
                                             "percentiles": [1.0, 99.0]}))
    assert len(notes) == 4 and all("\n" not in n and n.startswith("image: ") for n in notes)
    assert "shape [32, 32, 32] differs from the grid [16, 16, 16]" in notes[0]
    assert "preprocess.spacing [2, 2, 2] mm differs from the [1.5, 1.5, 1.5] mm" in notes[1]
    assert "Spacingd" in notes[1] and "LPS differs from the RAS" in notes[2]
    assert "percentiles [1, 99] differ from the [0, 99.5]" in notes[3]
    with pytest.warns(mv.VAEInputWarning, match="shape"):
        saved = mv.ModelSpec.from_file(_spec_file(imported, shape=[32, 32, 32])).to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error", mv.VAEInputWarning)
        mv.ModelSpec.from_dict(saved)  # a stored run's spec is not checked again


def test_an_intensity_range_the_encoder_never_saw_is_refused(tmp_path):
    bundle, _ = generative_bundle(tmp_path / "bundle", b_min=-1.0)  # trained on [-1, 1]
    import_vae(bundle, tmp_path / "vae")
    with pytest.raises(mv.SpecError, match=r"trained on intensities in \[-1, 1\] .* but preprocess.percentiles "
                                           r"\[0.5, 99.5\] maps intensities to \[0, 1\].*set preprocess.percentiles "
                                           r"to null"):
        mv.ModelSpec.from_file(_spec_file(tmp_path, preprocess={"spacing": [1.5, 1.5, 1.5]}))
    assert mv.ModelSpec.from_file(_spec_file(tmp_path, preprocess={"spacing": [1.5, 1.5, 1.5],
                                                                   "percentiles": None}))


def test_a_factor_is_needed_until_encode_or_train_records_one(imported):
    spec = mv.ModelSpec.from_file(_spec_file(imported, scale_factor=None))
    assert spec.variables[0].scale_factor is None
    with pytest.raises(mv.SpecError, match="records no latent scale factor yet .* `metavoxel encode` or "
                                           "`metavoxel train` computes it"):
        mv.JointModel(spec)
