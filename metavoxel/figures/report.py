"""Report figures from plain arrays: predicted vs true, reliability, rank histogram, Table 2 panels.

Each function draws one figure and writes it as PNG + PDF/SVG (`metavoxel.figures.canvas.save_figure`),
returning the written paths. Models or series keep one colour each, in the order given
(`metavoxel.figures.canvas.COLOURS`). Nothing here samples or scores a model: the numbers come in as
arrays, so any evaluation (or a paper's published numbers) can be drawn the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from metavoxel.errors import InputError
from metavoxel.figures.canvas import COLOURS, figure, save_figure

__all__ = ["conditioning_panels", "pit_ranks", "predicted_vs_true", "rank_histogram", "reliability_diagram"]

#: Names of the paper's Table 2 conditioning sets, as `metavoxel.evaluation.zero_shot.CONDITIONING_SETS` spells them.
_GIVEN = {"I,C": "image + {c}", "I": "image", "C": "{c}", "none": "nothing"}


def predicted_vs_true(path: str | Path, series: Mapping[str, tuple[np.ndarray, np.ndarray]], *, name: str,
                      unit: str = "", limits: tuple[float, float] | None = None, title: str = "",
                      vector: str | None = "pdf") -> list[Path]:
    """Scatter of predicted against true values, one colour per model, the identity line, MAE in the legend.

    Args:
        series: model name -> (truth (N,), predicted (N,)); non-finite pairs are left out.
        name: the variable (axis labels), e.g. ``age``; unit: e.g. ``years``.
        limits: both axes' range, e.g. the variable's declared range (padded 2%); default: the data's, padded 3%.

    Raises:
        InputError: no series, or a series whose two arrays differ in length.
    """
    if not series:
        raise InputError("predicted_vs_true needs at least one series (model name -> (truth, predicted))")
    suffix = f" ({unit})" if unit else ""
    pairs = {}
    for model, (truth, predicted) in series.items():
        t, p = np.asarray(truth, dtype=np.float64).ravel(), np.asarray(predicted, dtype=np.float64).ravel()
        if t.shape != p.shape:
            raise InputError(f"predicted_vs_true: {model!r} has {t.size} true and {p.size} predicted values; "
                             "give one prediction per subject")
        keep = np.isfinite(t) & np.isfinite(p)
        pairs[model] = (t[keep], p[keep])
    if limits is None:
        values = np.concatenate([np.concatenate(tp) for tp in pairs.values()] + [np.zeros(0)])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        pad = 0.03 * (hi - lo or 1.0)
        limits = (lo - pad, hi + pad)
    else:
        limits = _padded(limits)
    with figure(3.6, 3.6 + 0.16 * len(pairs)) as fig:
        ax = fig.add_subplot()
        ax.plot(limits, limits, color="0.5", linestyle="--", linewidth=0.8, label="identity (perfect)")
        for k, (model, (t, p)) in enumerate(pairs.items()):
            mae = float(np.abs(p - t).mean()) if t.size else float("nan")
            ax.scatter(t, p, s=10, alpha=0.7, color=COLOURS[k % len(COLOURS)], edgecolors="none",
                       label=f"{model}: MAE {mae:.2f}{' ' + unit if unit else ''} (n = {t.size})")
        ax.set_xlim(limits)
        ax.set_ylim(limits)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {name}{suffix}")
        ax.set_ylabel(f"predicted {name}{suffix}")
        ax.set_title(title or f"predicted vs true {name}")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", frameon=False)
        return save_figure(fig, path, vector=vector)


def reliability_diagram(path: str | Path, curves: Mapping[str, Sequence[tuple[float, float, int]]], *,
                        name: str = "", bins: int = 10, min_confidence: float = 0.0, title: str = "",
                        vector: str | None = "pdf") -> list[Path]:
    """Accuracy against confidence per bin (top), and how many predictions fell in each bin (bottom).

    Args:
        curves: model name -> ``(mean confidence, accuracy, count)`` per non-empty bin, as
            `metavoxel.evaluation.scalar_metrics.calibration_curve` returns them; the legend gives each
            model's expected calibration error ``ECE = Σ_b (n_b / N) |accuracy_b - confidence_b|``.
        name: the classified variable, e.g. ``sex``.
        bins: the number of equal-width confidence bins the curves were made with (bar widths).
        min_confidence: the left end of the confidence axis (``1 / K`` for K classes).

    Raises:
        InputError: no curves.
    """
    if not curves:
        raise InputError("reliability_diagram needs at least one curve (model name -> calibration points)")
    width = 1.0 / bins / max(1, len(curves))
    with figure(3.6, 4.2 + 0.16 * len(curves)) as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.2))
        top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=0.8, label="perfectly calibrated")
        for k, (model, points) in enumerate(curves.items()):
            points = [(float(c), float(a), int(n)) for c, a, n in points if int(n) > 0]
            colour = COLOURS[k % len(COLOURS)]
            conf = np.array([p[0] for p in points])
            acc = np.array([p[1] for p in points])
            counts = np.array([p[2] for p in points])
            total = max(1, int(counts.sum()))
            ece = float((counts / total * np.abs(acc - conf)).sum()) if points else float("nan")
            top.plot(conf, acc, marker="o", markersize=3, linewidth=1, color=colour, label=f"{model}: ECE {ece:.3f}")
            offset = (k - (len(curves) - 1) / 2) * width
            bottom.bar(conf + offset, counts, width=width, color=colour, alpha=0.8)
            for x, n in zip(conf + offset, counts):
                bottom.annotate(str(n), (x, n), ha="center", va="bottom", fontsize=5, xytext=(0, 1),
                                textcoords="offset points")
        top.set_xlim(min_confidence, 1.0)
        top.set_ylim(0.0, 1.02)
        top.set_ylabel("accuracy in bin")
        top.set_title(title or f"reliability of {name} predictions".replace("of  ", "of "))
        fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", frameon=False)
        bottom.set_xlabel("confidence (probability of the predicted class)")
        bottom.set_ylabel("predictions")
        return save_figure(fig, path, vector=vector)


def pit_ranks(samples: np.ndarray, truth: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The rank of each true value among its S samples: an integer in 0..S per subject.

    ``rank_i = #{s : y_is < t_i} + U_i`` with ``U_i`` uniform on ``0..#{s : y_is = t_i}`` (ties split at
    random, seeded, so clipped or discrete samples do not pile up in one bin) — the rule of
    `metavoxel.evaluation.uncertainty.truth_ranks`, so the figure shows the counts the report tabulates. For a calibrated sampler the
    ranks are uniform on ``0..S`` (the discrete probability integral transform; Anderson 1996, Hamill 2001).

    Args:
        samples: (N, S) sampled values; truth: (N,) true values.

    Returns:
        (N,) int64 ranks.

    Raises:
        InputError: shapes that do not match, or non-finite values.
    """
    from metavoxel.evaluation.uncertainty import truth_ranks  # one rank rule for the report table and figure

    y = np.asarray(samples, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64).ravel()
    if y.ndim != 2 or y.shape[0] != t.shape[0]:
        raise InputError(f"pit_ranks: expected samples (N, S) and truth (N,), got {y.shape} and {t.shape}")
    return truth_ranks(torch.from_numpy(y), torch.from_numpy(t), seed=seed).numpy()


