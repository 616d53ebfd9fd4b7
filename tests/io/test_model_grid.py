"""model_grid_affine: the canonical grid of generated images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.errors import SpecError
from metavoxel.io.preprocess import PreprocessSpec, model_grid_affine


def test_ras_diagonal_centred_on_origin():
    affine = model_grid_affine(PreprocessSpec(spacing=[1.5, 2.0, 1.25]), (33, 40, 32))
    np.testing.assert_allclose(np.diag(affine), [1.5, 2.0, 1.25, 1.0])
    np.testing.assert_allclose(affine[:3, :3], np.diag([1.5, 2.0, 1.25]))  # RAS: no rotation, no flips
    np.testing.assert_allclose(affine @ [16, 20, 16, 1], [0, 0, 0, 1])  # voxel shape // 2 at the origin
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], [-24.0, -40.0, -20.0, 1])
    np.testing.assert_allclose(affine[3], [0, 0, 0, 1])


def test_odd_grid_centre_voxel_is_the_origin_and_even_grid_is_nearly_centred():
    odd = model_grid_affine(PreprocessSpec(spacing=[2.0, 2.0, 2.0]), (9, 9, 9))
    np.testing.assert_allclose(odd @ [4, 4, 4, 1], [0, 0, 0, 1])
    np.testing.assert_allclose(odd @ [0, 0, 0, 1] + odd @ [8, 8, 8, 1], [0, 0, 0, 2])  # symmetric about 0
    even = model_grid_affine(PreprocessSpec(spacing=[1.0, 1.0, 1.0]), (8, 8, 8))
    np.testing.assert_allclose(even @ [3.5, 3.5, 3.5, 1], [-0.5, -0.5, -0.5, 1])  # half a voxel off the middle


def test_other_orientations_and_2d():
    lps = model_grid_affine(PreprocessSpec(orientation="LPS", spacing=[1.0, 2.0, 3.0]), (10, 10, 10))
    np.testing.assert_allclose(lps[:3, :3], np.diag([-1.0, -2.0, 3.0]))
    np.testing.assert_allclose(lps @ [5, 5, 5, 1], [0, 0, 0, 1])
    plane = model_grid_affine(PreprocessSpec(spacing=[0.5, 0.5]), (8, 6))
    np.testing.assert_allclose(plane, [[0.5, 0, 0, -2.0], [0, 0.5, 0, -1.5], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(SpecError, match="one spacing per axis"):
        model_grid_affine(PreprocessSpec(), (8, 8))


@given(codes=st.sampled_from(["RAS", "LPS", "ASL", "IRP", "PLS"]), shape=st.tuples(*[st.integers(1, 64)] * 3),
       spacing=st.tuples(*[st.floats(0.25, 4.0)] * 3))
def test_lattice_properties(codes, shape, spacing):
    affine = model_grid_affine(PreprocessSpec(orientation=codes, spacing=list(spacing)), shape)
    np.testing.assert_allclose(affine @ np.r_[np.asarray(shape) // 2, 1], [0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), spacing)  # spacing along each voxel axis
    assert np.count_nonzero(affine[:3, :3]) == 3  # axis-aligned
    for k, code in enumerate(codes):  # voxel axis k points along its code's world direction
        world = "RASLPI".index(code)
        assert np.sign(affine[world % 3, k]) == (1 if world < 3 else -1)
    corner = np.linalg.solve(affine[:3, :3], affine[:3, 3])
    np.testing.assert_allclose(corner, np.round(corner), atol=1e-9)  # voxel centres at whole multiples of spacing
