"""Reading a bundle's config: which weights file the config loads into the network, what its transforms and
metadata say the autoencoder expects, and how a spec's preprocessing is held against that."""

from __future__ import annotations

import pytest

from metavoxel.io.preprocess import PreprocessSpec
from metavoxel.vae.bundle import _weights_item
from metavoxel.vae.bundle_transforms import declared_input, transform_name
from metavoxel.vae.expected_input import ExpectedInput, IntensityScaling, input_mismatches
from metavoxel.vae.importer import vae_spec_from_arguments


@pytest.mark.parametrize("config, expected", [
    ({"p": "x.pt", "load": "$@net_def.load_state_dict(torch.load(@p))"}, ("p", None)),
    ({"p": "x.pt", "net": "$@net_def.to(@device)", "ckpt": "$torch.load(@p, weights_only=True)",
      "load": "$@net.load_state_dict(@ckpt)"}, ("p", None)),
    ({"p": "x.pt", "fn": "$@net_def.load_old_state_dict if @old else @net_def.load_state_dict",
      "load": "$@fn(torch.load(@p))"}, ("p", None)),
    ({"paths": {"ae": "x.pt"}, "ckpt": "$torch.load(@paths#ae)",
      "load": "$@net_def.load_state_dict(@ckpt['autoencoder'])"}, ("paths::ae", "autoencoder")),
    ({"p": "x.pt", "q": "y.pt", "load_other": "$@other_def.load_state_dict(torch.load(@q))",
      "load": "$@net_def.load_state_dict(torch.load(@p))"}, ("p", None)),
    ({"p": "x.pt", "load_other": "$@other_def.load_state_dict(torch.load(@p))"}, None),
])
def test_the_weights_are_the_file_the_config_loads_into_the_network(config, expected):
    assert _weights_item({"net_def": {"_target_": "X"}, **config}, "net_def") == expected


def test_transforms_and_metadata_give_what_the_autoencoder_expects():
    transforms = [
        ("a", "Orientation", {"axcodes": "ras"}),
        ("b", transform_name("monai.transforms.RandSpatialCropd") or "RandSpatialCrop", {"roi_size": [8, 8, 8]}),
        ("c", transform_name("Spacingd"), {"pixdim": 2.0}),
        ("d", transform_name("CenterSpatialCropd"), {"roi_size": [-1, 64, 64]}),  # keeps an axis: no grid
        ("e", transform_name("ResizeWithPadOrCropd"), {"spatial_size": [96, 96, 64]}),
        ("f", transform_name("ScaleIntensityRanged"), {"a_min": -1000, "a_max": 1000, "b_min": 0, "b_max": 1,
                                                        "clip": True}),
        ("g", "Spacing", {"pixdim": [1.0, 1.0, 1.0]}),  # a later transform of a kind already read
    ]
    expected = declared_input(transforms, {}, 3)
    assert (expected.orientation, expected.spacing, expected.shape) == ("RAS", [2.0, 2.0, 2.0], [96, 96, 64])
    assert expected.intensity == IntensityScaling(method="window", window=(-1000.0, 1000.0), range=(0.0, 1.0),
                                                  clip=True)
    assert expected.sources == {"orientation": "a", "spacing": "c", "shape": "e", "intensity": "f"}
    assert expected.intensity.describe() == "window [-1000, 1000] -> [0, 1], clipped"
    metadata = {"network_data_format": {"inputs": {"image": {"type": "image", "spatial_shape": [32, 32, 32],
                                                             "value_range": [-1, 1]}}}}
    from_metadata = declared_input([], metadata, 3)
    assert from_metadata.shape == [32, 32, 32] and from_metadata.intensity.range == (-1.0, 1.0)
    assert declared_input([("z", "NormalizeIntensity", {})], metadata, 3).intensity.method == "zscore"
    assert transform_name("monai.transforms.LoadImaged") is None


def _mismatches(expected: ExpectedInput, shape=(16, 16, 16), **preprocess):
    return input_mismatches(expected, shape, PreprocessSpec(**preprocess) if preprocess is not None else None,
                            where="'vae'")


