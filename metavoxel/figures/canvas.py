"""One way to make and save a figure: matplotlib's Agg canvas, no pyplot, byte-identical output.

Every figure metavoxel draws is a `matplotlib.figure.Figure` attached to an explicit
`FigureCanvasAgg`, so no display (and no interactive backend) is ever needed and the caller's pyplot
state is left alone. `save_figure` writes a PNG and a vector copy (PDF or SVG) beside it, each
atomically (`metavoxel.io.atomic.write_atomic`: a temporary name, then a rename, so with the same file
mode as every other output), with dates and random ids removed so the same figure gives the same bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metavoxel.errors import InputError
from metavoxel.io.atomic import write_atomic

__all__ = ["COLOURS", "VECTOR_FORMATS", "figure", "save_figure"]

#: One colour per model or series, in this order (matplotlib's colour-blind-safe "tab10" start).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
VECTOR_FORMATS = ("pdf", "svg")

# Fixed text and output settings: DejaVu Sans ships with matplotlib, so every machine draws the same glyphs;
# fonttype 42 keeps PDF text editable; the SVG hash salt replaces random element ids.
_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "metavoxel",
    "image.interpolation": "nearest",
}
# What would make two saves of one figure differ (dates), or leak the machine into a paper figure.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None, "Producer": None},
             "svg": {"Date": None, "Creator": None}}


@contextmanager
def figure(width: float, height: float, **kwargs: Any) -> Iterator[Any]:
    """A new figure on an Agg canvas with metavoxel's style, ``width`` × ``height`` inches.

    Use it as ``with figure(6, 4) as fig: ...; save_figure(fig, path)``: the style holds while the figure
    is drawn and saved. Extra keyword arguments go to `matplotlib.figure.Figure` (``layout`` defaults to
    ``"constrained"``).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout=kwargs.pop("layout", "constrained"), **kwargs)
        FigureCanvasAgg(fig)
        yield fig


def save_figure(fig: Any, path: str | Path, *, vector: str | None = "pdf", dpi: int = 150) -> list[Path]:
    """Write ``fig`` to ``path`` (a ``.png``) and, unless ``vector`` is None, a PDF or SVG beside it.

    Both files are written atomically and carry no date, so saving the same figure twice gives the same bytes.
    The layout is solved once, for the PNG, then frozen (the figure's layout engine becomes ``"none"``).

    Args:
        fig: a `matplotlib.figure.Figure` (as made by `figure`).
        path: the PNG to write; the vector copy takes the same name with ``.pdf`` or ``.svg``.
        vector: ``"pdf"``, ``"svg"`` or None (PNG only).
        dpi: PNG resolution in dots per inch.

    Returns:
        The written paths, PNG first.

    Raises:
        InputError: ``path`` does not end in ``.png`` or ``vector`` is not pdf, svg or None.
    """
    import matplotlib

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"a figure path must end in .png (its vector copy goes beside it), got {str(path)!r}")
    if vector is not None and vector not in VECTOR_FORMATS:
        raise InputError(f"vector figure format must be pdf or svg, got {vector!r}")
    written = []
    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():
        # constrained layout warns when a long caption cannot fit; the figure is still written
        warnings.filterwarnings("ignore", message=".*constrained.*", category=UserWarning)
        for fmt, target in (("png", path), *(((vector, path.with_suffix(f".{vector}")),) if vector else ())):
            written.append(write_atomic(target, lambda tmp, f=fmt: fig.savefig(
                tmp, format=f, dpi=dpi, metadata=_METADATA[f], facecolor="white")))
            # the layout is solved once, for the PNG; the vector copy reuses it (same positions, half the work)
            fig.set_layout_engine("none")
    return written