def rank_histogram(path: str | Path, samples: np.ndarray, truth: np.ndarray, *, name: str, model: str = "MetaVoxel",
                   title: str = "", vector: str | None = "pdf") -> list[Path]:
    """Histogram of the truth's rank among the samples (see `pit_ranks`), with the flat line of calibration.

    A U shape means the samples spread too little (over-confident), a hump too much, a slope a bias.
    The band is the central 95% of a bin's count under uniform ranks (binomial, normal approximation).

    Args:
        samples: (N, S) sampled values of ``name``; truth: (N,) true values.
    """
    ranks = pit_ranks(samples, truth)
    n, s = np.asarray(samples).shape
    counts = np.bincount(ranks, minlength=s + 1)
    expected = n / (s + 1)
    spread = 1.96 * np.sqrt(n * (1 / (s + 1)) * (1 - 1 / (s + 1)))
    with figure(3.6, 2.8) as fig:
        ax = fig.add_subplot()
        ax.bar(np.arange(s + 1), counts, width=0.85, color=COLOURS[0], label=f"{model} (n = {n}, S = {s})")
        ax.axhspan(max(0.0, expected - spread), expected + spread, color="0.85", zorder=0,
                   label="95% range if calibrated")
        ax.axhline(expected, color="0.3", linestyle="--", linewidth=0.8, label="calibrated (uniform)")
        ax.set_ylim(0, 1.45 * max(float(counts.max()), expected + spread))  # room for the legend above the bars
        ax.set_xticks(np.arange(s + 1))
        ax.set_xlabel(f"rank of the true {name} among the {s} samples")
        ax.set_ylabel("subjects")
        ax.set_title(title or f"rank histogram (PIT) of {name}")
        ax.legend(loc="upper center", frameon=False, fontsize=6)
        return save_figure(fig, path, vector=vector)