def test_grid_spacing_and_orientation_are_warned_about_and_a_foreign_range_refused():
    expected = ExpectedInput(shape=[16, 16, 16], spacing=[1.0, 1.0, 1.0], orientation="RAS",
                             intensity=IntensityScaling(method="percentiles", percentiles=(0.0, 99.5), range=(0, 1)))
    assert _mismatches(expected, spacing=[1.0004, 1.0, 1.0], percentiles=(0.0, 99.5)) == ([], [])
    refusals, notes = _mismatches(expected, (32, 32, 32), spacing=[2.0, 2.0, 2.0], orientation="LPS",
                                  percentiles=(1.0, 99.0))
    assert refusals == [] and [n.split()[0] for n in notes] == ["shape", "preprocess.spacing",
                                                                  "preprocess.orientation", "preprocess.percentiles"]
    assert input_mismatches(expected, (32, 32, 32), None, where="'vae'") == ([], [notes[0]])
    for intensity in (IntensityScaling(method="stated", range=(-1, 1)), IntensityScaling(method="zscore")):
        refusals, _ = _mismatches(expected.model_copy(update={"intensity": intensity}), spacing=[1.0, 1.0, 1.0])
        assert len(refusals) == 1 and "set preprocess.percentiles to null" in refusals[0]
        assert _mismatches(expected.model_copy(update={"intensity": intensity}), spacing=[1.0, 1.0, 1.0],
                           percentiles=None) == ([], [])
    window = expected.model_copy(update={"intensity": IntensityScaling(method="window", window=(-1000, 1000),
                                                                       range=(0, 1))})
    refusals, notes = _mismatches(window, spacing=[1.0, 1.0, 1.0])
    assert refusals == [] and "fixed window [-1000, 1000]" in notes[0]


def test_the_brain_ldm_example_spec_has_the_bundles_autoencoder():
    """The public bundle's autoencoder_def (brain_image_synthesis_latent_diffusion_model, configs/inference.json):
    the example spec in schemas/examples must describe it exactly, and its grid must give the bundle's
    3×20×28×20 latent."""
    from metavoxel.examples import BRAIN_LDM_AGE_SEX
    from metavoxel.vae.architecture import VAESpec

    bundle = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "latent_channels": 3,
              "channels": [64, 128, 128, 128], "num_res_blocks": 2, "norm_num_groups": 32, "norm_eps": 1e-6,
              "attention_levels": [False, False, False, False], "with_encoder_nonlocal_attn": False,
              "with_decoder_nonlocal_attn": False}
    imported, dims, channels = vae_spec_from_arguments("monai.networks.nets.AutoencoderKL", bundle, "inference.json")
    image = BRAIN_LDM_AGE_SEX["variables"][0]
    example = VAESpec(**image["vae"])
    assert example.architecture() == imported.architecture() and (dims, channels) == (3, 1)
    assert [s // example.downsample_factor for s in image["shape"]] == [20, 28, 20]


def test_references_macros_and_expressions_resolve_as_monai_bundle_run_does(tmp_path, monkeypatch):
    import json

    from metavoxel.vae.bundle import read_bundle

    (tmp_path / "b" / "configs").mkdir(parents=True)
    (tmp_path / "b" / "models").mkdir()
    (tmp_path / "b" / "models" / "ae.pt").write_bytes(b"")
    (tmp_path / "b" / "configs" / "defs.json").write_text(json.dumps({"autoencoder_def": {
        "_target_": "monai.networks.nets.AutoencoderKL", "spatial_dims": "@dims", "channels": [8, 16],
        "norm_num_groups": "$2 * 2"}}))
    (tmp_path / "b" / "configs" / "inference.json").write_text(json.dumps({
        "dims": 3, "network_def": "%configs/defs.json::autoencoder_def"}))
    monkeypatch.chdir(tmp_path)  # macros open files relative to the bundle, wherever metavoxel runs
    bundle = read_bundle(tmp_path / "b")
    assert bundle.key == "network_def" and bundle.config.name == "inference.json"
    assert bundle.arguments == {"spatial_dims": 3, "channels": [8, 16], "norm_num_groups": 4}
    assert bundle.weights == tmp_path / "b" / "models" / "ae.pt"  # the only weights file in models/
    assert bundle.name == "b" and bundle.version is None
