"""What the user keeps comes back unchanged: keep-masks move between grids without losing a kept voxel, and an
inpainted scan is written with the scan's own voxels, data type and scaling inside the mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.errors import InputError
from metavoxel.io.nifti_write import write_inpainted
from metavoxel.io.preprocess import Preprocessor, PreprocessSpec
from metavoxel.io.resample import cover_mask, resample_to_grid

SHAPE = (16, 16, 16)


def _issue_scan(tmp_path, data=None, slope=None, inter=None):
    """The issue's case: a 16³ scan at 11 mm whose voxel centres sit half a voxel off the model lattice."""
    affine = np.diag([11.0, 11.0, 11.0, 1.0])
    affine[:3, 3] = -8 * 11.0 + 5.5
    if data is None:
        data = (np.random.default_rng(0).random(SHAPE) * 100).astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    path = tmp_path / "scan.nii.gz"
    nib.save(image, str(path))
    return path, affine


def _first_slabs():
    keep = np.zeros(SHAPE, dtype=bool)
    keep[:8] = True  # 2048 voxels
    return keep


def test_half_a_voxel_off_keeps_every_kept_voxel(tmp_path):
    path, affine = _issue_scan(tmp_path)
    prepared = Preprocessor(PreprocessSpec(spacing=[11.0] * 3), SHAPE)(path)
    keep = _first_slabs()
    nearest = resample_to_grid(torch.from_numpy(keep)[None].float(), affine, prepared.affine, SHAPE,
                               interpolation="nearest")[0] > 0.5
    assert int(nearest.sum()) == 1575  # what nearest neighbour did: 23% of the kept region lost
    on_model = cover_mask(keep, affine, prepared.affine, SHAPE)
    assert int(on_model.sum()) == 9 * 16 * 16  # model slabs 0..8 each overlap a kept scan slab
    back = cover_mask(on_model, prepared.affine, affine, SHAPE)
    assert back[keep].all()  # every kept scan voxel lies under a kept model voxel


def _overlaps(src_affine, src_shape, keep, dst_affine, dst_shape, inset=1e-4):
    """Brute force for axis-parallel grids: a destination voxel is kept when its box overlaps a kept source box
    by more than ``inset`` of a source voxel along each axis (cover_mask's face inset is 1e-4: a thinner sliver
    is touching)."""
    out = np.zeros(dst_shape, dtype=bool)
    lo_dst = [dst_affine[a, 3] + dst_affine[a, a] * (np.arange(n) - 0.5) for a, n in enumerate(dst_shape)]
    hi_dst = [dst_affine[a, 3] + dst_affine[a, a] * (np.arange(n) + 0.5) for a, n in enumerate(dst_shape)]
    for index in np.argwhere(keep):
        hit = []
        for a in range(3):
            c, h = src_affine[a, 3] + src_affine[a, a] * index[a], abs(src_affine[a, a]) / 2
            tol = inset * abs(src_affine[a, a])
            lo, hi = np.minimum(lo_dst[a], hi_dst[a]), np.maximum(lo_dst[a], hi_dst[a])
            hit.append((lo < c + h - tol) & (hi > c - h + tol))
        out |= hit[0][:, None, None] & hit[1][None, :, None] & hit[2][None, None, :]
    return out


@given(spacing=st.tuples(*[st.sampled_from([0.7, 1.0, 1.5, 2.0, 3.3])] * 3),
       shift=st.tuples(*[st.floats(-2.0, 2.0)] * 3), flips=st.tuples(*[st.booleans()] * 3),
       seed=st.integers(0, 2**16))
def test_cover_equals_box_overlap_for_parallel_grids(spacing, shift, flips, seed):
    src_shape, dst_shape = (5, 6, 4), (7, 5, 6)
    src = np.diag([*[s * (-1 if f else 1) for s, f in zip(spacing, flips)], 1.0])
    src[:3, 3] = shift
    dst = np.diag([1.25, 1.25, 1.25, 1.0])
    dst[:3, 3] = -2.5
    keep = np.random.default_rng(seed).random(src_shape) < 0.3
    got = cover_mask(keep, src, dst, dst_shape)
    # exact up to the face inset: every overlap wider than twice it is kept, none narrower than half of it
    assert not (_overlaps(src, src_shape, keep, dst, dst_shape, inset=2e-4) & ~got).any()
    assert not (got & ~_overlaps(src, src_shape, keep, dst, dst_shape, inset=0.5e-4)).any()


def test_touching_is_not_overlapping():
    affine = np.eye(4)
    keep = np.zeros((4, 4, 4), dtype=bool)
    keep[1, 1, 1] = True
    np.testing.assert_array_equal(cover_mask(keep, affine, affine, (4, 4, 4)), keep)  # same grid: itself


@pytest.mark.parametrize("dtype, slope, inter", [(np.int16, 2.0, -610.0), (np.uint8, None, None),
                                                 (np.float32, None, None)])
