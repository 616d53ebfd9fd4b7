"""Results on the model grid go back onto the user's scan grid through world coordinates."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from io_anatomy import sample, scan_affine, world_of, write_scan

from metavoxel.errors import InputError
from metavoxel.io.nifti import read_nifti
from metavoxel.io.nifti_write import write_result
from metavoxel.io.preprocess import Preprocessor, PreprocessSpec
from metavoxel.io.resample import resample_to_grid, to_source_grid

GRID = (24, 24, 24)
SHAPE = (32, 32, 32)
SCANS = {"RAS": {}, "LPS": {"codes": "LPS"}, "oblique": {"rotate_z_deg": 15.0},
         "oblique LPS": {"codes": "LPS", "rotate_z_deg": -30.0, "spacing": (1.0, 1.2, 0.9)}}


def _interior(prepared, margin=1.0):
    """Scan voxels whose world point lies at least ``margin`` model voxels inside the model grid."""
    world = world_of(prepared.source.affine, prepared.source.shape)
    voxel = np.linalg.solve(prepared.affine, np.r_[world, np.ones((1, world.shape[1]))])[:3]
    inside = ((voxel >= margin) & (voxel <= np.asarray(GRID)[:, None] - 1 - margin)).all(0)
    return inside.reshape(prepared.source.shape)


@pytest.fixture(params=list(SCANS))
def scan(request, tmp_path):
    variant = SCANS[request.param]
    affine = scan_affine(shape=SHAPE, **variant)
    path = write_scan(tmp_path / "scan.nii.gz", affine, SHAPE)
    return path, affine


def test_round_trip_reproduces_the_scan_at_its_voxel_centres(scan):
    path, affine = scan
    prepared = Preprocessor(PreprocessSpec(spacing=[1.25] * 3, percentiles=None), GRID)(path)
    back = to_source_grid(prepared.tensor, prepared)
    assert back.shape == (1, *SHAPE) and back.dtype == np.float32
    inside = _interior(prepared)
    assert inside.mean() > 0.3
    original = sample(affine, SHAPE)
    # Two linear interpolations (1 mm -> 1.25 mm -> 1 mm) on intensities ~0-110: measured ≤ 4.
    assert np.abs(back[0] - original)[inside].max() < 6.0
    assert (back[0][~_interior(prepared, margin=-1.0)] == 0).all()  # beyond the model grid: 0


def test_one_step_back_matches_the_anatomy(scan):
    """The anatomy sampled exactly on the model grid and sent back matches it at the scan's voxels.

    One interpolation only, so an error in the backward mapping cannot cancel one in the forward mapping.
    """
    path, affine = scan
    prepared = Preprocessor(PreprocessSpec(spacing=[1.25] * 3), GRID)(path)
    exact = torch.from_numpy(sample(prepared.affine, GRID))  # (*GRID), no channel axis
    back = to_source_grid(exact, prepared)
    assert back.shape == SHAPE
    inside = _interior(prepared)
    assert np.abs(back - sample(affine, SHAPE))[inside].max() < 4.0  # measured ≤ 2.7


def test_invert_intensity_returns_scan_units(scan):
    path, affine = scan
    prepared = Preprocessor(PreprocessSpec(spacing=[1.25] * 3), GRID)(path)
    scaled = to_source_grid(prepared.tensor, prepared)
    assert 0.0 <= scaled.min() and scaled.max() <= 1.0 + 1e-6  # convex combinations of [0, 1] values
    restored = to_source_grid(prepared.tensor, prepared, invert_intensity=True)
    lo, hi = prepared.intensity_range[0]
    expected = np.clip(sample(affine, SHAPE), lo, hi)
    inside = _interior(prepared)
    assert np.abs(restored[0] - expected)[inside].max() < 6.0
    assert restored.max() > 0.9 * hi


def test_invert_needs_recorded_percentiles(tmp_path):
    path = write_scan(tmp_path / "scan.nii.gz", scan_affine(shape=SHAPE), SHAPE)
    prepared = Preprocessor(PreprocessSpec(percentiles=None), GRID)(path)
    with pytest.raises(InputError, match="without percentile scaling"):
        to_source_grid(prepared.tensor, prepared, invert_intensity=True)
    with pytest.raises(InputError, match=r"expected a volume \(C, 24, 24, 24\)"):
        to_source_grid(torch.zeros(1, 8, 8, 8), prepared)


@given(codes=st.sampled_from(["RAS", "LPS", "SLA", "IPR"]), angle=st.floats(-90, 90),
       spacing=st.tuples(*[st.floats(0.6, 2.5)] * 3), gradient=st.tuples(*[st.floats(-5, 5)] * 3))
def test_linear_functions_come_back_exactly(codes, angle, spacing, gradient):
    """Linear interpolation reproduces an affine function of world coordinates exactly, for any pair of grids."""
    g = np.asarray(gradient)
    model_shape, scan_shape = (9, 10, 11), (12, 8, 10)
    model = scan_affine("RAS", (1.5, 1.5, 1.5), model_shape, centre=np.zeros(3))
    scan = scan_affine(codes, spacing, scan_shape, angle, centre=np.array([0.5, -0.3, 0.2]))
    values = (g @ world_of(model, model_shape) + 7.0).reshape(1, *model_shape)
    back = resample_to_grid(values, model, scan, scan_shape).numpy()[0]
    world = world_of(scan, scan_shape)
    voxel = np.linalg.solve(model, np.r_[world, np.ones((1, world.shape[1]))])[:3]
    inside = ((voxel >= 0) & (voxel <= np.asarray(model_shape)[:, None] - 1)).all(0).reshape(scan_shape)
    expected = (g @ world + 7.0).reshape(scan_shape)
    np.testing.assert_allclose(back[inside], expected[inside], atol=1e-3 * (1 + np.abs(g).sum()))
    assert (back[~_near(voxel, model_shape).reshape(scan_shape)] == 0).all()


def _near(voxel, shape):
    return ((voxel > -1) & (voxel < np.asarray(shape)[:, None])).all(0)


@given(perm=st.permutations([0, 1, 2]), flips=st.tuples(*[st.booleans()] * 3), seed=st.integers(0, 2**16),
       interpolation=st.sampled_from(["linear", "nearest"]))
def test_reindexing_the_same_voxels_is_exact(perm, flips, seed, interpolation):
    """A grid that only flips/permutes the same voxel centres gets exactly the same values."""
    shape = (5, 6, 7)
    data = np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)
    src = scan_affine("RAS", (1.0, 2.0, 1.5), shape)
    flipped = np.flip(data, axis=[1 + a for a in range(3) if flips[a]]).transpose(0, *[1 + p for p in perm])
    index = np.eye(4)  # new voxel -> old voxel
    for new_axis, old_axis in enumerate(perm):
        index[:3, new_axis] = 0
        index[old_axis, new_axis] = -1.0 if flips[old_axis] else 1.0
        index[old_axis, 3] = shape[old_axis] - 1 if flips[old_axis] else 0
    out = resample_to_grid(data, src, src @ index, flipped.shape[1:], interpolation=interpolation)
    np.testing.assert_allclose(out.numpy(), flipped, atol=1e-4)


def test_write_result_in_source_and_model_space(tmp_path):
    affine = scan_affine("LPS", (1.0, 1.0, 1.0), SHAPE, 10.0)
    source = nib.Nifti1Image(sample(affine, SHAPE).astype(np.int16), affine)
    source.set_sform(affine, code=2)
    source.set_qform(affine, code=1)
    source.header["descrip"] = b"subject 7"
    path = tmp_path / "scan.nii.gz"
    nib.save(source, str(path))
    prepared = Preprocessor(PreprocessSpec(spacing=[1.25] * 3), GRID)(path)

    native = nib.load(str(write_result(tmp_path / "inpainted.nii.gz", prepared.tensor, prepared)))
    assert native.shape == SHAPE and native.get_data_dtype() == np.float32
    np.testing.assert_allclose(native.affine, affine, atol=1e-5)
    assert int(native.header["sform_code"]) == 2 and int(native.header["qform_code"]) == 1
    assert native.header["descrip"].tobytes().rstrip(b"\0") == b"subject 7"
    np.testing.assert_allclose(np.asarray(native.dataobj), to_source_grid(prepared.tensor, prepared)[0], atol=1e-6)

    model = write_result(tmp_path / "model.nii", prepared.tensor, prepared, space="model", invert_intensity=True)
    data, model_affine = read_nifti(model)
    np.testing.assert_allclose(model_affine, prepared.affine, atol=1e-5)
    lo, hi = prepared.intensity_range[0]
    np.testing.assert_allclose(data, lo + prepared.tensor.numpy() * (hi - lo), rtol=1e-5, atol=1e-3)
    assert int(nib.load(str(model)).header["sform_code"]) == 2
    with pytest.raises(InputError, match="space must be"):
        write_result(tmp_path / "x.nii", prepared.tensor, prepared, space="scanner")
