"""A test kind whose z has more dimensions than its value: a time of day h in [0, 24) hours diffused as
z = (cos θ, sin θ), θ = 2π h / 24. Written as a plugin author would, from the public API only."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

import metavoxel as mv


class CyclicSpec(mv.VariableSpec):
    """A time of day in hours."""

    kind: Literal["cyclic"]
    period: float = 24.0


class Cyclic(mv.GaussianVariable):
    """values (B,) hours in [0, period) <-> z (B, 2) = (cos θ, sin θ); Gaussian diffusion, MSE on the noise."""

    kind = "cyclic"

    def __init__(self, name: str, period: float, abar: torch.Tensor, out_features: int = 2):
        self.name, self.period = name, float(period)
        self.value_range = (0.0, self.period)  # mv.HasValueRange
        self.process = mv.GaussianProcess(abar)
        self.z_shape = (2,)
        self.x0_range = (-1.0, 1.0)  # mv.ClipsDenoised: cos and sin lie in [-1, 1]
        self.head = mv.ScalarHead(channel_features=2, token_features=2, out_features=out_features)

    @classmethod
    def from_spec(cls, spec: CyclicSpec, ctx: mv.BuildContext) -> Cyclic:
        return cls(spec.name, spec.period, ctx.schedule("gaussian"))

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise mv.InputError(f"{self.name}: expected hours such as 13.5, got {text!r}") from None
        if not math.isfinite(value):
            raise mv.InputError(f"{self.name}: expected finite hours, got {text!r}")
        return value

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        v = mv.float_values(raw, self.name)
        present = torch.isfinite(v)
        return torch.where(present, v, 0.0).float().to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        theta = 2 * math.pi * values.double().reshape(-1) / self.period
        return torch.stack([theta.cos(), theta.sin()], dim=1).float()  # (B, 2)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        theta = torch.atan2(z0[:, 1].double(), z0[:, 0].double())
        return (theta / (2 * math.pi) * self.period).remainder(self.period).float()  # (B,)

    def format(self, values: torch.Tensor) -> list[float]:
        return [float(v) for v in values.reshape(-1)]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=generator) * self.period

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 2)

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t  # (B, 2)

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        """Circular mean and resultant length (1: all samples agree) over samples (N, S)."""
        theta = 2 * math.pi * samples.double() / self.period
        c, s = theta.cos().mean(dim=1), theta.sin().mean(dim=1)
        mean = (torch.atan2(s, c) / (2 * math.pi) * self.period).remainder(self.period)
        return {"mean": mean.tolist(), "resultant": torch.sqrt(c ** 2 + s ** 2).tolist()}


KIND = mv.VariableKind(name="cyclic", spec=CyclicSpec, build=Cyclic.from_spec,
                       description="Time of day on a circle: z = (cos, sin); Gaussian diffusion.",
                       examples=({"period": 24.0},))


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
