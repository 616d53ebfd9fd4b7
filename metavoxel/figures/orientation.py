"""Which side of a brain slice is the patient's left: three orthogonal planes and their edge labels from the affine.

A volume is first brought to RAS voxel order with nibabel (`io_orientation`: flips and transposes only,
no interpolation), so that voxel axes 0, 1, 2 point towards the patient's Right, Anterior and Superior;
the edge letters are then read back from the reoriented affine with `aff2axcodes`, never assumed.

Display conventions (the panel's horizontal axis, as seen by the reader):

- **radiological**: the reader faces the patient, so the patient's right is on the image's left (axial and
  coronal panels);
- **neurological**: the reader looks from behind, so the patient's right is on the image's right.

Sagittal panels show anterior on the left in both conventions (the face looks left, as on a scanner
console). Every panel has superior (axial: anterior) at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from metavoxel.errors import InputError

__all__ = ["CONVENTIONS", "Convention", "Plane", "convention_note", "orthogonal_planes", "to_ras"]

Convention = Literal["radiological", "neurological"]
CONVENTIONS: tuple[str, ...] = ("radiological", "neurological")
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


@dataclass(frozen=True)
class Plane:
    """One panel ready to draw with ``imshow(image, origin="lower", aspect=aspect)``.

    Attributes:
        name: ``axial``, ``coronal`` or ``sagittal``.
        image: (rows, columns) values; row 0 is drawn at the bottom, column 0 at the left.
        mask: the same slice of the keep-mask (True = given), or None.
        aspect: height / width of one pixel (voxel sizes in mm), for undistorted anatomy.
        left, right, bottom, top: the patient direction at each edge (``R``, ``L``, ``A``, ``P``, ``S``, ``I``).
        coordinate: the world coordinate (mm) of the slice along its normal, e.g. ``z = 12.0``.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    aspect: float
    left: str
    right: str
    bottom: str
    top: str
    coordinate: str


def convention_note(convention: str) -> str:
    """The sentence stated on a figure: which side of an axial or coronal panel is the patient's right."""
    _check(convention)
    side = "left" if convention == "radiological" else "right"
    return f"{convention} convention: the patient's right is on the image's {side}"


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder ``data`` (X, Y, Z) so that its voxel axes point R, A, S; returns (data, affine) reoriented.

    Only flips and transposes (nibabel's `io_orientation`, the closest axes of an oblique affine);
    a 2D image (X, Y) is treated as one slice, (X, Y, 1).

    Raises:
        InputError: ``data`` is not 2D or 3D, or ``affine`` is not a 4×4 matrix with an invertible 3×3 part.
    """
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[:, :, None]
    affine = np.asarray(affine, dtype=np.float64)
    if data.ndim != 3:
        raise InputError(f"a brain view needs a 2D or 3D image, got shape {tuple(data.shape)}; pass one channel")
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"a brain view needs a 4x4 voxel-to-world affine with an invertible 3x3 part, got "
                         f"{affine.tolist()}; pass the image's NIfTI affine")
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(("R", "A", "S")))
    return apply_orientation(data, transform), affine @ inv_ornt_aff(transform, data.shape)


def orthogonal_planes(data: np.ndarray, affine: np.ndarray, *, convention: str = "radiological",
                      point: Sequence[float] | None = None, mask: np.ndarray | None = None) -> list[Plane]:
    """The axial, coronal and sagittal planes through one point (only the axial plane of a 2D image).

    Args:
        data: (X, Y, Z) or (X, Y) voxel values in any orientation.
        affine: (4, 4) voxel-to-world (RAS+ mm) affine of ``data``.
        convention: ``radiological`` or ``neurological`` (see the module docstring).
        point: world coordinates (mm) the three planes pass through; default: voxel ``shape // 2``.
        mask: a keep-mask on the same grid (non-zero = given voxel), sliced alongside.

    Returns:
        ``[axial, coronal, sagittal]`` (``[axial]`` for a 2D image), each a `Plane`.

    Raises:
        InputError: bad shapes or affine (see `to_ras`), a mask on another grid, an unknown convention,
            or a point outside the image.
    """
    _check(convention)
    raw_shape = np.asarray(data).shape
    volume, ras_affine = to_ras(data, affine)
    keep = None
    if mask is not None:
        if np.asarray(mask).shape != raw_shape:
            raise InputError(f"the keep-mask has shape {np.asarray(mask).shape}, the image {raw_shape}; "
                             "pass the mask on the image's grid")
        keep = to_ras(np.asarray(mask) != 0, affine)[0]
    codes = _codes(ras_affine)
    spacing = np.sqrt((ras_affine[:3, :3] ** 2).sum(axis=0))  # (3,) mm per voxel along each axis
    if point is None:
        index = np.asarray(volume.shape) // 2
    else:
        voxel = np.linalg.solve(ras_affine, np.append(np.asarray(point, dtype=np.float64), 1.0))[:3]
        index = np.round(voxel).astype(int)
        if np.any(index < 0) or np.any(index >= volume.shape):
            raise InputError(f"the point {list(point)} mm lies outside the image; give a point inside its field "
                             "of view")
    world = (ras_affine @ np.append(index, 1.0))[:3]
    flip = convention == "radiological"  # patient right (voxel axis 0 increasing) drawn on the left
    planes = [_plane("axial", volume[:, :, index[2]], keep, (slice(None), slice(None), index[2]), (0, 1),
                     codes, spacing, flip, f"z = {world[2]:.0f} mm")]
    if volume.shape[2] > 1:
        planes.append(_plane("coronal", volume[:, index[1], :], keep, (slice(None), index[1], slice(None)), (0, 2),
                             codes, spacing, flip, f"y = {world[1]:.0f} mm"))
        # sagittal: anterior on the left, i.e. voxel axis 1 (towards A) reversed on screen
        planes.append(_plane("sagittal", volume[index[0], :, :], keep, (index[0], slice(None), slice(None)), (1, 2),
                             codes, spacing, True, f"x = {world[0]:.0f} mm"))
    return planes


def _plane(name: str, section: np.ndarray, keep: np.ndarray | None, where: tuple, axes: tuple[int, int],
           codes: tuple[str, ...], spacing: np.ndarray, reverse: bool, coordinate: str) -> Plane:
    """``section`` is indexed (horizontal axis, vertical axis); transpose so rows run along the vertical one."""
    horizontal, vertical = axes
    image = section.T  # (vertical, horizontal)
    mask = keep[where].T if keep is not None else None
    right, left = codes[horizontal], _OPPOSITE[codes[horizontal]]  # the axis points to `right` as index grows
    if reverse:
        image = image[:, ::-1]
        mask = mask[:, ::-1] if mask is not None else None
        left, right = right, left
    return Plane(name, np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask),
                 float(spacing[vertical] / spacing[horizontal]), left, right, _OPPOSITE[codes[vertical]],
                 codes[vertical], coordinate)


def _codes(affine: np.ndarray) -> tuple[str, ...]:
    from nibabel.orientations import aff2axcodes

    return tuple(str(c) for c in aff2axcodes(affine))


def _check(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InputError(f"view convention must be radiological or neurological, got {convention!r}")
