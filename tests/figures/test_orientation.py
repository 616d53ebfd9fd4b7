"""Orientation letters on brain views: the side labelled L is where the patient's left hemisphere is drawn.

The test anatomy (in world RAS) has its left hemisphere zeroed, a brighter anterior half and a brighter
superior half, and is stored RAS, LAS, LPS or with permuted axes (ASR): every letter on every panel is
checked against what is drawn next to it, in both conventions. A swapped side label is a safety defect.
"""

from __future__ import annotations

import numpy as np
import pytest

from metavoxel.errors import InputError
from metavoxel.figures import BrainImage, brain_figure, convention_note, orthogonal_planes

SHAPE = (10, 12, 8)  # world RAS voxels along x (R), y (A), z (S); even, so halves are exact
_AXIS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def world_anatomy() -> np.ndarray:
    """(X, Y, Z) in RAS voxel order: 1, +1 anterior half, +2 superior half; the left hemisphere (x < mid) zero."""
    volume = np.ones(SHAPE)
    volume[:, SHAPE[1] // 2:] += 1.0
    volume[:, :, SHAPE[2] // 2:] += 2.0
    volume[: SHAPE[0] // 2] = 0.0
    return volume


def stored(codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The world anatomy stored with voxel axes pointing ``codes`` (e.g. LPS), with its affine."""
    world = world_anatomy()
    axes = [_AXIS[c][0] for c in codes]
    data = np.transpose(world, axes)  # storage axis k holds world axis axes[k]
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for k, code in enumerate(codes):
        axis, sign = _AXIS[code]
        if sign < 0:
            data = np.flip(data, axis=k)
        affine[axis, k] = sign * 2.0  # 2 mm voxels
        affine[axis, 3] = (SHAPE[axis] - 1) * 2.0 if sign < 0 else 0.0
    return np.ascontiguousarray(data), affine


def halves(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape
    return {"left": image[:, : w // 2], "right": image[:, w - w // 2:], "bottom": image[: h // 2],
            "top": image[h - h // 2:]}


def check_panel(image: np.ndarray, letters: dict[str, str]) -> None:
    """Every edge letter agrees with the anatomy drawn on that half of the panel."""
    parts = halves(image)
    opposite = {"left": "right", "right": "left", "bottom": "top", "top": "bottom"}
    for edge, letter in letters.items():
        mine, theirs = parts[edge], parts[opposite[edge]]
        if letter == "L":
            assert np.all(mine == 0) and np.any(theirs > 0), f"{edge} edge says L but the left hemisphere is not there"
        elif letter == "R":
            assert np.any(mine > 0) and np.all(theirs == 0), f"{edge} edge says R but the left hemisphere is there"
        else:  # A and S halves are brighter than P and I halves
            brighter = mine.mean() > theirs.mean()
            assert brighter == (letter in "AS"), f"{edge} edge says {letter}, the anatomy disagrees"


@pytest.mark.parametrize("codes", ["RAS", "LAS", "LPS", "ASR"])
@pytest.mark.parametrize("convention", ["radiological", "neurological"])
def test_drawn_letters_match_the_anatomy_beside_them(codes, convention):
    data, affine = stored(codes)
    fig = brain_figure([[BrainImage(data, affine, "subject")]], convention=convention)
    panels = [ax for ax in fig.axes if ax.images and ax.texts]
    assert [ax.get_title().split()[0] for ax in panels] == ["axial", "coronal", "sagittal"]
    for ax in panels:
        letters = {t.get_gid().removeprefix("edge-"): t.get_text() for t in ax.texts}
        check_panel(np.asarray(ax.images[0].get_array()), letters)
    axial, coronal, sagittal = ({t.get_gid(): t.get_text() for t in ax.texts} for ax in panels)
    left_side = "edge-right" if convention == "radiological" else "edge-left"
    assert axial[left_side] == "L" and coronal[left_side] == "L"
    assert axial["edge-top"] == "A" and coronal["edge-top"] == "S" and sagittal["edge-top"] == "S"
    assert sagittal["edge-left"] == "A"
    assert convention in fig.get_suptitle() and convention_note(convention) in fig.get_suptitle()


def test_planes_pass_through_the_given_world_point():
    data, affine = stored("LPS")
    axial, coronal, sagittal = orthogonal_planes(data, affine, point=(6.0, 4.0, 2.0))
    assert axial.coordinate == "z = 2 mm" and coronal.coordinate == "y = 4 mm" and sagittal.coordinate == "x = 6 mm"
    assert axial.image.shape == (SHAPE[1], SHAPE[0]) and sagittal.image.shape == (SHAPE[2], SHAPE[1])
    with pytest.raises(InputError, match="outside the image"):
        orthogonal_planes(data, affine, point=(500.0, 0.0, 0.0))


def test_anisotropic_voxels_keep_their_aspect_and_a_2d_image_has_one_panel():
    data, affine = stored("RAS")
    affine[2, 2] = 6.0  # 6 mm slices, 2 mm in-plane
    axial, coronal, sagittal = orthogonal_planes(data, affine)
    assert axial.aspect == 1.0 and coronal.aspect == 3.0 and sagittal.aspect == 3.0
    flat = orthogonal_planes(data[:, :, 0], np.eye(4), convention="neurological")
    assert len(flat) == 1 and (flat[0].left, flat[0].right) == ("L", "R")


def test_bad_inputs_are_one_line_errors():
    data, affine = stored("RAS")
    with pytest.raises(InputError, match="radiological or neurological"):
        orthogonal_planes(data, affine, convention="left-handed")
    with pytest.raises(InputError, match="4x4"):
        orthogonal_planes(data, np.zeros((4, 4)))
    with pytest.raises(InputError, match="keep-mask has shape"):
        orthogonal_planes(data, affine, mask=np.ones((3, 3, 3)))
    with pytest.raises(InputError, match="2D or 3D"):
        orthogonal_planes(np.zeros((2, 3, 4, 5)), affine)
