"""Fixtures for the cohort tests: the variables of a tiny model and writers of tiny NIfTI files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_COHORT_SPEC = {
    "variables": [
        {"name": "image", "kind": "image", "channels": 1, "shape": [8, 8, 8]},
        {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
        {"name": "sex", "kind": "categorical", "categories": ["F", "M"], "aliases": {"female": "F", "male": "M"}},
    ],
    "diffusion": {"timesteps": 50, "sampling_steps": 5},
    "network": {"spatial_dims": 3, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
                "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16},
}


@pytest.fixture(scope="session")
def cohort_model():
    import metavoxel as mv

    return mv.JointModel(TINY_COHORT_SPEC)


@pytest.fixture(scope="session")
def cohort_variables(cohort_model):
    return cohort_model.variables


@pytest.fixture(scope="session")
def plain_sex_variables():
    """Like `cohort_variables` but sex has no aliases: only F/M (any case) parse."""
    import copy

    import metavoxel as mv

    spec = copy.deepcopy(TINY_COHORT_SPEC)
    spec["variables"][2].pop("aliases")
    return mv.JointModel(spec).variables


@pytest.fixture
def write_nifti():
    """write_nifti(path, shape=(8, 8, 8), value=0.5) -> path: a float32 NIfTI with an identity affine, every
    voxel ``value`` but the first, which is ``value + 1`` (a constant scan is refused)."""
    import nibabel as nib

    def write(path: Path, shape=(8, 8, 8), value: float = 0.5) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.full(shape, value, dtype=np.float32)
        data.flat[0] = value + 1
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        return path

    return write


@pytest.fixture
def write_text():
    """write_text(path, rows, delimiter='\\t') -> path: one line per row of cells."""

    def write(path: Path, rows: list[list[str]], delimiter: str = "\t") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(delimiter.join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
        return path

    return write
