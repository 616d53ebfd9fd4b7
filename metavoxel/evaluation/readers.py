"""Task-specific baselines as readers of images, and the input convention they are trained with.

A baseline regressor of the continuous variable gets the categorical variable as one extra input channel
(class index i of K mapped to 2 i / (K - 1) - 1, i.e. F = -1, M = +1); a baseline classifier gets the
continuous variable scaled from its declared range [lo, hi] to [-1, 1]. ``benchmarks/paper`` trains the
baselines with these inputs and `metavoxel evaluate --regressor/--classifier` reads images with them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metavoxel.evaluation.protocol import Readers

__all__ = ["categorical_extra", "continuous_extra", "readers_from_baselines"]


def categorical_extra(index: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (N,) -> the regressor's extra input (N, 1) in [-1, 1]."""
    return (2.0 * index.double() / max(1, num_classes - 1) - 1.0).float().reshape(-1, 1)


def continuous_extra(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Values (N,) in [lo, hi] -> the classifier's extra input (N, 1) in [-1, 1]."""
    return (2.0 * (values.double() - lo) / (hi - lo) - 1.0).float().reshape(-1, 1)


def readers_from_baselines(regressor, classifier, *, continuous_range: tuple[float, float], num_classes: int,
                           name: str | None = None) -> Readers:
    """`Readers` over two trained baselines (`metavoxel.baselines.TrainedBaseline`, or their directories)."""
    from metavoxel.baselines import load_baseline, predict_baseline

    regressor = load_baseline(regressor) if isinstance(regressor, (str, Path)) else regressor
    classifier = load_baseline(classifier) if isinstance(classifier, (str, Path)) else classifier
    lo, hi = continuous_range

    def read_continuous(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return predict_baseline(regressor, images, categorical_extra(index, num_classes))

    def read_categorical(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return predict_baseline(classifier, images, continuous_extra(values, lo, hi))

    label = name or f"{regressor.config.arch} regressor / {classifier.config.arch} classifier"
    return Readers(label, read_continuous, read_categorical)
