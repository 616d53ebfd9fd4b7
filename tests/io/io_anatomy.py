"""A synthetic head for the io tests: a smooth, asymmetric function of world coordinates (mm, RAS+)
sampled onto any voxel grid, so the same anatomy can be stored in any orientation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

# World point the test fields of view are centred on; chosen away from the 1.25 mm lattice's ties.
CENTRE = np.array([3.3, -4.6, 10.2])
_AXES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def anatomy(world: np.ndarray) -> np.ndarray:
    """Intensity at world points (3, N) -> (N,).

    An off-centre ellipsoid "head" (radii 7.5, 6, 5 mm, smooth edge) whose intensity rises along +x,
    falls along +y and rises along +z, with a darker off-centre "ventricle": no flip, rotation or axis
    swap maps it onto itself, and its second derivatives stay small enough for linear interpolation.
    """
    rel = world - CENTRE[:, None]
    q = (((rel - np.array([[2.0], [-1.5], [1.0]])) / np.array([[7.5], [6.0], [5.0]])) ** 2).sum(0)
    head = 0.5 * (1.0 + np.tanh(1.0 - q))
    ramp = 1.0 + 0.03 * rel[0] - 0.02 * rel[1] + 0.025 * rel[2]
    v = (((rel - np.array([[-2.0], [1.0], [0.0]])) / np.array([[4.5], [3.5], [4.0]])) ** 2).sum(0)
    return 100.0 * head * ramp * (1.0 - 0.35 * np.exp(-v))


def world_of(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates (3, N) of every voxel centre of a 3D grid, in C order."""
    ijk = np.indices(shape).reshape(len(shape), -1).astype(np.float64)
    return affine[:3, :3] @ ijk + affine[:3, 3:]


def sample(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The anatomy on a 3D voxel grid, float32 of ``shape``."""
    return anatomy(world_of(affine, shape)).reshape(shape).astype(np.float32)


def scan_affine(codes: str = "RAS", spacing=(1.0, 1.0, 1.0), shape=(32, 32, 32), rotate_z_deg: float = 0.0,
                centre: np.ndarray = CENTRE) -> np.ndarray:
    """A 4×4 affine whose voxel axes point along ``codes``, rotated about z, with the FOV centred on ``centre``."""
    linear = np.zeros((3, 3))
    for k, code in enumerate(codes):
        axis, sign = _AXES[code]
        linear[axis, k] = sign * spacing[k]
    t = np.deg2rad(rotate_z_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ linear
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def write_scan(path: Path, affine: np.ndarray, shape: tuple[int, ...], data: np.ndarray | None = None) -> Path:
    """Write the anatomy (or ``data``) on a grid as a NIfTI with both sform and qform set (code 1)."""
    image = nib.Nifti1Image(sample(affine, shape) if data is None else data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path
