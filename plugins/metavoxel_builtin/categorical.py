"""The ``categorical`` kind: K named categories diffused with D3PM's uniform transition
(Austin et al. 2021), cosine schedule, x0-parameterisation and cross-entropy loss."""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import metavoxel as mv



class CategoricalSpec(mv.VariableSpec):
    """A categorical variable such as sex or diagnosis."""

    kind: Literal["categorical"]
    categories: list[str] = Field(min_length=2, description="The K category labels, in index order.")
    aliases: dict[str, str] = Field(default_factory=dict,
                                    description="Extra spellings -> category, matched case-insensitively.")

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalSpec:
        folded = [c.strip().lower() for c in self.categories]
        if len(set(folded)) != len(folded) or any(not c for c in folded):
            raise ValueError(f"categories must be non-empty and unique ignoring case, got {self.categories}")
        for alias, target in self.aliases.items():
            if target not in self.categories:
                raise ValueError(f"alias {alias!r} points to {target!r}, which is not one of {self.categories}")
        return self


class Categorical(mv.UniformDiscreteVariable):
    """values (B,) long class index = z (B,); network input: index rescaled to [-1, 1] and a one-hot token.

    The forward corruption, reverse step and loss come from `metavoxel.UniformDiscreteVariable`.
    """

    kind = "categorical"

    def __init__(self, name: str, categories: list[str], abar: torch.Tensor, aliases: dict[str, str] | None = None):
        self.name, self.categories = name, list(categories)
        self.K = len(categories)
        self.process = mv.UniformDiscreteProcess(abar, self.K)
        self.head = mv.ScalarHead(channel_features=1, token_features=self.K, out_features=self.K)
        self._lookup = {c.strip().lower(): i for i, c in enumerate(self.categories)}
        for alias, target in (aliases or {}).items():
            self._lookup[alias.strip().lower()] = self.categories.index(target)

    @classmethod
    def from_spec(cls, spec: CategoricalSpec, ctx: mv.BuildContext) -> Categorical:
        return cls(spec.name, spec.categories, ctx.schedule("discrete"), spec.aliases)

    # -- encoder --------------------------------------------------------------------------------
    def parse(self, text: str) -> str:
        index = self._lookup.get(str(text).strip().lower())
        if index is None:
            close = difflib.get_close_matches(str(text).strip().lower(), list(self._lookup), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise mv.InputError(f"{self.name}: unknown category {text!r}{hint}; valid: {', '.join(self.categories)}")
        return self.categories[index]

    def _index(self, item: Any, i: int) -> int:
        if getattr(item, "ndim", None) == 0:  # a 0-d tensor or array
            item = item.item()
        if item is None or (isinstance(item, float) and math.isnan(item)):
            return -1
        if isinstance(item, str):
            return -1 if item.strip().lower() in mv.MISSING_TEXT else self.categories.index(self.parse(item))
        if isinstance(item, (int, np.integer)) or (isinstance(item, float) and item.is_integer()):
            if 0 <= int(item) < self.K:
                return int(item)
        raise mv.InputError(f"{self.name}: record {i} is {item!r}; expected one of {', '.join(self.categories)} "
                            f"or a class index 0..{self.K - 1}")

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(raw, torch.Tensor) and not raw.is_floating_point():
            idx = raw.detach().to("cpu", torch.long).reshape(-1)
            if ((idx < -1) | (idx >= self.K)).any():
                raise mv.InputError(f"{self.name}: class indices must be in 0..{self.K - 1} (-1 for missing)")
        else:
            if isinstance(raw, (torch.Tensor, np.ndarray)):
                raw = raw.reshape(-1).tolist()
            items = [raw] if isinstance(raw, (str, int, float)) or raw is None else list(raw)
            idx = torch.tensor([self._index(item, i) for i, item in enumerate(items)], dtype=torch.long)
        present = idx >= 0
        return idx.clamp_min(0).to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return values.long().reshape(-1)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return z0.long().reshape(-1)

    def format(self, values: torch.Tensor) -> list[str]:
        return [self.categories[int(i)] for i in values.reshape(-1)]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.K, (n,), generator=generator)

    # -- head -------------------------------------------------------------------------------------
    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return (2.0 * z_t.float() / (self.K - 1) - 1.0).reshape(-1, 1)  # (B, 1)

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(z_t.long(), self.K).float()  # (B, K)

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return mv.class_summary(samples, self.categories)[0]


KIND = mv.VariableKind(
    name="categorical", spec=CategoricalSpec, build=Categorical.from_spec,
    description="K named categories; D3PM uniform transition, x0-parameterised, cross-entropy.",
    examples=({"categories": ["F", "M"], "aliases": {"female": "F", "male": "M"}},
              {"categories": [f"site{i}" for i in range(12)]}),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    registry.add(KIND)
