"""Inpainting metrics: the seam ratio is 1 on any linear ramp and rises with an edge along the mask border;
the region error sees only the generated voxels."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metavoxel.evaluation.inpainting import border_layer, region_error, seam_ratio


def _box_mask(shape: tuple[int, ...], lo: list[int], hi: list[int]) -> torch.Tensor:
    keep = torch.zeros(1, 1, *shape, dtype=torch.bool)
    keep[(0, 0, *[slice(a, b) for a, b in zip(lo, hi)])] = True
    return keep


def _ramp(shape: tuple[int, ...], slope: list[float]) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in shape], indexing="ij")
    return sum(a * c for a, c in zip(axes, slope)).reshape(1, 1, *shape)


boxes = st.integers(2, 3).flatmap(lambda d: st.tuples(
    st.lists(st.integers(8, 12), min_size=d, max_size=d),
    st.lists(st.floats(-3, 3).filter(lambda v: abs(v) > 0.1), min_size=d, max_size=d),
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), min_size=d, max_size=d)))


@given(boxes)
def test_a_linear_ramp_has_no_seam_whatever_the_mask(case):
    shape, slope, corners = case
    keep = _box_mask(tuple(shape), [c[0] for c in corners], [c[0] + c[1] for c in corners])
    ratio = seam_ratio(_ramp(tuple(shape), slope), keep)
    assert float(ratio[0]) == pytest.approx(1.0, rel=1e-9)


@given(boxes, st.floats(5.0, 20.0))
def test_an_edge_along_the_border_raises_the_ratio(case, factor):
    shape, slope, corners = case
    keep = _box_mask(tuple(shape), [c[0] for c in corners], [c[0] + c[1] for c in corners])
    # the kept part shifted by an edge clearly above the ramp's own gradient (a smaller one can cancel it)
    step = factor * math.hypot(*slope)
    image = _ramp(tuple(shape), slope) + step * keep.double()
    assert float(seam_ratio(image, keep)[0]) > 1.05


def test_border_layer_is_the_generated_face_neighbours_of_the_kept_region():
    keep = _box_mask((6, 6), [0, 0], [3, 6])  # the first 3 rows kept
    border = border_layer(keep)
    assert border[0, 0, 3].all() and int(border.sum()) == 6  # exactly the fourth row
    assert not (border & keep).any()


@given(st.integers(0, 2**31 - 1))
def test_region_error_ignores_the_kept_voxels(seed):
    g = torch.Generator().manual_seed(seed)
    truth, images = torch.rand(2, 1, 6, 6, generator=g), torch.rand(2, 1, 6, 6, generator=g)
    keep = torch.rand(2, 1, 6, 6, generator=g) < 0.5
    keep[:, :, 0, 0] = False  # at least one generated voxel each
    changed = torch.where(keep, torch.rand(2, 1, 6, 6, generator=g), images)
    error = region_error(images, truth, keep)
    assert torch.allclose(error, region_error(changed, truth, keep))
    manual = [math.sqrt(float(((images[i] - truth[i])[~keep[i]] ** 2).mean())) for i in range(2)]
    assert error.tolist() == pytest.approx(manual)


def test_shapes_that_do_not_match_and_nothing_generated_are_refused():
    with pytest.raises(ValueError, match="does not match"):
        seam_ratio(torch.rand(1, 1, 4, 4), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no generated region"):
        region_error(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool))