def conditioning_panels(path: str | Path, sets: Mapping[str, np.ndarray], truth: np.ndarray, *, name: str,
                        categorical: str = "sex", unit: str = "", population_mean: float | None = None,
                        limits: tuple[float, float] | None = None, vector: str | None = "pdf") -> list[Path]:
    """Paper Table 2 as pictures: one panel per conditioning set, predicted (mean ± SD of the samples) vs true.

    Args:
        sets: conditioning set (``I,C``, ``I``, ``C``, ``none`` or any label) -> (N, S) samples of ``name``.
        truth: (N,) true values.
        population_mean: drawn as a horizontal line in every panel (the trivial predictor).
        limits: both axes' range, e.g. the variable's declared range (padded 2%); default: the truth's and the
            samples', padded 3%.

    Raises:
        InputError: no sets, or samples whose subject count differs from ``truth``.
    """
    if not sets:
        raise InputError("conditioning_panels needs at least one conditioning set")
    t = np.asarray(truth, dtype=np.float64).ravel()
    draws = {k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in sets.items()}
    for key, y in draws.items():
        if y.shape[0] != t.shape[0]:
            raise InputError(f"conditioning_panels: set {key!r} has {y.shape[0]} subjects, truth has {t.shape[0]}")
    if limits is None:
        values = np.concatenate([t] + [y.ravel() for y in draws.values()])
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        limits = (lo - 0.03 * (hi - lo or 1.0), hi + 0.03 * (hi - lo or 1.0))
    else:
        limits = _padded(limits)
    suffix = f" ({unit})" if unit else ""
    with figure(2.4 * len(draws) + 0.3, 2.8) as fig:
        axes = fig.subplots(1, len(draws), sharex=True, sharey=True, squeeze=False)[0]
        for k, (ax, (key, y)) in enumerate(zip(axes, draws.items())):
            mean, sd = y.mean(axis=1), (y.std(axis=1, ddof=1) if y.shape[1] > 1 else np.zeros(len(y)))
            mae = float(np.abs(mean - t).mean())
            ax.plot(limits, limits, color="0.5", linestyle="--", linewidth=0.8, label="identity")
            if population_mean is not None:
                ax.axhline(population_mean, color="0.3", linestyle=":", linewidth=0.8, label="population mean")
            ax.errorbar(t, mean, yerr=sd, fmt="o", markersize=2.5, elinewidth=0.6, alpha=0.7,
                        color=COLOURS[k % len(COLOURS)], label=f"mean ± SD of {y.shape[1]} samples")
            given = _GIVEN.get(key, key).format(c=categorical)
            ax.set_title(f"given {given}\nMAE {mae:.2f}{' ' + unit if unit else ''}, "
                         f"mean sample SD {float(sd.mean()):.2f}")
            ax.set_xlim(limits)
            ax.set_ylim(limits)
            ax.set_aspect("equal")
            ax.set_xlabel(f"true {name}{suffix}")
        axes[0].set_ylabel(f"predicted {name}{suffix}")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles[:2] + [handles[-1]], labels[:2] + ["mean ± SD of the samples"], loc="outside lower center",
                   ncols=3, frameon=False)
        fig.suptitle(f"{name} under each conditioning set (paper Table 2)")
        return save_figure(fig, path, vector=vector)


def _padded(limits: tuple[float, float]) -> tuple[float, float]:
    """A range widened by 2% on each side, so points on a declared bound (e.g. clipped samples) stay whole."""
    lo, hi = float(limits[0]), float(limits[1])
    pad = 0.02 * (hi - lo or 1.0)
    return lo - pad, hi + pad
