"""The ``ordinal`` kind: a clinical scale with ordered levels (e.g. CDR 0, 0.5, 1, 2, 3), diffused with
the neighbour-move process of `metavoxel_ordinal.process`, x0-parameterised, cross-entropy + CRPS loss."""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import metavoxel as mv
from metavoxel_ordinal.loss import ordinal_loss
from metavoxel_ordinal.process import NeighbourProcess, neighbour_schedule

MATCH_RTOL = 1e-6  # a number is a level if |v - level| <= MATCH_RTOL * max(|level|, span)


class OrdinalSpec(mv.VariableSpec):
    """An ordinal scale such as the Clinical Dementia Rating."""

    kind: Literal["ordinal"]
    levels: list[float] = Field(min_length=2,
                                description="The K level values, strictly increasing (e.g. CDR 0, 0.5, 1, 2, 3).")
    labels: list[str] | None = Field(None,
                                     description="Optional names of the levels, in level order (e.g. 'none', 'mild').")
    crps_weight: float = Field(1.0, ge=0.0, description="Weight of the ranked probability score added to the cross-entropy.")
    prior_tolerance: float = Field(1e-4, gt=0.0, lt=1.0,
                                   description="max |q(x_T | x0) - 1/K|: how close x_T comes to the uniform prior.")

    @model_validator(mode="after")
    def _consistent(self) -> OrdinalSpec:
        v = self.levels
        if not all(math.isfinite(x) for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"levels must be finite and strictly increasing, got {v}")
        if self.labels is not None:
            folded = [label.strip().lower() for label in self.labels]
            if len(self.labels) != len(v):
                raise ValueError(f"labels must name each of the {len(v)} levels, got {len(self.labels)}: {self.labels}")
            if len(set(folded)) != len(folded) or any(not f for f in folded):
                raise ValueError(f"labels must be non-empty and unique ignoring case, got {self.labels}")
            for label, level in zip(self.labels, v):
                number = _number(label)
                if number is not None and number != level:
                    raise ValueError(f"label {label!r} reads as the number {number:g} but names level {level:g}; "
                                     "a numeric label must equal its own level")
        return self


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Ordinal:
    """values (B,) float64 level values <-> z (B,) long level index; network input: index rescaled to
    [-1, 1] and a one-hot token; head: K logits of x0."""

    kind = "ordinal"

    def __init__(self, name: str, levels: list[float], timesteps: int, labels: list[str] | None = None,
                 crps_weight: float = 1.0, prior_tolerance: float = 1e-4):
        self.name, self.K = name, len(levels)
        self.levels = torch.tensor(levels, dtype=torch.float64)  # (K,)
        self.labels = list(labels) if labels is not None else None
        self.categories = self.labels or [f"{v:g}" for v in levels]  # how reports name the levels
        self.crps_weight = float(crps_weight)
        self.process = NeighbourProcess(neighbour_schedule(timesteps, self.K, prior_tolerance), self.K)
        self.head = mv.ScalarHead(channel_features=1, token_features=self.K, out_features=self.K)
        self._labels = {c.strip().lower(): i for i, c in enumerate(self.labels or [])}
        self._tol = MATCH_RTOL * max(float(self.levels.abs().max()), float(self.levels[-1] - self.levels[0]))

    @classmethod
    def from_spec(cls, spec: OrdinalSpec, ctx: mv.BuildContext) -> Ordinal:
        return cls(spec.name, spec.levels, ctx.timesteps, spec.labels, spec.crps_weight, spec.prior_tolerance)

    # -- encoder --------------------------------------------------------------------------------
    def _valid(self) -> str:
        named = [f"{v:g} ({c})" for v, c in zip(self.levels.tolist(), self.labels)] if self.labels else \
            [f"{v:g}" for v in self.levels.tolist()]
        return ", ".join(named)

    def _match(self, value: float) -> int | None:
        """The index of the level ``value`` equals (within the tolerance), or None."""
        i = int(torch.argmin((self.levels - value).abs()))
        return i if abs(float(self.levels[i]) - value) <= self._tol else None

    def parse(self, text: str) -> float:
        """A level value from its number (``0.5``) or its label (case-insensitive)."""
        key = str(text).strip().lower()
        if key in self._labels:
            return float(self.levels[self._labels[key]])
        number = _number(key)
        index = self._match(number) if number is not None else None
        if index is None:
            close = difflib.get_close_matches(key, list(self._labels), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise mv.InputError(f"{self.name}: {text!r} is not a level of this scale{hint}; valid levels: {self._valid()}")
        return float(self.levels[index])

    def _index(self, item: Any, i: int) -> int:
        if getattr(item, "ndim", None) == 0:  # a 0-d tensor or array
            item = item.item()
        if item is None or (isinstance(item, float) and math.isnan(item)):
            return -1
        if isinstance(item, str):
            return -1 if item.strip().lower() in mv.MISSING_TEXT else self._match(self.parse(item))
        if isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool):
            index = self._match(float(item))
            if index is not None:
                return index
        raise mv.InputError(f"{self.name}: record {i} is {item!r}; expected a level ({self._valid()}) or empty for missing")

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(raw, (torch.Tensor, np.ndarray)):
            raw = raw.reshape(-1).tolist()
        items = [raw] if isinstance(raw, (str, int, float)) or raw is None else list(raw)
        idx = torch.tensor([self._index(item, i) for i, item in enumerate(items)], dtype=torch.long)
        present = idx >= 0
        return self.levels[idx.clamp_min(0)].to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Level values (B,) -> level indices (B,) long (the nearest level)."""
        v = values.reshape(-1, 1).to(torch.float64)
        return torch.argmin((v - self.levels.to(v.device)).abs(), dim=1)  # (B,)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return self.levels.to(z0.device)[z0.long().reshape(-1)]  # (B,) float64

    def format(self, values: torch.Tensor) -> list[Any]:
        idx = self.encode(values).tolist()
        return [self.labels[i] for i in idx] if self.labels else [float(self.levels[i]) for i in idx]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.levels[torch.randint(0, self.K, (n,), generator=generator)]

    def diffusion_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.bool().reshape(-1)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    # -- forward corruption, reverse step, loss ---------------------------------------------------
    def prior(self, n: int, *, generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.process.prior(n, generator=generator, device=device)

    def corrupt(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None):
        return self.process.q_sample(z0, t, generator=generator), z0  # target: the clean level index

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        return self.process.q_sample(z0, t, generator=generator)

    def undo(self, z_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None) -> torch.Tensor:
        return self.process.undo(z_s, s, t, generator=generator)

    def reverse_step(self, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.process.reverse_step(z_t, out, t, s, generator=generator)  # eta is a Gaussian notion

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ordinal_loss(out, target, self.levels.to(out.device), self.crps_weight)

    # -- head -------------------------------------------------------------------------------------
    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return (2.0 * z_t.float() / (self.K - 1) - 1.0).reshape(-1, 1)  # (B, 1)

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(z_t.long(), self.K).float()  # (B, K)

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        """Level frequencies, the majority level (ties to the lower level) and the expected level value."""
        n = samples.shape[0]
        summary, probs = mv.class_summary(self.encode(samples.reshape(-1)).reshape(n, -1), self.categories)
        return {**summary, "expected": (probs @ self.levels).tolist()}


KIND = mv.VariableKind(
    name="ordinal", spec=OrdinalSpec, build=Ordinal.from_spec,
    description="Ordered levels (e.g. CDR); neighbour-move discrete diffusion, x0-parameterised, CE + CRPS.",
    examples=({"levels": [0, 0.5, 1, 2, 3], "labels": ["none", "questionable", "mild", "moderate", "severe"]},
              {"levels": [0, 1], "crps_weight": 0.0},
              {"levels": [float(i) for i in range(12)]}),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
