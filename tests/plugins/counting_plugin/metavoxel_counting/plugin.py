"""Kinds a plugin author would write: a built-in kind subclassed, with the steps the fast path replaces overridden.

Each override counts its calls in ``CALLS[(kind, method)]`` and then does exactly what the parent does, so
the engine must call it (never a fused kernel in its place) and the numbers stay those of the parent.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

import torch
from metavoxel_builtin.categorical import Categorical, CategoricalSpec
from metavoxel_builtin.continuous import Continuous, ContinuousSpec

import metavoxel as mv

CALLS: Counter = Counter()


class CountingContinuousSpec(ContinuousSpec):
    kind: Literal["counting_continuous"]


class CountingCategoricalSpec(CategoricalSpec):
    kind: Literal["counting_categorical"]


class CountingContinuous(Continuous):
    kind = "counting_continuous"

    def corrupt(self, z0, t, *, generator):
        CALLS[(self.kind, "corrupt")] += 1
        return super().corrupt(z0, t, generator=generator)

    def renoise(self, z0, t, *, generator):
        CALLS[(self.kind, "renoise")] += 1
        return super().renoise(z0, t, generator=generator)

    def reverse_step(self, z_t, out, t, s, *, eta=0.0, generator=None):
        CALLS[(self.kind, "reverse_step")] += 1
        return super().reverse_step(z_t, out, t, s, eta=eta, generator=generator)


class CountingCategorical(Categorical):
    kind = "counting_categorical"

    def corrupt(self, z0, t, *, generator):
        CALLS[(self.kind, "corrupt")] += 1
        return super().corrupt(z0, t, generator=generator)

    def renoise(self, z0, t, *, generator):
        CALLS[(self.kind, "renoise")] += 1
        return super().renoise(z0, t, generator=generator)

    def reverse_step(self, z_t: torch.Tensor, out, t, s, *, eta=0.0, generator=None):
        CALLS[(self.kind, "reverse_step")] += 1
        return super().reverse_step(z_t, out, t, s, eta=eta, generator=generator)


KINDS = (
    mv.VariableKind(name="counting_continuous", spec=CountingContinuousSpec, build=CountingContinuous.from_spec,
                    description="continuous, with counted corrupt/renoise/reverse_step overrides (a test plugin)",
                    examples=({"range": [40.0, 95.0]},)),
    mv.VariableKind(name="counting_categorical", spec=CountingCategoricalSpec, build=CountingCategorical.from_spec,
                    description="categorical, with counted corrupt/renoise/reverse_step overrides (a test plugin)",
                    examples=({"categories": ["F", "M"]},)),
)


@mv.hookimpl
def metavoxel_register_kinds(registry) -> None:
    for kind in KINDS:
        registry.add(kind)
