"""The VAE shipped with the package: found by name, loadable, what it expects stated, and never used on brains it saw."""

from __future__ import annotations

import json

import pytest
import torch

from metavoxel.errors import InputError
from metavoxel.vae.checkpoint import load_vae
from metavoxel.vae.pretrained import check_unseen_phantom, pretrained_vae, pretrained_vaes
from metavoxel.workflows.study import DEMO


@pytest.mark.parametrize("name", ["phantom-32", "phantom-32-sharp"])
def test_the_phantom_vae_ships_loads_and_states_its_input_and_training(name):
    assert name in pretrained_vaes()
    folder = pretrained_vae(name)
    vae, meta = load_vae(folder)  # the weights' digest is checked against vae.json
    expects = meta["expects"]
    assert expects["shape"] == [DEMO.size] * 3 and expects["spacing"] == [DEMO.voxel_mm] * 3
    assert expects["orientation"] == "RAS" and expects["intensity"]["range"] == [0.0, 1.0]
    provenance = meta["provenance"]
    assert provenance["steps"] > 0 and provenance["command"].startswith("benchmarks/phantom_vae/train.py")
    card = (folder / "MODEL_CARD.md").read_text()
    assert provenance["command"] in card and "held out" in card
    # it encodes a 32³ brain-sized input to the demo's 8-channel 8³ latent and decodes back to the grid
    with torch.no_grad():
        z = vae.encode_stage_2_inputs(torch.rand(1, 1, 32, 32, 32))
        assert z.shape == (1, 8, 8, 8, 8)
        assert vae.decode_stage_2_outputs(z).shape == (1, 1, 32, 32, 32)


def test_a_cohort_drawn_with_a_seed_the_vae_saw_is_refused(tmp_path):
    folder = pretrained_vae("phantom-32")
    seeds = json.loads((folder / "vae.json").read_text())["provenance"]["phantom_seeds"]
    for seed, expect_refused in ((seeds["train"]["demo"], True), (seeds["held_out"]["default"], True), (0, False)):
        cohort = tmp_path / f"cohort-{seed}"
        cohort.mkdir()
        (cohort / "phantom.json").write_text(json.dumps({"config": {"seed": seed}}))
        if expect_refused:
            with pytest.raises(InputError, match=f"seed {seed}, whose brains the VAE"):
                check_unseen_phantom(folder, cohort)
        else:
            assert check_unseen_phantom(folder, cohort).startswith("the VAE never saw this cohort's brains")


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(InputError, match="available: .*phantom-32"):
        pretrained_vae("ukbb-160")
