"""`sample_run` inputs as a user types them: top-coded ages, a mask without its image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sample_runs import save_tiny_run
from tiny_specs import tiny_spec_2d

from metavoxel.diffusion.options import SamplingOptions
from metavoxel.errors import InputError
from metavoxel.workflows.sample import sample_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return save_tiny_run(tmp_path_factory.mktemp("sample") / "run",
                         tiny_spec_2d(diffusion={"timesteps": 20, "sampling_steps": 2}))


def test_fix_accepts_a_top_coded_age_as_tables_do(run, tmp_path):
    result, _files = sample_run(run, {"age": "89+", "group": "A"}, {}, tmp_path / "out", SamplingOptions(seed=0))
    assert result.labels("age") == [[89.0]]  # (subjects, samples)
    assert json.loads((tmp_path / "out" / "samples.json").read_text())["fixed"]["age"] == "89+"


def test_a_mask_without_its_image_fixed_says_so(run, tmp_path):
    with pytest.raises(InputError, match=r"--mask image=\.\.\.: .* 'image' is not fixed; add --fix image="):
        sample_run(run, {"age": "70"}, {"image": str(tmp_path / "keep.nii.gz")}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
