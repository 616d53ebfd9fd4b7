"""What the workflows' previews share: the model grid's affine, captions and wrapping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import metavoxel as mv
from metavoxel.figures import BrainImage
from metavoxel.workflows.previews import caption, grid_affine, wrap


def test_captions_and_wrapping():
    assert caption({"age": 70.04, "sex": "F"}) == "age 70.0 · sex F"
    images = [BrainImage(np.zeros((2, 2)), np.eye(4), str(i)) for i in range(9)]
    assert [len(row) for row in wrap(images)] == [4, 4, 1]


def test_images_are_shown_on_their_model_grid():
    """The grid is read through declared capabilities: `PreparesScans` (preprocessor + prepare) for the
    preprocessing, `HasVoxelGrid` (channels + shape) for the grid."""
    spec = mv.PreprocessSpec(orientation="LPS", spacing=[2.0, 2.0, 2.0])
    image = SimpleNamespace(channels=1, shape=(8, 8, 8), preprocessor=SimpleNamespace(spec=spec),
                            prepare=lambda text: None)
    np.testing.assert_allclose(grid_affine(image), mv.model_grid_affine(spec, (8, 8, 8)))
    pixels = SimpleNamespace(channels=1, shape=(8, 8), preprocessor=None,  # no preprocessing: 1 mm RAS,
                             prepare=lambda text: None)                    # centre at the origin
    np.testing.assert_allclose(np.diag(grid_affine(pixels)), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(grid_affine(pixels) @ [4, 4, 0, 1], [0, 0, 0, 1])
