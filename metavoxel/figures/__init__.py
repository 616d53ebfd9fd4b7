"""Figures: brain views, report plots and training curves, drawn with matplotlib on a headless Agg canvas.

Every function writes a PNG and a vector copy (PDF by default, or SVG) beside it, atomically and without
dates, and returns the written paths. matplotlib is imported when a figure is drawn, not on import.
"""

from metavoxel.figures.brain import BrainImage, brain_figure, brain_views
from metavoxel.figures.canvas import figure, save_figure
from metavoxel.figures.curves import read_metrics, training_curves
from metavoxel.figures.orientation import convention_note, orthogonal_planes
from metavoxel.figures.report import (conditioning_panels, pit_ranks, predicted_vs_true, rank_histogram,
                                      reliability_diagram)

__all__ = ["BrainImage", "brain_figure", "brain_views", "conditioning_panels", "convention_note",
           "figure", "orthogonal_planes", "pit_ranks", "predicted_vs_true", "rank_histogram", "read_metrics",
           "reliability_diagram", "save_figure", "training_curves"]
