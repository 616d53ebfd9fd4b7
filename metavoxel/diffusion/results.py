"""What sampling returns: samples in raw units per variable, and their summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from metavoxel.variables.protocol import ScalarHead, Variable

__all__ = ["SampleResult"]


@dataclass
class SampleResult:
    """Samples of every variable, shape (N subjects, S samples, ...) in value space.

    Continuous values are in their own units, categorical values are class indices (see `labels`),
    images are voxel tensors. ``fixed[name]`` (N,) says for which subjects a variable was given;
    ``conditioning`` and ``guidance`` say how the fixed variables were held (``repaint`` or ``clean``),
    ``grid`` the spacing of the sampling grid (``uniform`` or ``quadratic``), and ``imputed`` whether the free
    variables were sampled again given a completed image (`metavoxel.diffusion.imputation`).
    """

    variables: dict[str, Variable]
    samples: dict[str, torch.Tensor]
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)
    seed: int = 0
    steps: int = 0
    eta: float = 0.0
    conditioning: str = "repaint"
    guidance: float = 0.0
    grid: str = "uniform"
    imputed: bool = False

    @property
    def num_subjects(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_samples(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def is_fixed(self, name: str) -> bool:
        """True when ``name`` was given for every subject."""
        return name in self.fixed and bool(self.fixed[name].all())

    def summary(self, name: str) -> dict[str, Any]:
        """The kind's summary over samples: e.g. mean/sd/lower/upper, or probs/majority, per subject."""
        return self.variables[name].summarize(self.samples[name])

    def labels(self, name: str) -> list[list[Any]]:
        """Samples as plain Python objects (floats, category labels), [subject][sample]."""
        var, values = self.variables[name], self.samples[name]
        return [var.format(values[i]) for i in range(values.shape[0])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: scalar samples and summaries; image variables by shape only."""
        out: dict[str, Any] = {"seed": self.seed, "steps": self.steps, "grid": self.grid, "eta": self.eta,
                               "conditioning": self.conditioning, "guidance": self.guidance, "imputed": self.imputed,
                               "num_subjects": self.num_subjects, "num_samples": self.num_samples, "variables": {}}
        for name, var in self.variables.items():
            entry: dict[str, Any] = {"kind": var.kind, "fixed": self.fixed.get(name, torch.zeros(0)).tolist()}
            if isinstance(var.head, ScalarHead):
                entry["samples"] = self.labels(name)
                entry["summary"] = self.summary(name)
            else:
                entry["shape"] = list(self.samples[name].shape)
            out["variables"][name] = entry
        return out