def test_inpainted_file_holds_the_scans_own_voxels(tmp_path, dtype, slope, inter):
    rng = np.random.default_rng(1)
    high = 255 if dtype == np.uint8 else 15000
    data = rng.integers(0, high, SHAPE).astype(dtype)
    path, affine = _issue_scan(tmp_path, data, slope, inter)
    scan = nib.load(str(path))
    prepared = Preprocessor(PreprocessSpec(spacing=[11.0] * 3), SHAPE)(path)
    keep = _first_slabs()
    generated = torch.full((1, *SHAPE), 0.5)  # mid-range in model units
    out, record = write_inpainted(tmp_path / "out.nii.gz", generated, prepared, keep)
    written = nib.load(str(out))
    assert written.get_data_dtype() == scan.get_data_dtype()
    np.testing.assert_array_equal(np.asarray(written.dataobj.get_unscaled())[keep],
                                  np.asarray(scan.dataobj.get_unscaled())[keep])  # bit for bit
    np.testing.assert_array_equal(written.get_fdata()[keep], scan.get_fdata()[keep])  # the same values
    np.testing.assert_allclose(written.affine, affine)
    lo, hi = prepared.intensity_range[0]
    reached = np.zeros(SHAPE, dtype=bool)
    reached[:15, :15, :15] = True  # scan voxel i sits at model voxel i + 0.5: the last one is beyond the grid
    fill = reached & ~keep
    step = (slope or 1.0) if dtype != np.float32 else 1e-3
    np.testing.assert_allclose(written.get_fdata()[fill], lo + 0.5 * (hi - lo), atol=step)  # in the scan's units
    np.testing.assert_array_equal(written.get_fdata()[~reached & ~keep], scan.get_fdata()[~reached & ~keep])
    assert record["kept"]["voxels"] == 2048 and record["generated"]["voxels"] == int(fill.sum())
    assert record["not_generated"]["voxels"] == int((~reached & ~keep).sum())
    assert record["dtype"] == np.dtype(dtype).name
    assert record["intensity"]["mapped_to"] == [[pytest.approx(lo), pytest.approx(hi)]]
    json.dumps(record)  # a sidecar


def test_a_keep_mask_off_the_scans_grid_is_refused(tmp_path):
    path, _affine = _issue_scan(tmp_path)
    prepared = Preprocessor(PreprocessSpec(spacing=[11.0] * 3), SHAPE)(path)
    with pytest.raises(InputError, match="expected a keep-mask on the grid"):
        write_inpainted(tmp_path / "out.nii.gz", torch.zeros(1, *SHAPE), prepared, np.ones((8, 8, 8), bool))
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("chunk", [1 << 21, 7])
def test_inside_grid_is_the_voxels_within_the_outermost_centres(monkeypatch, chunk):
    from metavoxel.io import resample
    from metavoxel.io.resample import inside_grid

    monkeypatch.setattr(resample, "_CHUNK_VOXELS", chunk)
    t = np.deg2rad(20.0)
    src = np.eye(4)
    src[:3, :3] = [[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]]
    src[:3, 3] = [-3.0, -2.0, -1.5]
    grid = np.diag([1.5, 1.5, 1.5, 1.0])
    grid[:3, 3] = -4.0
    shape, grid_shape = (7, 6, 5), (5, 4, 3)
    voxel = np.linalg.solve(grid, src @ np.r_[np.indices(shape).reshape(3, -1), np.ones((1, np.prod(shape)))])[:3]
    expected = ((voxel >= -1e-4) & (voxel <= np.asarray(grid_shape)[:, None] - 1 + 1e-4)).all(0).reshape(shape)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(inside_grid(src, shape, grid, grid_shape), expected)


def test_a_multichannel_scan_keeps_every_channel(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.random((*SHAPE, 2)).astype(np.float32) * 500
    path, _affine = _issue_scan(tmp_path, data)
    prepared = Preprocessor(PreprocessSpec(spacing=[11.0] * 3), SHAPE, channels=2)(path)
    keep = _first_slabs()
    out, record = write_inpainted(tmp_path / "out.nii", torch.full((2, *SHAPE), 0.25), prepared, keep)
    written = np.asarray(nib.load(str(out)).dataobj)
    assert written.shape == (*SHAPE, 2) and written.dtype == np.float32
    np.testing.assert_array_equal(written[keep], data[keep])
    lo, hi = prepared.intensity_range[:, 0], prepared.intensity_range[:, 1]
    np.testing.assert_allclose(written[8:15, :15, :15], np.broadcast_to(lo + 0.25 * (hi - lo), (7, 15, 15, 2)),
                               rtol=1e-5)
    assert record["generated"]["voxels"] == 7 * 15 * 15


@pytest.mark.parametrize("disk_shape", [(12, 10), (12, 10, 1)])
def test_a_2d_scan_keeps_its_voxels_and_layout(tmp_path, disk_shape):
    affine = np.diag([2.0, 2.0, 1.0, 1.0])
    affine[:2, 3] = [-11.0, -9.0]
    data = np.random.default_rng(3).integers(-300, 3000, disk_shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "slice.nii.gz"))
    prepared = Preprocessor(PreprocessSpec(spacing=[2.0, 2.0]), (8, 8))(tmp_path / "slice.nii.gz")
    keep = np.zeros((12, 10), dtype=bool)
    keep[:, :5] = True
    out, record = write_inpainted(tmp_path / "out.nii.gz", torch.full((1, 8, 8), 1.0), prepared, keep)
    written = np.asarray(nib.load(str(out)).dataobj)
    assert written.shape == disk_shape and written.dtype == np.int16
    np.testing.assert_array_equal(written.reshape(12, 10)[keep], data.reshape(12, 10)[keep])
    assert record["kept"]["voxels"] == 60 and record["generated"]["voxels"] > 0
    from metavoxel.io.resample import inside_grid

    fill = ~keep & inside_grid(affine, (12, 10), prepared.affine, (8, 8))
    assert record["generated"]["voxels"] == int(fill.sum()) > 0
    assert np.all(written.reshape(12, 10)[fill] == round(prepared.intensity_range[0, 1]))  # v = 1 -> hi
    np.testing.assert_array_equal(written.reshape(12, 10)[~keep & ~fill], data.reshape(12, 10)[~keep & ~fill])
