"""Problems in the voxels are found in the up-front validation, with row and column, beside the table's others."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from metavoxel.data import CohortError, read_bids, read_table

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")


def _scan(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (8, 8, 8)).astype(np.float32)


def _nan(path):
    data = _scan()
    data[:3, :3, :3] = np.nan  # 27 NaN voxels, the case
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def _inf(path):
    data = _scan()
    data[0, 0, :2] = [np.inf, -np.inf]
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def _zeros(path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), path)


def _constant(path):
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 7, np.int16), np.eye(4)), path)


def _complex(path):
    nib.save(nib.Nifti1Image(_scan().astype(np.complex64), np.eye(4)), path)


def _flat_affine(path):
    img = nib.Nifti1Image(_scan(), None)
    img.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=2)  # a collapsed axis: nothing can be resampled from it
    nib.save(img, path)


def _truncated(path):
    nib.save(nib.Nifti1Image(_scan(), np.eye(4)), path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) - 1000]))  # the header survives, the voxels do not


CASES = {
    "nan": (_nan, "has 27 NaN voxels (of 512); expected finite values"),
    "inf": (_inf, "has 2 infinite voxels (of 512)"),
    "zeros": (_zeros, "is constant (every voxel is 0: the scan is empty)"),
    "constant": (_constant, "is constant (every voxel is 7: the scan holds no image)"),
    "complex": (_complex, "holds voxels of type complex64 (expected real numbers"),
    "flat_affine": (_flat_affine,
                    "has an affine that is not finite or has a zero voxel size (voxel sizes 1 × 0 × 1 mm)"),
    "truncated": (_truncated, "has a readable header but its voxels cannot be read"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unusable_voxels_are_reported_with_row_and_column_beside_other_problems(case, tmp_path, write_nifti,
                                                                               write_text, cohort_variables):
    write, expected = CASES[case]
    write_nifti(tmp_path / "good.nii.gz")
    write(tmp_path / "bad.nii.gz")
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "image", "age"], ["1", "good.nii.gz", "60"],
                                                 ["2", "bad.nii.gz", "61"], ["3", "good.nii.gz", "old"]])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables)
    lines = [p.line() for p in err.value.problems]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"  row 3, column 'image': image: 'bad.nii.gz' {expected}"), lines[0]
    assert lines[1].startswith("  row 4, column 'age': age: expected a number")


def test_unusable_voxels_in_a_bids_tree_name_the_file(tmp_path, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"]])
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)
    _nan(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert [p.line() for p in err.value.problems] == [
        "  sub-01/anat/sub-01_T1w.nii.gz: image: 'sub-01/anat/sub-01_T1w.nii.gz' has 27 NaN voxels (of 512); "
        "expected finite values: set them to a real intensity (e.g. 0 outside the head), or leave the cell empty to "
        "use the row's metadata only"]


def test_a_scan_is_read_again_once_it_changes(tmp_path, write_nifti, write_text, cohort_variables):
    _nan(tmp_path / "scan.nii.gz")
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "image"], ["1", "scan.nii.gz"]])
    with pytest.raises(CohortError, match="NaN"):
        read_table(table, cohort_variables)
    write_nifti(tmp_path / "scan.nii.gz", value=3.0)  # fixed: a new size or modification time
    assert read_table(table, cohort_variables)[0].values["image"] == str(tmp_path / "scan.nii.gz")
