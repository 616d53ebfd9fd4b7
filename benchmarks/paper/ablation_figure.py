"""The paper benchmark's sampling-ablation figure: each metric against reverse steps and samples per subject.

Only the benchmark measures these ablations (`run.py`), so the figure lives beside it rather than in
`metavoxel.figures`; it draws with the package's canvas (`metavoxel.figures.canvas`), as the report's figures do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from metavoxel.errors import InputError
from metavoxel.figures.canvas import COLOURS, figure, save_figure

__all__ = ["ablation_lines"]


def ablation_lines(path: str | Path, ablation: Mapping[str, Sequence[Mapping[str, float]]], *,
                   name: str = "age", categorical: str = "sex", unit: str = "",
                   vector: str | None = "pdf") -> list[Path]:
    """The sampling ablations as line plots: each metric against reverse steps and against samples per subject,
    with the seconds per subject on a second y axis.

    Args:
        ablation: ``{"steps": [{"steps": 10, "mae": .., "accuracy": .., "fid": .., "seconds_per_subject": ..}, ..],
            "samples": [{"samples": 1, "mae": .., "accuracy": .., "seconds_per_subject": ..}, ..]}``; either
            key may be absent, a missing or null metric leaves its point out.

    Returns:
        The written paths; the figure has one row per ablation and one panel per metric it holds
        (MAE, accuracy, FID), each with its twin seconds axis.

    Raises:
        InputError: neither ablation present.
    """
    metrics = (("mae", f"{name} MAE{' (' + unit + ')' if unit else ''}"), ("accuracy", f"{categorical} accuracy"),
               ("fid", "FID"))
    rows = [(key, ablation[key]) for key in ("steps", "samples") if ablation.get(key)]
    if not rows:
        raise InputError("ablation_lines needs rows under 'steps' or 'samples'")
    xlabel = {"steps": "reverse steps", "samples": "samples per subject"}
    height = 2.4 * len(rows) + 0.4
    with figure(7.8, height, layout=None) as fig:  # a fixed grid: twin axes make the layout solver slow
        grid = fig.add_gridspec(len(rows), len(metrics), left=0.07, right=0.93, wspace=0.75, hspace=0.55,
                                bottom=0.5 / height, top=1 - 0.45 / height)
        for r, (key, points) in enumerate(rows):
            points = sorted(points, key=lambda p: p[key])
            x = np.array([p[key] for p in points], dtype=np.float64)
            seconds = np.array([_number(p.get("seconds_per_subject")) for p in points])
            for c, (metric, label) in enumerate(metrics):
                y = np.array([_number(p.get(metric)) for p in points])
                if not np.isfinite(y).any():
                    continue
                ax = fig.add_subplot(grid[r, c])
                ax.plot(x, y, marker="o", markersize=3, color=COLOURS[c], label=label)
                ax.set_xscale("log")
                ax.set_xticks(x, [f"{v:g}" for v in x])
                ax.minorticks_off()
                ax.set_xlabel(xlabel[key])
                ax.set_ylabel(label, color=COLOURS[c])
                twin = ax.twinx()
                twin.plot(x, seconds, marker="s", markersize=2.5, linestyle="--", linewidth=0.8, color="0.4")
                twin.set_ylabel("s / subject", color="0.4")
                twin.spines["right"].set_visible(True)
        fig.suptitle("sampling ablations (dashed grey: seconds per subject, right axis)", y=1 - 0.08 / height,
                     va="top")
        return save_figure(fig, path, vector=vector)


def _number(value) -> float:
    return float("nan") if value is None else float(value)
