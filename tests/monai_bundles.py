"""Tiny MONAI bundles saved the way the field's are, with random weights, for the import-vae tests.

Each builder writes a bundle folder (configs/, models/, configs/metadata.json) shaped like a public one and
returns it with the MONAI module whose weights it saved:

- `generative_bundle`: like the GenerativeModels-era bundles (brats_mri_generative_diffusion): JSON configs,
  ``generative.networks.nets.AutoencoderKL`` with ``num_channels``, a plain state dict under GenerativeModels'
  key names, preprocessing transforms (orientation, spacing, centre crop, percentiles).
- `core_bundle`: like brain_image_synthesis_latent_diffusion_model: ``monai.networks.nets.AutoencoderKL`` with
  ``channels``, ``network_def: "@autoencoder_def"``, the loader chosen by a function item, a second network's
  weights in models/, the state dict inside a checkpoint dict; YAML, 2D, shape and range in metadata.json.
- `maisi_bundle`: like maisi_ct_generative: ``AutoencoderKlMaisi`` arguments by ``@`` reference, the weights
  loaded through ``checkpoint_autoencoder``, a second (mask) autoencoder beside it; and configs/config_maisi.json
  holding the arguments alone (with float16 norms).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

SEED = 0


def generative_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MONAI core AutoencoderKL key names -> MONAI GenerativeModels' (what ``load_old_state_dict`` maps back):
    attention projections sit on the block itself, the output projection is ``proj_attn``, and the upsampling
    convolution is ``conv``, not ``postconv``."""
    renames = ((".attn.to_q.", ".to_q."), (".attn.to_k.", ".to_k."), (".attn.to_v.", ".to_v."),
               (".attn.out_proj.", ".proj_attn."), (".postconv.", ".conv."))
    out = {}
    for key, value in state.items():
        for new, old in renames:
            key = key.replace(new, old)
        out[key] = value.clone()
    return out


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _transform(target: str, **arguments) -> dict[str, Any]:
    return {"_target_": target, "keys": "image", **arguments}


GENERATIVE_ARGS = {"num_channels": [8, 16], "num_res_blocks": 1, "norm_num_groups": 4, "norm_eps": 1e-6,
                   "attention_levels": [False, True], "with_encoder_nonlocal_attn": True,
                   "with_decoder_nonlocal_attn": True, "use_checkpointing": False, "use_convtranspose": False}


def generative_monai_module(latent_channels: int = 2):
    """MONAI core's AutoencoderKL for `GENERATIVE_ARGS`, seeded."""
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(SEED)
    args = {("channels" if k == "num_channels" else "use_checkpoint" if k == "use_checkpointing" else k): v
            for k, v in GENERATIVE_ARGS.items()}
    return AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=1, latent_channels=latent_channels,
                         **args).eval()


def generative_bundle(root: Path, *, arguments: dict[str, Any] | None = None, b_min: float = 0.0,
                      state: dict[str, torch.Tensor] | None = None, weights: Any = None):
    """A GenerativeModels-style bundle; ``arguments``/``state``/``weights`` override the network definition, the
    saved state dict, or the whole saved object (for the bad-input tests)."""
    module = generative_monai_module()
    definition = {"_target_": "generative.networks.nets.AutoencoderKL", "spatial_dims": "@spatial_dims",
                  "in_channels": "@image_channels", "out_channels": "@image_channels",
                  "latent_channels": "@latent_channels", **GENERATIVE_ARGS, **(arguments or {})}
    inference = {
        "imports": ["$import torch", "$import generative"],
        "bundle_root": ".", "model_dir": "$@bundle_root + '/models'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "spacing": [1.5, 1.5, 1.5], "spatial_dims": 3, "image_channels": 1, "latent_channels": 2,
        "infer_patch_size": [16, 16, 16],
        "autoencoder_def": definition,
        "load_autoencoder_path": "$@model_dir + '/model_autoencoder.pt'",
        "load_autoencoder": "$@autoencoder_def.load_state_dict(torch.load(@load_autoencoder_path))",
        "autoencoder": "$@autoencoder_def.to(@device)",
        "preprocessing_transforms": [_transform("LoadImaged"), _transform("EnsureChannelFirstd"),
                                     _transform("Orientationd", axcodes="RAS"),
                                     _transform("Spacingd", pixdim="@spacing", mode="bilinear")],
        "crop_transforms": [_transform("CenterSpatialCropd", roi_size="@infer_patch_size")],
        "final_transforms": [_transform("ScaleIntensityRangePercentilesd", lower=0, upper=99.5, b_min=b_min,
                                        b_max=1)],
        "preprocessing": {"_target_": "Compose",
                          "transforms": "$@preprocessing_transforms + @crop_transforms + @final_transforms"},
    }
    train = {"spacing": [2.0, 2.0, 2.0],  # read after the config holding the network: its spacing loses
             "train": {"preprocessing": [_transform("Spacingd", pixdim="@spacing"),
                                         _transform("RandSpatialCropd", roi_size=[8, 8, 8], random_size=False)]}}
    _write_json(root / "configs" / "inference.json", inference)
    _write_json(root / "configs" / "train_autoencoder.json", train)
    _write_json(root / "configs" / "metadata.json", {"version": "0.4.2", "name": "tiny_generative_ldm"})
    (root / "models").mkdir(parents=True, exist_ok=True)
    saved = weights if weights is not None else (state if state is not None else generative_names(module.state_dict()))
    torch.save(saved, root / "models" / "model_autoencoder.pt")
    return root, module


