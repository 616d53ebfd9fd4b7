"""The ``bounded`` kind: a score on a closed range [lo, hi] (e.g. MMSE 0–30), diffused in logit space with
the Gaussian process (eps-parameterised, MSE on the noise), so decoded samples never leave the range.

    u = clip((v - lo) / (hi - lo), eps, 1 - eps),   z = logit(u) / scale,
    v = lo + (hi - lo) · sigmoid(scale · z), snapped to lo / hi inside the end bands.

Exact bounds. logit(0) and logit(1) are infinite, so u is clipped to [eps, 1 - eps]: the bands within
eps · (hi - lo) of either bound (MMSE with eps = 1e-3: [0, 0.03] and [29.97, 30]) are encoded at the
band's inner edge z_lo = logit(eps)/scale or z_hi = logit(1 - eps)/scale, and decoded back to the bound
itself. So a ceiling score of 30 round-trips exactly and is a point mass the model can learn; values
strictly inside the range round-trip exactly; a value inside a band becomes its bound. DDIM clips its
x0 estimate to [z_lo, z_hi], so the final samples land on the bounds wherever the model pushes past them.

Scale. For u uniform on (0, 1), logit(u) is logistic with SD π/√3 ≈ 1.8, so the default scale 2 gives z
an SD near 0.9, the O(1) spread the Gaussian schedules assume; the bands sit at ±logit(1 - eps)/scale
(±3.45 for eps = 1e-3).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

import metavoxel as mv

BAND_SLACK = 1e-3  # decode snaps u within eps · (1 + slack) of 0 or 1, absorbing float32 rounding of z


class BoundedSpec(mv.VariableSpec):
    """A score that cannot leave a closed range, such as MMSE (0–30)."""

    kind: Literal["bounded"]
    range: tuple[float, float] = Field(description="[lo, hi]: the closed range every value and sample lies in.")
    eps: float = Field(1e-3, gt=0.0, lt=0.25,
                       description="Width of the end bands as a fraction of hi - lo; values there count as the bound.")
    scale: float = Field(2.0, gt=0.0, description="z = logit(u) / scale; 2 gives uniform data an SD near 0.9.")
    unit: str = Field("", description="Unit shown in reports (e.g. 'points').")

    @model_validator(mode="after")
    def _ordered(self) -> BoundedSpec:
        lo, hi = self.range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range must be two finite numbers with lo < hi, got [{lo}, {hi}]")
        return self


class Bounded(mv.GaussianVariable):
    """values (B,) float64 in [lo, hi] <-> z (B, 1) = logit(u) / scale (see the module docstring)."""

    kind = "bounded"

    def __init__(self, name: str, lo: float, hi: float, abar: torch.Tensor, eps: float = 1e-3, scale: float = 2.0,
                 unit: str = ""):
        self.name, self.lo, self.hi, self.unit = name, float(lo), float(hi), unit
        self.eps, self.scale = float(eps), float(scale)
        self.value_range = (self.lo, self.hi)  # declared range: data loading and --fix check values against it
        self.process = mv.GaussianProcess(abar)
        self.z_shape = (1,)
        edge = math.log((1 - self.eps) / self.eps) / self.scale
        self.x0_range = (-edge, edge)  # [z_lo, z_hi]: DDIM clips its x0 estimate here
        self.head = mv.ScalarHead(channel_features=1, token_features=1, out_features=1)

    @classmethod
    def from_spec(cls, spec: BoundedSpec, ctx: mv.BuildContext) -> Bounded:
        return cls(spec.name, *spec.range, abar=ctx.schedule("gaussian"), eps=spec.eps, scale=spec.scale,
                   unit=spec.unit)

    # -- encoder --------------------------------------------------------------------------------
    def _out_of_range(self, what: str) -> mv.InputError:
        return mv.InputError(f"{self.name}: {what} is outside the range [{self.lo:g}, {self.hi:g}]; give a value "
                             "in the range (values outside it need a model trained with a wider declared range)")

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise mv.InputError(f"{self.name}: expected a number in [{self.lo:g}, {self.hi:g}], got {text!r}") from None
        if not math.isfinite(value):
            raise mv.InputError(f"{self.name}: expected a finite number in [{self.lo:g}, {self.hi:g}], got {text!r}")
        if not self.lo <= value <= self.hi:
            raise self._out_of_range(repr(text))
        return value

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        v = mv.float_values(raw, self.name, f"a number in [{self.lo:g}, {self.hi:g}]")
        present = ~torch.isnan(v)
        bad = present & ~((v >= self.lo) & (v <= self.hi))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise self._out_of_range(f"record {i} ({float(v[i]):g})")
        return torch.where(present, v, self.lo).to(device), present.to(device)  # float64: bounds stay exact

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        u = ((values.double() - self.lo) / (self.hi - self.lo)).clamp(self.eps, 1 - self.eps)
        return (torch.logit(u) / self.scale).float().reshape(-1, 1)  # (B, 1)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        u = torch.sigmoid(self.scale * z0.reshape(-1).double())  # (B,) in [0, 1] for any real z
        band = self.eps * (1 + BAND_SLACK)
        v = self.lo + (self.hi - self.lo) * u
        v = torch.where(u <= band, self.lo, torch.where(u >= 1 - band, self.hi, v))
        return v.clamp(self.lo, self.hi)  # (B,) float64; the clamp only absorbs rounding of lo + (hi - lo) u

    def format(self, values: torch.Tensor) -> list[float]:
        return [float(v) for v in values.reshape(-1)]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Values strictly inside the range, with the upper bound itself as the first (ceiling effects)."""
        inner = self.lo + (self.hi - self.lo) * (2 * self.eps + (1 - 4 * self.eps) * torch.rand(n, generator=generator))
        inner = inner.double()
        inner[:1] = self.hi
        return inner

    # -- head -------------------------------------------------------------------------------------
    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 1)

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 1)

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return mv.interval_summary(samples)


KIND = mv.VariableKind(
    name="bounded", spec=BoundedSpec, build=Bounded.from_spec,
    description="Score on a closed range [lo, hi], Gaussian diffusion of logit((v - lo)/(hi - lo)); samples stay in range.",
    examples=({"range": [0.0, 30.0], "unit": "points"}, {"range": [-1.0, 1.0], "eps": 0.01, "scale": 1.0}),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
