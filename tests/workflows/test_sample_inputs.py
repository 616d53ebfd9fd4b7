"""`sample_run` inputs as a user types them: top-coded ages, a mask without its image."""

from __future__ import annotations

import json
import warnings
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


def test_the_scan_given_as_its_own_mask_is_refused(run, tmp_path):
    import nibabel as nib
    import numpy as np

    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8)).astype(np.float32), np.eye(4)), str(scan))
    (tmp_path / "link.nii.gz").symlink_to(scan)
    with pytest.raises(InputError, match=r"--mask image=.*link.nii.gz is the scan --fix image gives; .* drop --mask"):
        sample_run(run, {"image": str(scan)}, {"image": str(tmp_path / "link.nii.gz")}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_mask_that_is_not_0_1_warns_that_every_non_zero_voxel_is_kept(run, tmp_path):
    import nibabel as nib
    import numpy as np

    from metavoxel.workflows.sample import MaskWarning

    nib.save(nib.Nifti1Image(np.ones((8, 8), dtype=np.float32), np.eye(4)), str(tmp_path / "scan.nii.gz"))
    keep = np.zeros((8, 8), dtype=np.float32)
    keep[:, :4] = 255  # 0/255, as masks are often saved: binary, no warning
    nib.save(nib.Nifti1Image(keep, np.eye(4)), str(tmp_path / "binary.nii.gz"))
    keep[:, 4:] = 0.01  # a probability map: the faint half is kept too
    nib.save(nib.Nifti1Image(keep, np.eye(4)), str(tmp_path / "soft.nii.gz"))
    fix = {"image": str(tmp_path / "scan.nii.gz")}
    options = SamplingOptions(seed=0, impute=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskWarning)
        sample_run(run, fix, {"image": str(tmp_path / "binary.nii.gz")}, tmp_path / "a", options, typicality=None)
    with pytest.warns(MaskWarning, match=r"not a 0/1 mask \(non-zero values from 0\.01 to 255\); every non-zero "
                                         r"voxel is kept, 100% of the mask's"):
        sample_run(run, fix, {"image": str(tmp_path / "soft.nii.gz")}, tmp_path / "b", options, typicality=None)


def test_a_typicality_threshold_outside_0_100_is_refused_before_sampling(run, tmp_path):
    with pytest.raises(InputError, match=r"typicality threshold must be a percentile strictly between 0 and 100"):
        sample_run(run, {"age": "70"}, {}, tmp_path / "out", typicality=100.0)
    assert not (tmp_path / "out").exists()
