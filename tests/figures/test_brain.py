"""Brain-view grids: three panels per 3D image, one per 2D image, one colour bar, keep-mask outlines, files."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch

from metavoxel.errors import InputError
from metavoxel.figures import BrainImage, brain_figure, brain_views


def _ball(shape=(12, 14, 10)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"))
    centre = np.array([n / 2 for n in shape])[:, None, None, None]
    return np.exp(-((grid - centre) ** 2).sum(0) / 18.0)


def test_grid_has_three_planes_per_image_one_colour_bar_and_captions_under_the_images():
    volume, affine = _ball(), np.diag([2.0, 2.0, 2.0, 1.0])
    rows = [[BrainImage(volume, affine, f"age {a} · sex {s}") for a in (45, 70, 90)] for s in ("F", "M")]
    fig = brain_figure(rows, title="conditional generation", units="intensity (model scale)", row_labels=["F", "M"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 18 and len(fig.axes) == 19  # 2 × 3 images × 3 planes, and the colour bar
    assert fig.axes[-1].get_ylabel() == "intensity (model scale)"
    captions = [ax.get_xlabel() for ax in panels if ax.get_xlabel()]
    assert captions == [f"age {a} · sex {s}" for s in ("F", "M") for a in (45, 70, 90)]
    assert [ax.get_ylabel() for ax in panels if ax.get_ylabel()] == ["F", "M"]
    assert fig.get_suptitle().startswith("conditional generation\nradiological convention")
    limits = {ax.images[0].get_clim() for ax in panels}
    assert len(limits) == 1, "one grey scale for the whole grid"


def test_the_keep_mask_is_outlined_only_where_it_has_an_edge():
    volume = _ball()
    keep = np.zeros(volume.shape, dtype=bool)
    keep[: volume.shape[0] // 2] = True  # the left hemisphere given (RAS)
    fig = brain_figure([[BrainImage(volume, np.eye(4), "given"), BrainImage(volume, np.eye(4), "inpainted", keep=keep)]])
    given, inpainted = [ax for ax in fig.axes if ax.images][:3], [ax for ax in fig.axes if ax.images][3:]
    assert all(not ax.collections for ax in given)
    outlined = [bool(ax.collections) for ax in inpainted]
    assert outlined == [True, True, False]  # the sagittal plane lies wholly inside the generated half
    assert "outline" in fig.get_suptitle()


def test_torch_volumes_and_2d_images(tmp_path):
    flat = torch.rand(16, 16)
    fig = brain_figure([[BrainImage(flat, np.eye(4), "a 2D image")] * 3])
    assert len([ax for ax in fig.axes if ax.images]) == 3
    png, pdf = brain_views(tmp_path / "views.png", [[BrainImage(torch.from_numpy(_ball()).float(), np.eye(4), "x")]])
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01 and pdf.read_bytes().startswith(b"%PDF")


def test_bad_grids_are_refused():
    with pytest.raises(InputError, match="at least one image"):
        brain_figure([])
    with pytest.raises(InputError, match="one label per row"):
        brain_figure([[BrainImage(_ball(), np.eye(4))]], row_labels=["a", "b"])
