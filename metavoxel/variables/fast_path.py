"""The fused fast path as a declared capability: a kind opts in, and only while it keeps the steps it skips.

The engine can step every Gaussian variable of a record in one fused kernel launch (and every
uniform-D3PM variable in another, on CUDA), instead of calling each variable's ``corrupt``,
``reverse_step`` and ``renoise``. It does so only for a variable that *declares* it: a kind implements
`FusedGaussian.gaussian_fast_path` (or `FusedDiscrete.discrete_fast_path`) and returns the process and
clip range the kernel should use, or None to decline. `GaussianVariable` and `UniformDiscreteVariable`
implement it and decline as soon as a subclass overrides one of the methods the kernel replaces
(`BYPASSED`), so an override a plugin writes is always honoured, on every device.

The conformance suite checks, for every kind that opts in, that the fused step equals its own methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from metavoxel.processes import GaussianProcess, UniformDiscreteProcess

__all__ = ["BYPASSED", "DiscreteFastPath", "FusedDiscrete", "FusedGaussian", "GaussianFastPath", "overridden"]

BYPASSED = ("corrupt", "renoise", "reverse_step")  # what a fused launch does in a variable's place


@dataclass(frozen=True)
class GaussianFastPath:
    """What the fused Gaussian kernels need: the process, the x0 clip range (or None) and what the network's
    output is (``eps`` or ``v``, `metavoxel.processes.gaussian.PREDICTIONS`)."""

    process: GaussianProcess
    x0_range: tuple[float, float] | None
    prediction: str = "eps"


@dataclass(frozen=True)
class DiscreteFastPath:
    """What the fused categorical kernel needs: the uniform-transition D3PM process (x0-parameterised)."""

    process: UniformDiscreteProcess


@runtime_checkable
class FusedGaussian(Protocol):
    """Optional capability: this variable may be corrupted, stepped and re-noised by the fused Gaussian kernels."""

    def gaussian_fast_path(self) -> GaussianFastPath | None:
        """The process and clip range to fuse with, or None to take this variable's own methods."""


@runtime_checkable
class FusedDiscrete(Protocol):
    """Optional capability: this variable may be stepped and re-noised by the fused categorical kernel."""

    def discrete_fast_path(self) -> DiscreteFastPath | None:
        """The D3PM process to fuse with, or None to take this variable's own methods."""


def overridden(variable: object, base: type, names: tuple[str, ...] = BYPASSED) -> list[str]:
    """The methods among ``names`` that ``type(variable)`` defines differently from ``base``."""
    cls = type(variable)
    return [n for n in names if getattr(cls, n, None) is not getattr(base, n, None)]
