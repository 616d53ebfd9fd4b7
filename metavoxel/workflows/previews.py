"""What the workflows' brain-view previews share: the model grid's affine, captions, units and wrapping.

Every preview (sample, demo, evaluate, the paper benchmark) is a `metavoxel.figures.brain_views` grid:
three orthogonal planes per image, orientation letters from the affine, one colour bar, PNG + PDF.
Images are shown on the model grid, in the model's intensity scale, in radiological convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metavoxel.figures import BrainImage
from metavoxel.io.preprocess import PreprocessSpec, model_grid_affine
from metavoxel.variables.capabilities import PreparesScans, voxel_grid
from metavoxel.variables.protocol import Variable

__all__ = ["UNITS", "caption", "grid_affine", "wrap"]

#: The colour-bar label of images on the model grid.
UNITS = "intensity (model scale)"


def grid_affine(var: Variable) -> np.ndarray:
    """The (4, 4) model-grid affine of an image variable (its preprocessing spec, or 1 mm RAS without one).

    Read through declared capabilities only: `PreparesScans` for the preprocessing, `voxel_grid` for the grid.
    """
    _channels, grid = voxel_grid(var)
    spec = var.preprocessor.spec if isinstance(var, PreparesScans) and var.preprocessor is not None else \
        PreprocessSpec(spacing=[1.0] * len(grid))
    return model_grid_affine(spec, grid)


def caption(values: Mapping[str, Any]) -> str:
    """``{"age": 70.04, "sex": "F"}`` -> ``age 70.0 · sex F`` (the values an image was generated for or with)."""
    return " · ".join(f"{name} {value:.1f}" if isinstance(value, float) else f"{name} {value}"
                      for name, value in values.items())


def wrap(images: Sequence[BrainImage], columns: int = 4) -> list[list[BrainImage]]:
    """A flat list of images as rows of at most ``columns``."""
    return [list(images[i:i + columns]) for i in range(0, len(images), columns)]
