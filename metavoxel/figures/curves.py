"""Training curves of a run directory: the losses and validation metrics logged in ``metrics.jsonl``, against step.

``metrics.jsonl`` (written by `metavoxel.training.train`, one JSON object per logged step) holds ``step``,
``lr``, ``records_per_s``, the total training loss ``loss``, one ``loss/<variable>`` per variable and,
on validation steps, ``val_loss`` (and any other ``val...`` metric). The figure has up to three panels:

1. the total loss, training and validation, on a log scale when every value is positive;
2. the training loss of each variable (the terms that sum to the total);
3. the other validation metrics, when the log holds any besides ``val_loss``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from metavoxel.errors import InputError
from metavoxel.figures.canvas import COLOURS, figure, save_figure
from metavoxel.io.outputs import check_outputs

__all__ = ["read_metrics", "training_curves"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file, each a dict with an integer ``step``, in file order.

    Raises:
        InputError: the file is missing or empty, or a line is not a JSON object with a ``step``; the
            message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"expected a training log at {path}, found none; give a run directory written by "
                         "`metavoxel train` (it logs metrics.jsonl)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {number} is not JSON ({exc.msg}); the log is damaged — "
                             "remove that line or retrain") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise InputError(f"{path} line {number} is not a metrics row with an integer 'step'; the log is "
                             "damaged — remove that line or retrain")
        rows.append(row)
    if not rows:
        raise InputError(f"{path} holds no metrics yet; train for at least log_every steps first")
    return rows


def training_curves(run_dir: str | Path, out: str | Path | None = None, *, vector: str | None = "pdf") -> list[Path]:
    """Draw the losses and validation metrics of ``run_dir/metrics.jsonl`` against step.

    Args:
        run_dir: a run directory written by `metavoxel train`.
        out: the PNG to write (default ``run_dir/training_curves.png``); the vector copy goes beside it.
        vector: ``pdf``, ``svg`` or None.

    Returns:
        The written paths, PNG first.

    Raises:
        InputError: no readable ``metrics.jsonl`` in ``run_dir`` (see `read_metrics`).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "training_curves.png"
    vector_copy = [("--out (its vector copy)", out.with_suffix(f".{vector}"))] if vector else []
    check_outputs([("the run's metrics.jsonl", run_dir / "metrics.jsonl")], files=[("--out", out), *vector_copy])
    rows = read_metrics(run_dir / "metrics.jsonl")
    variables = sorted({k for row in rows for k in row if k.startswith("loss/")})
    others = sorted({k for row in rows for k in row if k.startswith("val") and k != "val_loss"})
    panels = 2 + bool(others)
    with figure(3.2 * panels, 2.8) as fig:
        axes = fig.subplots(1, panels, sharex=True)
        total = axes[0]
        _line(total, rows, "loss", "training", COLOURS[0], marker=None)
        _line(total, rows, "val_loss", "validation", COLOURS[1], marker="o")
        total.set_title("total loss")
        _log_if_positive(total, rows, ("loss", "val_loss"))
        for k, key in enumerate(variables):
            _line(axes[1], rows, key, key.removeprefix("loss/"), COLOURS[k % len(COLOURS)], marker=None)
        axes[1].set_title("training loss per variable")
        _log_if_positive(axes[1], rows, variables)
        for k, key in enumerate(others):
            _line(axes[2], rows, key, key, COLOURS[k % len(COLOURS)], marker="o")
        if others:
            axes[2].set_title("validation metrics")
        for ax in axes:
            ax.set_xlabel("step")
            if ax.lines:
                ax.legend(frameon=False)
        fig.suptitle(f"training of {run_dir.name} ({rows[-1]['step']} steps)")
        return save_figure(fig, out, vector=vector)


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(row["step"], float(row[key])) for row in rows
              if isinstance(row.get(key), (int, float)) and math.isfinite(float(row[key]))]
    return np.array([p[0] for p in points], dtype=np.float64), np.array([p[1] for p in points], dtype=np.float64)


def _line(ax, rows, key: str, label: str, colour: str, marker: str | None) -> None:
    steps, values = _series(rows, key)
    if steps.size:
        ax.plot(steps, values, label=label, color=colour, linewidth=1, marker=marker, markersize=3)


def _log_if_positive(ax, rows, keys) -> None:
    values = np.concatenate([_series(rows, key)[1] for key in keys] + [np.zeros(0)])
    if values.size and (values > 0).all():
        ax.set_yscale("log")
