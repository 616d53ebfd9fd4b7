"""Preprocessing inputs: the spec, intensity scaling, the spacing warning, channels, 2D, and bad files."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from io_anatomy import anatomy, sample, scan_affine, write_scan
from pydantic import ValidationError

from metavoxel.errors import InputError, SpecError
from metavoxel.io.preprocess import Preprocessor, PreprocessSpec, SpacingWarning

GRID = (16, 16, 16)


@pytest.fixture
def scan(tmp_path):
    return write_scan(tmp_path / "scan.nii.gz", scan_affine(shape=(24, 24, 24)), (24, 24, 24))


# --- the spec -------------------------------------------------------------------------------------------------

def test_spec_defaults_and_round_trip():
    spec = PreprocessSpec()
    assert (spec.orientation, spec.spacing, spec.percentiles) == ("RAS", [1.0, 1.0, 1.0], (0.5, 99.5))
    assert (spec.spacing_warning_ratio, spec.interpolation) == (2.0, "linear")
    assert PreprocessSpec.model_validate_json(spec.model_dump_json()) == spec
    assert PreprocessSpec(orientation="lps").orientation == "LPS"
    assert PreprocessSpec(percentiles=None).percentiles is None


@pytest.mark.parametrize("bad", [{"spacing": [1.0, 0.0, 1.0]}, {"spacing": [1.0]}, {"spacing": [1, 1, 1, 1]},
                                 {"percentiles": (99.5, 0.5)}, {"percentiles": (-1.0, 50.0)},
                                 {"orientation": "RAR"}, {"orientation": "RASX"}, {"spacing_warning_ratio": 1.0},
                                 {"interpolation": "cubic"}, {"spacng": [1, 1, 1]}])
def test_spec_rejects(bad):
    with pytest.raises(ValidationError):
        PreprocessSpec(**bad)


def test_spacing_must_match_the_grid():
    with pytest.raises(SpecError, match="one spacing per axis"):
        Preprocessor(PreprocessSpec(), (8, 8))
    with pytest.raises(SpecError, match="x-y plane"):
        Preprocessor(PreprocessSpec(orientation="SAR", spacing=[1.0, 1.0]), (8, 8))


# --- intensity scaling -----------------------------------------------------------------------------------------

def test_percentiles_map_to_unit_range(scan):
    raw = Preprocessor(PreprocessSpec(percentiles=None), GRID)(scan)
    scaled = Preprocessor(PreprocessSpec(percentiles=(0.5, 99.5)), GRID)(scan)
    assert raw.intensity_range is None
    assert scaled.tensor.dtype == torch.float32 and scaled.tensor.shape == (1, *GRID)
    assert float(scaled.tensor.min()) == 0.0 and float(scaled.tensor.max()) == 1.0
    lo, hi = np.percentile(raw.tensor.numpy(), [0.5, 99.5])
    np.testing.assert_allclose(scaled.intensity_range, [[lo, hi]], rtol=1e-5, atol=1e-5)
    expected = np.clip((raw.tensor.numpy() - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(scaled.tensor.numpy(), expected, atol=1e-5)
    clipped = float((scaled.tensor == 1.0).float().mean())
    assert 0.002 < clipped < 0.01  # the top 0.5 % saturate


def test_channels_are_scaled_each_on_its_own(tmp_path):
    affine = scan_affine(shape=(24, 24, 24))
    t1 = sample(affine, (24, 24, 24))
    path = write_scan(tmp_path / "two.nii.gz", affine, (24, 24, 24), np.stack([t1, 3 * t1 + 40], axis=-1))
    image = Preprocessor(PreprocessSpec(), GRID, channels=2)(path)
    assert image.tensor.shape == (2, *GRID) and image.intensity_range.shape == (2, 2)
    np.testing.assert_allclose(image.intensity_range[1], 3 * image.intensity_range[0] + 40, rtol=1e-5)
    np.testing.assert_allclose(image.tensor[0].numpy(), image.tensor[1].numpy(), atol=1e-5)
    with pytest.raises(InputError, match="2 channel"):
        Preprocessor(PreprocessSpec(), GRID, channels=1)(path)


def test_constant_image_cannot_be_scaled(tmp_path):
    path = write_scan(tmp_path / "flat.nii.gz", np.eye(4), (20, 20, 20), np.full((20, 20, 20), 7, np.float32))
    with pytest.raises(InputError, match="flat.nii.gz.*constant"):
        Preprocessor(PreprocessSpec(), GRID)(path)
    assert float(Preprocessor(PreprocessSpec(percentiles=None), GRID)(path).tensor.max()) == pytest.approx(7.0)


# --- the spacing warning ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, warns", [(3.0, True), (0.4, True), (1.2, False), (1.9, False)])
def test_spacing_warning(tmp_path, size, warns):
    shape = (int(24 / size),) * 3
    path = write_scan(tmp_path / f"vox{size}.nii.gz", scan_affine("LPS", (size,) * 3, shape), shape)
    pre = Preprocessor(PreprocessSpec(), GRID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pre(path)
    spacing_warnings = [w for w in caught if issubclass(w.category, SpacingWarning)]
    assert len(spacing_warnings) == (1 if warns else 0)
    if warns:
        message = str(spacing_warnings[0].message)
        assert f"vox{size}.nii.gz" in message and "1×1×1 mm" in message
        assert f"{size:g}×{size:g}×{size:g} mm" in message


def test_spacing_warning_looks_at_each_axis(tmp_path):
    path = write_scan(tmp_path / "thick.nii.gz", scan_affine(spacing=(1.0, 1.0, 3.0), shape=(24, 24, 8)), (24, 24, 8))
    with pytest.warns(SpacingWarning, match="axis S"):
        Preprocessor(PreprocessSpec(), GRID)(path)


# --- 2D --------------------------------------------------------------------------------------------------------

def _plane(affine, shape):
    """The anatomy on a 2D grid: the plane of the affine's first two voxel axes."""
    ij = np.indices(shape).reshape(2, -1).astype(np.float64)
    return anatomy(affine[:3, :2] @ ij + affine[:3, 3:]).reshape(shape).astype(np.float32)


