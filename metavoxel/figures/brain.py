"""Brain views: each image as three orthogonal planes through one point, with orientation letters and a colour bar.

A figure is a grid of images (`BrainImage`): each image takes three panels side by side (axial, coronal,
sagittal; one panel for a 2D image), its caption written under them — e.g. the (age, sex) an image was
generated for. Every panel carries the patient direction at its four edges (R/L, A/P, S/I) read from the
image's affine (`metavoxel.figures.orientation`), and the display convention is stated in the figure's
title. All images share one grey scale and one colour bar in the images' units, so intensities compare
across the grid. A keep-mask (inpainting) is drawn as an outline: inside it the voxels were given and
kept, outside they were generated.

Drawn with plain matplotlib and nibabel. nilearn's plotting would do the slicing too, but it brings
pandas, scipy, scikit-learn, joblib, requests and jinja2 with it — far more than three slices need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metavoxel.errors import InputError
from metavoxel.figures.canvas import figure, save_figure
from metavoxel.figures.orientation import convention_note, orthogonal_planes

__all__ = ["BrainImage", "brain_figure", "brain_views"]

_MASK_COLOUR = "#00d7ff"
_PANEL_INCHES = 1.25


@dataclass(frozen=True)
class BrainImage:
    """One image of a brain-view grid.

    Attributes:
        data: (X, Y, Z) or (X, Y) voxel values (one channel), any orientation; a torch tensor is accepted.
        affine: (4, 4) voxel-to-world (RAS+ mm) affine of ``data``.
        caption: text written under the image (e.g. ``age 70 · sex F``).
        keep: optional keep-mask on the same grid: non-zero where the voxels were given (fixed), zero where
            they were generated; drawn as an outline.
    """

    data: np.ndarray
    affine: np.ndarray
    caption: str = ""
    keep: np.ndarray | None = None


def brain_figure(rows: Sequence[Sequence[BrainImage]], *, convention: str = "radiological", title: str = "",
                 units: str = "intensity", row_labels: Sequence[str] | None = None,
                 point: Sequence[float] | None = None):
    """Draw a grid of brain images; returns the `matplotlib.figure.Figure` (see `brain_views` to save it).

    The returned figure is drawn on an Agg canvas outside any ``with figure(...)`` block, so it can be
    inspected (``fig.axes``: three image panels per 3D image, one per 2D image, then the colour bar).
    Arguments are those of `brain_views`.
    """
    with figure(1, 1, layout=None) as fig:
        _draw(fig, rows, convention=convention, title=title, units=units, row_labels=row_labels, point=point)
    return fig


def brain_views(path: str | Path, rows: Sequence[Sequence[BrainImage]], *, convention: str = "radiological",
                title: str = "", units: str = "intensity", row_labels: Sequence[str] | None = None,
                point: Sequence[float] | None = None, vector: str | None = "pdf") -> list[Path]:
    """Write a grid of brain images (orthogonal planes, orientation letters, colour bar) as PNG + PDF/SVG.

    Args:
        path: the PNG to write (the vector copy goes beside it).
        rows: the grid, row by row; rows may differ in length.
        convention: ``radiological`` (patient's right on the image's left) or ``neurological``; stated on
            the figure.
        title: the figure's title (the convention note is added under it).
        units: the colour bar's label: what the voxel values are (e.g. ``intensity (0-1, model scale)``).
        row_labels: one label per row, written left of the row.
        point: world coordinates (mm) the three planes pass through (default: each image's centre voxel).
        vector: ``pdf``, ``svg`` or None.

    Returns:
        The written paths, PNG first.

    Raises:
        InputError: an empty grid, an image that is not 2D/3D or whose mask is on another grid, a bad affine
            or an unknown convention.
    """
    with figure(1, 1, layout=None) as fig:
        _draw(fig, rows, convention=convention, title=title, units=units, row_labels=row_labels, point=point)
        return save_figure(fig, path, vector=vector)


def _draw(fig, rows: Sequence[Sequence[BrainImage]], *, convention: str, title: str, units: str,
          row_labels: Sequence[str] | None, point: Sequence[float] | None) -> None:
    rows = [list(r) for r in rows if len(r)]
    if not rows:
        raise InputError("a brain view needs at least one image; got an empty grid")
    if row_labels is not None and len(row_labels) != len(rows):
        raise InputError(f"{len(row_labels)} row labels for {len(rows)} rows; give one label per row")
    planes = [[orthogonal_planes(_array(im.data), im.affine, convention=convention, point=point,
                                 mask=None if im.keep is None else _array(im.keep)) for im in row] for row in rows]
    per_image = max(len(p) for row in planes for p in row)
    lo, hi = _range([pl.image for row in planes for p in row for pl in p])
    has_mask = any(im.keep is not None for row in rows for im in row)
    layout = _Layout(len(rows), max(len(row) for row in rows), per_image, row_labels is not None)
    fig.set_size_inches(layout.width, layout.height)
    shown = None
    for r, (row, row_planes) in enumerate(zip(rows, planes)):
        for c, (image, image_planes) in enumerate(zip(row, row_planes)):
            axes = [fig.add_axes(layout.panel(r, c, k)) for k in range(len(image_planes))]
            for ax, plane in zip(axes, image_planes):
                shown = ax.imshow(plane.image, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect=plane.aspect)
                if plane.mask is not None and plane.mask.any() and not plane.mask.all():
                    ax.contour(plane.mask.astype(float), levels=[0.5], colors=_MASK_COLOUR, linewidths=0.8)
                _letters(ax, plane)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.spines[:].set_visible(False)
                ax.set_title(f"{plane.name} {plane.coordinate}", fontsize=6, pad=2)
            axes[len(axes) // 2].set_xlabel(image.caption, fontsize=7)
            if c == 0 and row_labels is not None:
                axes[0].set_ylabel(row_labels[r], fontsize=8)
    bar = fig.colorbar(shown, cax=fig.add_axes(layout.colour_bar()))
    bar.set_label(units)
    note = convention_note(convention)
    if has_mask:
        note += "; outline: the given (kept) region, the rest was generated"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=8, y=1 - 0.06 / layout.height, va="top")


class _Layout:
    """Where each panel goes, in figure fractions, from fixed sizes in inches (no layout solver: a brain grid is
    regular, and solving it took most of the drawing time)."""

    panel_size, panel_gap, image_gap = _PANEL_INCHES, 0.05, 0.15
    title, caption, top, bottom, bar = 0.2, 0.22, 0.45, 0.05, 0.75

    def __init__(self, rows: int, columns: int, per_image: int, labelled: bool):
        self.per_image = per_image
        self.left = 0.3 if labelled else 0.05
        self.image_width = per_image * self.panel_size + (per_image - 1) * self.panel_gap
        self.row_height = self.title + self.panel_size + self.caption
        self.width = self.left + columns * self.image_width + (columns - 1) * self.image_gap + self.bar
        self.height = self.top + rows * self.row_height + self.bottom
        self.rows = rows

    def panel(self, row: int, column: int, k: int) -> list[float]:
        x = self.left + column * (self.image_width + self.image_gap) + k * (self.panel_size + self.panel_gap)
        y = self.height - self.top - row * self.row_height - self.title - self.panel_size
        return [x / self.width, y / self.height, self.panel_size / self.width, self.panel_size / self.height]

    def colour_bar(self) -> list[float]:
        grid = self.rows * self.row_height
        x = self.width - self.bar + 0.12
        y = self.bottom + self.caption + 0.1 * grid
        return [x / self.width, y / self.height, 0.12 / self.width, (0.8 * grid - self.caption) / self.height]


def _letters(ax, plane) -> None:
    """The patient direction at each edge of a panel, inside the image so it cannot be cropped away."""
    style = dict(transform=ax.transAxes, color="yellow", fontsize=6, clip_on=True)
    ax.text(0.03, 0.5, plane.left, ha="left", va="center", gid="edge-left", **style)
    ax.text(0.97, 0.5, plane.right, ha="right", va="center", gid="edge-right", **style)
    ax.text(0.5, 0.03, plane.bottom, ha="center", va="bottom", gid="edge-bottom", **style)
    ax.text(0.5, 0.97, plane.top, ha="center", va="top", gid="edge-top", **style)


def _array(value) -> np.ndarray:
    """A numpy array from numpy or torch, channel dimension of size 1 squeezed."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    value = np.asarray(value)
    while value.ndim > 3 and value.shape[0] == 1:
        value = value[0]
    return value


def _range(images: list[np.ndarray]) -> tuple[float, float]:
    """One grey scale for the whole grid: the 0.5th to 99.5th percentile of every shown voxel."""
    values = np.concatenate([np.asarray(i, dtype=np.float64).ravel() for i in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