def core_bundle(root: Path):
    """A brain-LDM-style bundle (2D, YAML, checkpoint dict)."""
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(SEED)
    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3, "channels": [8, 8, 16],
            "num_res_blocks": 1, "norm_num_groups": 4, "norm_eps": 1e-6, "attention_levels": [False, False, False],
            "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False}
    module = AutoencoderKL(**args).eval()
    config = {
        "bundle_root": ".", "model_dir": "$@bundle_root + '/models'", "load_old": 0,
        "autoencoder_def": {"_target_": "monai.networks.nets.AutoencoderKL", **args},
        "network_def": "@autoencoder_def",
        "load_autoencoder_path": "$@model_dir + '/autoencoder.pt'",
        "load_autoencoder_func": "$@autoencoder_def.load_old_state_dict if bool(@load_old) else "
                                 "@autoencoder_def.load_state_dict",
        "load_autoencoder": "$@load_autoencoder_func(torch.load(@load_autoencoder_path))",
        "diffusion_def": {"_target_": "monai.networks.nets.DiffusionModelUNet", "spatial_dims": 2},
        "load_diffusion_path": "$@model_dir + '/model.pt'",
        "load_diffusion": "$@diffusion_def.load_state_dict(torch.load(@load_diffusion_path))",
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "inference.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _write_json(root / "configs" / "metadata.json", {
        "version": "1.0.0", "network_data_format": {
            "inputs": {"image": {"type": "tabular", "num_channels": 1, "spatial_shape": [16, 24]}},
            "outputs": {"pred": {"type": "image", "num_channels": 1, "spatial_shape": [16, 24],
                                 "value_range": [0, 1]}}}})
    (root / "models").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "epoch": 7}, root / "models" / "autoencoder.pt")
    torch.save({"weight": torch.zeros(3)}, root / "models" / "model.pt")  # the diffusion model's
    return root, module


MAISI_ARGS = {"num_channels": [8, 16], "num_res_blocks": [1, 1], "norm_num_groups": 4, "norm_eps": 1e-6,
              "attention_levels": [False, False], "with_encoder_nonlocal_attn": False,
              "with_decoder_nonlocal_attn": False, "use_checkpointing": False, "use_convtranspose": False,
              "num_splits": 2, "dim_split": 1}


def maisi_module(norm_float16: bool = False):
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

    torch.manual_seed(SEED)
    return AutoencoderKlMaisi(spatial_dims=3, in_channels=1, out_channels=1, latent_channels=4,
                              norm_float16=norm_float16, **MAISI_ARGS).eval()


def maisi_bundle(root: Path):
    """A maisi_ct_generative-style bundle (float32 norms) plus configs/config_maisi.json (float16 norms)."""
    module = maisi_module()
    target = "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi"
    definition = {"_target_": target, "spatial_dims": "@spatial_dims", "in_channels": "@image_channels",
                  "out_channels": "@image_channels", "latent_channels": "@latent_channels", **MAISI_ARGS}
    inference = {
        "imports": ["$import torch", "$from pathlib import Path", "$import scripts"],
        "bundle_root": ".", "model_dir": "$@bundle_root + '/models'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "spatial_dims": 3, "image_channels": 1, "latent_channels": 4, "spacing": [1.5, 1.5, 1.5],
        "trained_autoencoder_path": "$@model_dir + '/autoencoder_epoch273.pt'",
        "trained_mask_generation_autoencoder_path": "$@model_dir + '/mask_generation_autoencoder.pt'",
        "autoencoder_def": {**definition, "norm_float16": False},
        "mask_generation_autoencoder_def": {**definition, "in_channels": 8, "out_channels": 125,
                                            "norm_float16": True},
        "autoencoder": "$@autoencoder_def.to(@device)",
        "checkpoint_autoencoder": "$torch.load(@trained_autoencoder_path, weights_only=True)",
        "load_autoencoder": "$@autoencoder.load_state_dict(@checkpoint_autoencoder)",
        "mask_generation_autoencoder": "$@mask_generation_autoencoder_def.to(@device)",
        "checkpoint_mask_generation_autoencoder": "$torch.load(@trained_mask_generation_autoencoder_path, "
                                                  "weights_only=True)",
        "load_mask_generation_autoencoder": "$@mask_generation_autoencoder.load_state_dict("
                                            "@checkpoint_mask_generation_autoencoder, strict=True)",
    }
    _write_json(root / "configs" / "inference.json", inference)
    _write_json(root / "configs" / "config_maisi.json", {
        "spatial_dims": 3, "image_channels": 1, "latent_channels": 4,
        "autoencoder_def": {**definition, "norm_float16": True}})
    _write_json(root / "configs" / "metadata.json", {"version": "1.1.0", "name": "tiny_maisi"})
    (root / "models").mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), root / "models" / "autoencoder_epoch273.pt")
    torch.save({"weight": torch.zeros(2)}, root / "models" / "mask_generation_autoencoder.pt")
    return root, module