def test_2d_images_in_flipped_orientation(tmp_path):
    ras = scan_affine(shape=(28, 28, 1))
    lps = scan_affine("LPS", shape=(28, 28, 1))
    paths = [write_scan(tmp_path / f"{name}.nii.gz", affine, (28, 28), _plane(affine, (28, 28)))
             for name, affine in (("ras", ras), ("lps", lps))]
    pre = Preprocessor(PreprocessSpec(spacing=[1.25, 1.25], percentiles=None), (16, 16))
    a, b = pre(paths[0]), pre(paths[1])
    assert a.tensor.shape == (1, 16, 16) and a.source.shape == (28, 28)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-9)
    np.testing.assert_allclose(a.tensor.numpy(), b.tensor.numpy(), atol=1e-4)  # flips only: identical samples
    expected = _plane(a.affine, (16, 16))
    assert np.abs(a.tensor[0].numpy() - expected)[2:-2, 2:-2].max() < 2.5


# --- bad files -------------------------------------------------------------------------------------------------

def _corrupt(tmp_path):
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08 this is not gzip data at all")
    return path


def _truncated(tmp_path):
    path = write_scan(tmp_path / "truncated.nii", np.eye(4), (20, 20, 20))
    path.write_bytes(path.read_bytes()[:600])
    return path


def _flat(tmp_path):
    image = nib.Nifti1Image(np.zeros((20, 20), np.float32), np.eye(4))
    path = tmp_path / "slice2d.nii.gz"
    nib.save(image, str(path))
    return path


def _text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return path


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "missing.nii.gz", "does not exist"),
    (_text, "not a NIfTI"),
    (_corrupt, "cannot read"),
    (_truncated, "cannot read"),
    (_flat, "2 dimensions"),
])
def test_bad_files_raise_input_error_naming_the_file(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=match) as info:
        Preprocessor(PreprocessSpec(), GRID, name="t1")(path)
    assert path.name in str(info.value) and str(info.value).startswith("t1:")
