"""Report figures as grayscale PNGs drawn with numpy (no plotting library): scatter, reliability, slices.

Every plot is a white canvas with black axes, tick labels in the built-in 3×5 font and a caption; series
are told apart by marker shape (filled square, hollow square, cross), named in the legend line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metavoxel.io.font import render_text
from metavoxel.io.png import montage, write_png

__all__ = ["reliability_png", "scatter_png", "slices_png"]

_MARKERS = ("filled", "hollow", "cross")
_SIZE, _MARGIN = 360, 40


def _canvas(title: str, legend: str) -> np.ndarray:
    canvas = np.full((_SIZE + 2 * _MARGIN + 16, _SIZE + 2 * _MARGIN), 255, dtype=np.uint8)
    _text(canvas, title, 4, _MARGIN)
    _text(canvas, legend, _SIZE + 2 * _MARGIN + 4, _MARGIN)
    return canvas


def _text(canvas: np.ndarray, text: str, row: int, col: int, scale: int = 2) -> None:
    ink = render_text(text, scale=scale)
    h, w = ink.shape
    w = min(w, canvas.shape[1] - col)
    if w > 0 and 0 <= row and row + h <= canvas.shape[0]:
        region = canvas[row:row + h, col:col + w]
        region[...] = np.minimum(region, 255 - ink[:, :w])


def _axes(canvas: np.ndarray, lo: float, hi: float, label_x: str, label_y: str, ticks: Sequence[float]) -> None:
    top, left = _MARGIN, _MARGIN
    canvas[top + _SIZE, left:left + _SIZE + 1] = 0
    canvas[top:top + _SIZE + 1, left] = 0
    for value in ticks:
        p = _pos(value, lo, hi)
        canvas[top + _SIZE:top + _SIZE + 4, left + p] = 0
        canvas[top + _SIZE - p, left - 4:left] = 0
        _text(canvas, f"{value:g}", top + _SIZE + 6, left + p - 6, scale=1)
        _text(canvas, f"{value:g}", top + _SIZE - p - 2, 2, scale=1)
    _text(canvas, label_x, top + _SIZE + 14, left + _SIZE // 2 - 4 * len(label_x))
    _text(canvas, label_y, top - 14, 2)


def _pos(value: float, lo: float, hi: float) -> int:
    return int(round(np.clip((value - lo) / (hi - lo), 0.0, 1.0) * (_SIZE - 1)))


def _marker(canvas: np.ndarray, x: int, y: int, style: str) -> None:
    r, c = _MARGIN + _SIZE - y, _MARGIN + x
    box = canvas[max(0, r - 2):r + 3, max(0, c - 2):c + 3]
    if style == "filled":
        box[...] = 0
    elif style == "hollow":
        box[[0, -1], :] = 0
        box[:, [0, -1]] = 0
    else:
        for d in range(-2, 3):
            for rr, cc in ((r + d, c + d), (r + d, c - d)):
                if 0 <= rr < canvas.shape[0] and 0 <= cc < canvas.shape[1]:
                    canvas[rr, cc] = 0


def _diagonal(canvas: np.ndarray) -> None:
    for p in range(0, _SIZE, 3):
        canvas[_MARGIN + _SIZE - p, _MARGIN + p] = 128


def scatter_png(path: str | Path, series: dict[str, tuple[np.ndarray, np.ndarray]], *, lo: float, hi: float,
                title: str, label_x: str, label_y: str) -> Path:
    """Predicted vs true values per series (up to three), with the identity line dotted."""
    names = list(series)[:len(_MARKERS)]
    canvas = _canvas(title, "  ".join(f"{m}: {n}" for m, n in zip(("SQUARE", "OPEN", "X"), names)))
    _axes(canvas, lo, hi, label_x, label_y, np.linspace(lo, hi, 5).round(1))
    _diagonal(canvas)
    for style, name in zip(_MARKERS, names):
        x, y = series[name]
        for a, b in zip(np.asarray(x, dtype=float), np.asarray(y, dtype=float)):
            if np.isfinite(a) and np.isfinite(b):
                _marker(canvas, _pos(a, lo, hi), _pos(b, lo, hi), style)
    return write_png(path, canvas)


def reliability_png(path: str | Path, curves: dict[str, Sequence[tuple[float, float, int]]], *, title: str) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, one marker per non-empty bin."""
    names = list(curves)[:len(_MARKERS)]
    canvas = _canvas(title, "  ".join(f"{m}: {n}" for m, n in zip(("SQUARE", "OPEN", "X"), names)))
    _axes(canvas, 0.0, 1.0, "CONFIDENCE", "ACCURACY", (0.0, 0.25, 0.5, 0.75, 1.0))
    _diagonal(canvas)
    for style, name in zip(_MARKERS, names):
        for confidence, accuracy, count in curves[name]:
            if count > 0:
                _marker(canvas, _pos(confidence, 0, 1), _pos(accuracy, 0, 1), style)
    return write_png(path, canvas)


def slices_png(path: str | Path, rows: dict[str, np.ndarray], *, zoom: int = 3) -> Path:
    """One row per named set of volumes (K, D, H, W): the axial mid-slice of each, the row's name on its left."""
    tiles, width = [], 0
    for name, volumes in rows.items():
        mids = [np.rot90(v[:, :, v.shape[2] // 2]) for v in volumes]
        strip = montage(mids, columns=len(mids), zoom=zoom)
        label = render_text(name[:24], scale=2)
        pad_label = np.zeros((strip.shape[0], 24 * 8 + 8), dtype=np.uint8)
        pad_label[2:2 + label.shape[0], 2:2 + min(label.shape[1], pad_label.shape[1] - 2)] = \
            label[:, :pad_label.shape[1] - 2]
        tiles.append(np.concatenate([pad_label, strip], axis=1))
        width = max(width, tiles[-1].shape[1])
    canvas = np.concatenate([np.pad(t, ((0, 2), (0, width - t.shape[1]))) for t in tiles])
    return write_png(path, canvas)
