"""Hypothesis strategies for property tests of metavoxel and its plugins.

- `timesteps` draws diffusion levels ``(t, s)`` with ``0 <= s < t <= T`` (one pair, or a batch of tensors);
- `model_specs` draws valid `ModelSpec` mappings: one image variable and any mix of the registry's scalar
  kinds, each built from one of its ``VariableKind.examples``, on a tiny network;
- `batches` draws raw records for a built `JointModel` from each variable's ``example_values``, with random
  missing entries (``None``).

Example::

    from hypothesis import given, strategies as st
    import metavoxel as mv
    from metavoxel.testing import batches, model_specs

    @given(st.data())
    def test_losses_are_finite(data):
        model = mv.JointModel(data.draw(model_specs(kinds=["ordinal"])))
        losses = model.training_losses(data.draw(batches(model)))
        assert torch.isfinite(losses["loss"]).all()

Time follows `metavoxel.processes.schedules`: integer steps, ``t = 0`` clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.testing.conformance import build_example
from metavoxel.variables.protocol import ScalarHead, SpatialHead, VariableKind

__all__ = ["batches", "model_specs", "timesteps"]

#: The network every drawn spec uses: two levels (grids divisible by 2), small everything.
TINY_NETWORK = {"channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1, "num_head_channels": 8,
                "norm_num_groups": 4, "cross_attention_dim": 16}


def _size(n: int | st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return n if isinstance(n, st.SearchStrategy) else st.just(int(n))


def timesteps(T: int, *, batch: int | st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Any]:
    """Levels ``(t, s)`` with ``1 <= t <= T`` and ``0 <= s < t``.

    Args:
        T: the number of diffusion steps.
        batch: None for one pair of ints; a size (or a strategy of sizes) for two long tensors (B,) each.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    pair = st.integers(1, T).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, t - 1)))
    if batch is None:
        return pair

    def as_tensors(pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = zip(*pairs)
        return torch.tensor(t, dtype=torch.long), torch.tensor(s, dtype=torch.long)  # (B,), (B,)

    return _size(batch).flatmap(lambda b: st.lists(pair, min_size=b, max_size=b).map(as_tensors))


def _examples(kinds: Iterable[VariableKind], head: type) -> list[tuple[VariableKind, dict[str, Any]]]:
    """(kind, params) for every example whose built variable has a ``head`` of this type."""
    found = []
    for kind in kinds:
        for params in kind.examples:
            if isinstance(build_example(kind, params).head, head):
                found.append((kind, params))
    return found


def _identifier(text: str) -> str:
    return re.sub(r"\W", "_", text)


def model_specs(registry: Registry | None = None, *, kinds: Iterable[str] | None = None,
                image_kinds: Iterable[str] = ("image",), max_scalars: int = 3,
                max_timesteps: int = 200) -> st.SearchStrategy[dict[str, Any]]:
    """Valid `ModelSpec` mappings: one image variable and 0..max_scalars scalar variables.

    The image is drawn from the examples of ``image_kinds`` whose grid fits the tiny network (even sizes);
    the scalars from the examples of every scalar kind of ``registry`` (or just ``kinds``), repeats allowed.
    Loss weights, the diffusion (T, schedules, sampling steps, eta) and the seed are drawn too.

    Args:
        registry: kinds to draw from; default the installed plugins.
        kinds: names of the scalar kinds to draw from (default: every scalar kind with examples).
        image_kinds: names of the spatial kinds the image variable is drawn from.
        max_scalars: the most scalar variables in one spec.
        max_timesteps: the largest T drawn.
    """
    registry = default_registry() if registry is None else registry
    scalar_pool = registry.kinds() if kinds is None else [registry.get(name) for name in kinds]
    scalars = _examples(scalar_pool, ScalarHead)
    images = [(k, p) for k, p in _examples([registry.get(n) for n in image_kinds], SpatialHead)
              if all(int(size) % 2 == 0 for size in p.get("shape", (1,)))]
    if not images:
        raise ValueError(f"no example of {list(image_kinds)} has an even grid; give image_kinds with such an example")
    if kinds is not None and not scalars:
        raise ValueError(f"none of {list(kinds)} has an example with a ScalarHead")

    @st.composite
    def draw_spec(draw: st.DrawFn) -> dict[str, Any]:
        image_kind, image_params = draw(st.sampled_from(images))
        variables = [{"name": "image", "kind": image_kind.name, **image_params}]
        chosen = draw(st.lists(st.sampled_from(scalars), max_size=max_scalars)) if scalars else []
        for i, (kind, params) in enumerate(chosen):
            weight = draw(st.sampled_from([1.0, 0.5, 2.0]))
            variables.append({"name": f"{_identifier(kind.name)}_{i}", "kind": kind.name, "loss_weight": weight,
                              **params})
        T = draw(st.integers(2, max_timesteps))
        diffusion = {"timesteps": T, "sampling_steps": draw(st.integers(1, min(T, 10))),
                     "gaussian": {"name": draw(st.sampled_from(["linear", "scaled_linear", "cosine"]))},
                     "eta": draw(st.sampled_from([0.0, 1.0]))}
        spatial_dims = len(image_params.get("shape", ())) or 2
        return {"name": "drawn", "variables": variables, "diffusion": diffusion,
                "network": {"spatial_dims": spatial_dims, **TINY_NETWORK}, "seed": draw(st.integers(0, 2**16))}

    return draw_spec()


def batches(model: Any, *, n: int | st.SearchStrategy[int] = st.integers(1, 4),
            missing: bool = True) -> st.SearchStrategy[dict[str, list[Any]]]:
    """Raw records for ``model`` (a built `JointModel`): variable -> list of n records, ``None`` where missing.

    Values come from each variable's ``example_values`` (seeded from the draw); with ``missing`` every
    entry may independently be ``None`` (a missing value, masked from the loss).

    Args:
        model: a `metavoxel.JointModel` (anything with a ``variables`` mapping of `Variable`).
        n: records per batch, or a strategy of it.
        missing: draw missing entries.
    """

    @st.composite
    def draw_batch(draw: st.DrawFn) -> dict[str, list[Any]]:
        size = draw(_size(n))
        generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        batch = {}
        for name, var in model.variables.items():
            values = var.example_values(size, generator)  # (n, ...)
            present = draw(st.lists(st.booleans(), min_size=size, max_size=size)) if missing else [True] * size
            batch[name] = [values[i] if keep else None for i, keep in enumerate(present)]
        return batch

    return draw_batch()
