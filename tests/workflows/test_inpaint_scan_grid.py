"""`sample --fix image=SCAN --mask image=KEEP`: every kept voxel comes back unchanged in the scan's own grid,
units and data type; only the rest is generated, in the scan's intensities; the sidecar says which is which."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sample_runs import save_tiny_run
from tiny_specs import TINY_NET_2D

from metavoxel.diffusion.options import SamplingOptions
from metavoxel.workflows.sample import sample_run

SHAPE = (16, 16, 16)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    spec = {"name": "tiny-inpaint", "variables": [
        {"name": "image", "kind": "image", "channels": 1, "shape": list(SHAPE),
         "preprocess": {"spacing": [11.0] * 3}},
        {"name": "age", "kind": "continuous", "range": [40.0, 95.0]}],
        "diffusion": {"timesteps": 10, "sampling_steps": 2},
        "network": {**copy.deepcopy(TINY_NET_2D), "spatial_dims": 3}}
    return save_tiny_run(tmp_path_factory.mktemp("inpaint") / "run", spec)


def _scan(folder: Path) -> tuple[Path, np.ndarray]:
    """int16 with scl_slope 2 and scl_inter -610 (intensities -610..29390), 11 mm voxels half a voxel off the model
    lattice, as in the issue."""
    affine = np.diag([11.0, 11.0, 11.0, 1.0])
    affine[:3, 3] = -8 * 11.0 + 5.5
    data = np.random.default_rng(0).integers(0, 15000, SHAPE).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    image.header.set_slope_inter(2.0, -610.0)
    path = folder / "scan.nii.gz"
    nib.save(image, str(path))
    return path, affine


@pytest.mark.parametrize("mask_grid", ["scan", "finer"])
def test_kept_voxels_come_back_unchanged(run, tmp_path, mask_grid):
    scan_path, affine = _scan(tmp_path)
    if mask_grid == "scan":
        keep = np.zeros(SHAPE, dtype=np.uint8)
        keep[:8] = 1
        mask_affine = affine
    else:  # the same region on a 5.5 mm grid: moved onto the scan's grid first
        keep = np.zeros((32, 32, 32), dtype=np.uint8)
        keep[:16] = 1
        mask_affine = np.diag([5.5, 5.5, 5.5, 1.0])
        mask_affine[:3, 3] = affine[:3, 3] - 2.75
    nib.save(nib.Nifti1Image(keep, mask_affine), str(tmp_path / "keep.nii.gz"))
    out = tmp_path / "out"
    sample_run(run, {"image": str(scan_path), "age": "70"}, {"image": str(tmp_path / "keep.nii.gz")}, out, SamplingOptions(seed=0))

    scan, written = nib.load(str(scan_path)), nib.load(str(out / "image_sample00.nii.gz"))
    kept = np.zeros(SHAPE, dtype=bool)
    kept[:8] = True
    assert written.get_data_dtype() == np.int16 and written.dataobj.slope == 2.0 and written.dataobj.inter == -610.0
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj.get_unscaled())[kept],
                                  np.asarray(scan.dataobj.get_unscaled())[kept])
    values = written.get_fdata()[~kept]
    assert values.min() >= -610.0 and values.max() <= 29390.0  # generated in the scan's units, not 0..1
    assert np.abs(values).mean() > 100.0

    sidecar = json.loads((out / "image_sample00.json").read_text())["inpainting"]
    assert sidecar["kept"] == {"voxels": 2048, "values": "the scan's own voxels, unchanged"}
    assert sidecar["generated"]["voxels"] + sidecar["not_generated"]["voxels"] == 16**3 - 2048
    assert sidecar["generated"]["voxels"] == 15 * 15 * 15 - 8 * 15 * 15  # scan voxels the model grid reaches
    assert sidecar["dtype"] == "int16" and sidecar["mask"] == str(tmp_path / "keep.nii.gz")


def test_model_space_is_in_the_scans_units_and_says_what_was_held(run, tmp_path):
    scan_path, affine = _scan(tmp_path)
    keep = np.zeros(SHAPE, dtype=np.uint8)
    keep[:8] = 1
    nib.save(nib.Nifti1Image(keep, affine), str(tmp_path / "keep.nii.gz"))
    out = tmp_path / "out"
    sample_run(run, {"image": str(scan_path), "age": "70"}, {"image": str(tmp_path / "keep.nii.gz")}, out, SamplingOptions(seed=0),
               space="model")
    written = nib.load(str(out / "image_sample00.nii.gz"))
    assert written.shape == SHAPE and written.get_data_dtype() == np.float32
    assert written.get_fdata().max() > 100.0  # the scan's units
    sidecar = json.loads((out / "image_sample00.json").read_text())["inpainting"]
    assert sidecar["space"] == "model" and sidecar["kept"]["voxels"] == 9 * 16 * 16  # no kept voxel dropped


@pytest.mark.parametrize("where", ["all zero", "off the scan"])
def test_a_mask_that_keeps_no_voxel_of_the_scan_is_refused_and_nothing_written(run, tmp_path, where):
    from metavoxel.errors import InputError

    scan_path, affine = _scan(tmp_path)
    keep = np.zeros(SHAPE, dtype=np.uint8)
    mask_affine = affine.copy()
    if where == "off the scan":  # the scan's own half mask, 5 m away: it reaches no voxel of the scan
        keep[:8] = 1
        mask_affine[:3, 3] += 5000.0
    nib.save(nib.Nifti1Image(keep, mask_affine), str(tmp_path / "keep.nii.gz"))
    with pytest.raises(InputError, match=r"--mask image=.*keeps no voxel of the fixed scan.*drop --mask"):
        sample_run(run, {"image": str(scan_path), "age": "70"}, {"image": str(tmp_path / "keep.nii.gz")},
                   tmp_path / "out", SamplingOptions(seed=0))
    assert not (tmp_path / "out").exists()
