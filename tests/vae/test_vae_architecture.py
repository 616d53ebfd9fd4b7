"""`VAESpec` declares either MONAI network with the arguments the field's bundles use; `build_vae` builds it, and the
specs written before it grew still build the very same network."""

from __future__ import annotations

import pytest
import torch
import yaml
from pydantic import ValidationError

import metavoxel as mv
from metavoxel.vae.architecture import VAESpec, build_vae

OLD = {"channels": [4, 8], "latent_channels": 2, "num_res_blocks": 1, "norm_num_groups": 4,
       "attention_levels": [False, True], "nonlocal_attention": True}


def test_an_old_spec_builds_the_network_it_always_built():
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(3)
    ours = build_vae(3, 1, VAESpec(**OLD))
    torch.manual_seed(3)
    theirs = AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 8), latent_channels=2,
                           num_res_blocks=1, attention_levels=(False, True), norm_num_groups=4,
                           with_encoder_nonlocal_attn=True, with_decoder_nonlocal_attn=True)
    assert repr(ours) == repr(theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def test_equal_architectures_compare_equal_however_written():
    spelled = VAESpec(**{**OLD, "num_res_blocks": [1, 1], "nonlocal_attention": (True, True), "include_fc": True,
                         "norm_eps": 1e-6, "use_checkpoint": True})
    assert spelled.architecture() == VAESpec(**OLD).architecture()  # checkpointing is memory, not numbers
    assert VAESpec(**{**OLD, "attention_levels": None, "nonlocal_attention": False}).architecture() == VAESpec(
        **{**OLD, "attention_levels": [False, False], "nonlocal_attention": [False, False]}).architecture()
    assert VAESpec(**{**OLD, "norm_eps": 1e-5}).architecture() != VAESpec(**OLD).architecture()
    maisi = VAESpec(**{**OLD, "network": "AutoencoderKlMaisi", "attention_levels": None, "nonlocal_attention": False})
    assert maisi.architecture()["include_fc"] is False and maisi.architecture()["norm_float16"] is False
    assert VAESpec(**{**OLD, "network": "AutoencoderKlMaisi", "attention_levels": None,
                      "nonlocal_attention": False, "num_splits": 1}).architecture() == maisi.architecture()


@pytest.mark.parametrize("fields, message", [
    ({"num_splits": 2}, "num_splits is an argument of AutoencoderKlMaisi only"),
    ({"num_res_blocks": [1, 1, 1]}, "num_res_blocks needs one number per entry of channels"),
    ({"num_res_blocks": [1, 0]}, "num_res_blocks must be >= 1"),
    ({"network": "AutoencoderKlMaisi", "dim_split": 3}, "less than or equal to 2"),
    ({"network": "VQVAE"}, "AutoencoderKL"),
])
def test_inconsistent_fields_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        VAESpec(**{**OLD, **fields})


def test_maisi_splits_that_cannot_run_on_the_grid_are_refused_in_one_line(tmp_path):
    arch = {"network": "AutoencoderKlMaisi", "channels": [4, 4, 4], "latent_channels": 2, "num_res_blocks": 1,
            "norm_num_groups": 4, "num_splits": 4, "dim_split": 1}
    spec = {"variables": [{"name": "image", "kind": "image_latent", "channels": 1, "shape": [8, 32, 8],
                           "vae": arch}], "network": {"spatial_dims": 3}}
    with pytest.raises(mv.SpecError, match=r"vae.num_splits 4 cuts axis 1 of the 8-voxel coarsest grid into pieces "
                                           r"under 3 voxels.*at most 2"):
        mv.ModelSpec.from_dict(spec)
    spec["variables"][0]["vae"]["num_splits"] = 2
    variable = mv.JointModel({**spec, "network": {"spatial_dims": 3, "channels": [8, 8], "attention_levels":
                                                  [False, False], "num_res_blocks": 1, "num_head_channels": 8,
                                                  "norm_num_groups": 4, "cross_attention_dim": 8}}).variables["image"]
    with torch.no_grad():  # the bound is where MONAI's split convolutions start to run
        assert variable.decode(variable.encode(torch.rand(1, 1, 8, 32, 8))).shape == (1, 1, 8, 32, 8)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**spec, "variables": [{**spec["variables"][0], "shape":
                                                                            [8, 8, 8]}]}))
    with pytest.raises(mv.SpecError, match="vae.num_splits 2 cuts"):
        mv.ModelSpec.from_file(tmp_path / "s.yaml")
