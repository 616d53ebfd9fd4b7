"""The ``continuous`` kind: a real value with a declared range [lo, hi] mapped linearly to [-1, 1],
diffused with the Gaussian process (MSE on the noise, or on v with ``prediction: v``)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

import metavoxel as mv

class ContinuousSpec(mv.VariableSpec):
    """A continuous scalar such as age."""

    kind: Literal["continuous"]
    range: tuple[float, float] = Field(description="[lo, hi], mapped to [-1, 1]. Every training value lies in it "
                                                   "(data.out_of_range refuses or clips the rest), so sampled "
                                                   "values stay in it too.")
    unit: str = Field("", description="Unit shown in reports (e.g. 'years').")
    prediction: mv.Prediction = mv.prediction_field()

    @model_validator(mode="after")
    def _ordered(self) -> ContinuousSpec:
        lo, hi = self.range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range must be two finite numbers with lo < hi, got [{lo}, {hi}]")
        return self


class Continuous(mv.GaussianVariable):
    """values (B,) float in the variable's units <-> z (B, 1) = 2 (v - lo)/(hi - lo) - 1."""

    kind = "continuous"

    def __init__(self, name: str, lo: float, hi: float, abar: torch.Tensor, unit: str = ""):
        self.name, self.lo, self.hi, self.unit = name, float(lo), float(hi), unit
        self.value_range = (self.lo, self.hi)  # declared range: data loading checks values against it
        self.process = mv.GaussianProcess(abar)
        self.z_shape = (1,)
        self.x0_range = (-1.0, 1.0)  # the data lie in [lo, hi]: each reverse step clips its x0 estimate there
        self.head = mv.ScalarHead(channel_features=1, token_features=1, out_features=1)

    @classmethod
    def from_spec(cls, spec: ContinuousSpec, ctx: mv.BuildContext) -> Continuous:
        variable = cls(spec.name, *spec.range, abar=ctx.schedule("gaussian"), unit=spec.unit)
        variable.prediction = spec.prediction
        return variable

    def parse(self, text: str) -> float:
        """A number; a top-coded ``89+`` (BIDS ages) reads as 89, as it does in a table (`metavoxel.TOP_CODED`)."""
        top = mv.TOP_CODED.match(str(text).strip())
        try:
            value = float(top.group(1) if top else text)
        except ValueError:
            raise mv.InputError(f"{self.name}: expected a number such as {0.5 * (self.lo + self.hi):g} (or a "
                                f"top-coded one such as 89+), got {text!r}") from None
        if not math.isfinite(value):
            raise mv.InputError(f"{self.name}: expected a finite number, got {text!r}")
        return value

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        v = mv.float_values(raw, self.name)
        present = torch.isfinite(v)
        return torch.where(present, v, 0.0).float().to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return (2 * (values.float() - self.lo) / (self.hi - self.lo) - 1).reshape(-1, 1)  # (B, 1)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return self.lo + (z0.reshape(-1).float() + 1) / 2 * (self.hi - self.lo)  # (B,)

    def format(self, values: torch.Tensor) -> list[float]:
        return [float(v) for v in values.reshape(-1)]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.lo + torch.rand(n, generator=generator) * (self.hi - self.lo)

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 1)

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 1)

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return mv.interval_summary(samples)


KIND = mv.VariableKind(
    name="continuous", spec=ContinuousSpec, build=Continuous.from_spec,
    description="Real value scaled from [lo, hi] to [-1, 1]; Gaussian diffusion, MSE on the noise (or on v).",
    examples=({"range": [40.0, 95.0], "unit": "years"}, {"range": [-3.0, 3.0], "prediction": "v"}),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
