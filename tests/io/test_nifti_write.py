"""write_nifti: float32, both xforms set, channels last on disk, atomic."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from io_anatomy import scan_affine

from metavoxel.errors import InputError
from metavoxel.io.nifti import read_nifti
from metavoxel.io.nifti_write import QFORM_ROTATION_TOLERANCE, write_nifti

OBLIQUE = scan_affine("LPS", (0.9, 1.1, 2.0), (6, 5, 4), 20.0)


def test_float32_with_both_xforms(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.int64).reshape(6, 5, 4)
    path = write_nifti(tmp_path / "out.nii.gz", data, OBLIQUE)
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.float32 and image.shape == (6, 5, 4)
    np.testing.assert_array_equal(np.asarray(image.dataobj), data.astype(np.float32))
    header = image.header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    np.testing.assert_allclose(header.get_sform(), OBLIQUE, atol=1e-5)
    np.testing.assert_allclose(header.get_qform(), OBLIQUE, atol=1e-5)
    assert header.get_xyzt_units()[0] == "mm"


@given(codes=st.sampled_from(["RAS", "LAS", "PIL", "SRA"]), angle=st.floats(-180, 180),
       spacing=st.tuples(*[st.floats(0.3, 4.0)] * 3), centre=st.tuples(*[st.floats(-100, 100)] * 3))
@example(codes="PIL", angle=-89.94, spacing=(1.0, 1.0, 1.0), centre=(0.0, 0.0, 0.0))  # failed with atol 1e-4
@example(codes="RAS", angle=-179.92643726588395, spacing=(0.956103, 3.78579519, 2.38500113),  # the worst of
         centre=(0.0, 0.0, 0.0))                                                         # 6000 drawn: 3.7·√ε₃₂
def test_any_rigid_affine_survives_in_sform_and_qform(tmp_path_factory, codes, angle, spacing, centre):
    """The sform is the affine rounded to float32; the qform is within the float32 quaternion's precision."""
    affine = scan_affine(codes, spacing, (3, 3, 3), angle, centre=np.asarray(centre))
    path = write_nifti(tmp_path_factory.mktemp("x") / "a.nii", np.zeros((3, 3, 3)), affine)
    header = nib.load(str(path)).header
    f32 = np.finfo(np.float32)
    float32 = np.abs(affine) * f32.eps / 2 + f32.tiny  # rounding one entry to float32 (tiny ones underflow)
    assert (np.abs(header.get_sform() - affine) <= float32).all()
    qform = header.get_qform()
    rotation = QFORM_ROTATION_TOLERANCE * np.asarray(spacing)[None, :]  # per column: its voxel size
    assert (np.abs(qform[:3, :3] - affine[:3, :3]) <= rotation + float32[:3, :3]).all()
    assert (np.abs(qform[:3, 3] - affine[:3, 3]) <= float32[:3, 3]).all()


def test_codes_come_from_the_source_header(tmp_path):
    source = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    source.set_sform(np.eye(4), code=4)  # MNI
    source.set_qform(np.eye(4), code=0)
    source.header["descrip"] = b"from the scanner"
    image = nib.load(str(write_nifti(tmp_path / "r.nii.gz", np.ones((3, 4, 5)), OBLIQUE, source.header)))
    assert int(image.header["sform_code"]) == 4  # kept
    assert int(image.header["qform_code"]) == 1  # unset in the source: scanner
    assert image.header["descrip"].tobytes().rstrip(b"\0") == b"from the scanner"
    assert image.shape == (3, 4, 5) and image.get_data_dtype() == np.float32
    np.testing.assert_allclose(image.affine, OBLIQUE, atol=1e-5)


def test_scaled_integer_source_header_does_not_rescale(tmp_path):
    source = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    source.header.set_slope_inter(2.0, 10.0)
    values = np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    path = write_nifti(tmp_path / "r.nii", values, np.eye(4), source.header)
    np.testing.assert_array_equal(nib.load(str(path)).get_fdata(dtype=np.float32), values)


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_go_last_and_read_back(tmp_path, channels):
    data = torch.randn(channels, 4, 5, 6)
    path = write_nifti(tmp_path / "c.nii.gz", data, OBLIQUE)
    assert nib.load(str(path)).shape == ((4, 5, 6) if channels == 1 else (4, 5, 6, channels))
    back, affine = read_nifti(path)
    np.testing.assert_array_equal(back, data.numpy())
    np.testing.assert_allclose(affine, OBLIQUE, atol=1e-5)


def test_2d_with_channels(tmp_path):
    data = np.random.default_rng(0).normal(size=(2, 7, 9)).astype(np.float32)
    path = write_nifti(tmp_path / "p.nii", data, np.eye(4), spatial_dims=2)
    back, _ = read_nifti(path, spatial_dims=2)
    np.testing.assert_array_equal(back, data)
    with pytest.raises(InputError, match="expected a 2D image"):
        write_nifti(tmp_path / "q.nii", np.zeros((2, 3, 4, 5)), np.eye(4), spatial_dims=2)


def test_suffix_picks_compression_and_others_are_refused(tmp_path):
    gz = write_nifti(tmp_path / "a.nii.gz", np.zeros((3, 3, 3)), np.eye(4))
    plain = write_nifti(tmp_path / "a.nii", np.zeros((3, 3, 3)), np.eye(4))
    assert gz.read_bytes()[:2] == b"\x1f\x8b" and gzip.decompress(gz.read_bytes())[344:348] == b"n+1\0"
    assert plain.read_bytes()[344:348] == b"n+1\0"
    for name in ("a.mgz", "a.nii.zip", "a.img", ".nii.gz"):
        with pytest.raises(InputError, match="ending in .nii.gz"):
            write_nifti(tmp_path / name, np.zeros((3, 3, 3)), np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii", "a.nii.gz"]


def test_atomic_no_temporary_files_left(tmp_path):
    out = tmp_path / "deep" / "er" / "img.nii.gz"
    write_nifti(out, np.ones((4, 4, 4)), np.eye(4))
    write_nifti(out, 2 * np.ones((4, 4, 4)), np.eye(4))  # overwrite in place
    assert [p.name for p in out.parent.iterdir()] == ["img.nii.gz"]
    assert float(nib.load(str(out)).get_fdata().max()) == 2.0


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "img.nii.gz"
    write_nifti(out, np.ones((4, 4, 4)), np.eye(4))
    before = out.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:  # fails while encoding: nothing may be created
        patch.setattr(nib.Nifti1Image, "to_bytes", disk_full)
        with pytest.raises(OSError, match="disk full"):
            write_nifti(tmp_path / "new.nii", np.zeros((4, 4, 4)), np.eye(4))
    with monkeypatch.context() as patch:  # fails after the temporary file is complete: it must go
        patch.setattr(os, "replace", disk_full)
        with pytest.raises(OSError, match="disk full"):
            write_nifti(out, np.zeros((4, 4, 4)), np.eye(4))
    assert [p.name for p in tmp_path.iterdir()] == ["img.nii.gz"]
    assert out.read_bytes() == before


def test_bad_affine(tmp_path):
    with pytest.raises(InputError, match="4×4"):
        write_nifti(tmp_path / "a.nii", np.zeros((3, 3, 3)), np.eye(3))
