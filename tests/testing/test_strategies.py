"""Property tests with the hypothesis strategies of `metavoxel.testing` (specs, timesteps, batches)."""

from __future__ import annotations

import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

import metavoxel as mv
from metavoxel.testing import batches, build_example, model_specs, timesteps
from metavoxel.variables.protocol import ScalarHead, SpatialHead

REGISTRY = mv.default_registry()
SPECS = model_specs(REGISTRY)
_models: dict[str, mv.JointModel] = {}


def _model(spec: dict) -> mv.JointModel:
    """Drawn specs repeat; build each once (a build is the slow part)."""
    key = mv.ModelSpec.from_dict(spec, registry=REGISTRY).to_json()
    if key not in _models:
        _models[key] = mv.JointModel(spec, registry=REGISTRY)
    return _models[key]


@given(timesteps(7))
def test_timestep_pairs_are_ordered_levels(pair):
    t, s = pair
    assert 0 <= s < t <= 7


@given(timesteps(50, batch=st.integers(1, 6)))
def test_timestep_batches_are_long_tensors_of_ordered_levels(ts):
    t, s = ts
    assert t.dtype == s.dtype == torch.long and t.shape == s.shape and t.dim() == 1
    assert ((0 <= s) & (s < t) & (t <= 50)).all()


def test_timesteps_reach_both_ends_of_the_time_axis():
    assert find(timesteps(9), lambda p: p[0] == 9 and p[1] == 8) == (9, 8)
    assert find(timesteps(9), lambda p: p[1] == 0) == (1, 0)  # shrinks to the smallest level


@given(timesteps(50, batch=5))
def test_renoise_then_undo_keeps_a_known_value_finite_on_the_drawn_levels(ts):
    t, s = ts
    var = build_example(REGISTRY.get("continuous"), {"range": [0.0, 1.0]})
    z0 = var.encode(var.example_values(5, torch.Generator().manual_seed(0)))
    z_s = var.renoise(z0, s, generator=torch.Generator().manual_seed(1))
    z_t = var.undo(z_s, s, t, generator=torch.Generator().manual_seed(2))
    assert z_t.shape == z0.shape and torch.isfinite(z_t).all()


@settings(max_examples=25)
@given(SPECS)
def test_every_drawn_spec_validates_and_round_trips(spec):
    parsed = mv.ModelSpec.from_dict(spec, registry=REGISTRY)
    assert parsed.names[0] == "image" and len(set(parsed.names)) == len(parsed.names)
    assert mv.ModelSpec.from_dict(parsed.to_dict(), registry=REGISTRY) == parsed


def test_drawn_specs_mix_every_scalar_kind():
    scalar_kinds = {k.name for k in REGISTRY.kinds() if k.examples
                    and isinstance(build_example(k, k.examples[0]).head, ScalarHead)}
    assert {"continuous", "categorical"} <= scalar_kinds
    specs = model_specs(REGISTRY, max_scalars=len(scalar_kinds))
    mixed = find(specs, lambda s: {v["kind"] for v in s["variables"][1:]} >= scalar_kinds)
    assert len(mixed["variables"]) == 1 + len(scalar_kinds)


@settings(max_examples=6)
@given(SPECS)
def test_every_drawn_spec_builds_a_joint_model(spec):
    model = _model(spec)
    assert list(model.variables) == [v["name"] for v in spec["variables"]]
    assert isinstance(model.variables["image"].head, SpatialHead)


@settings(max_examples=8)
@given(st.data())
def test_drawn_batches_give_finite_per_record_losses_and_missing_entries_give_zero(data):
    model = _model(data.draw(SPECS, label="spec"))
    batch = data.draw(batches(model, n=st.integers(1, 3)), label="batch")
    n = len(batch["image"])
    with torch.no_grad():
        losses = model.training_losses(batch, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss"} | {f"loss/{name}" for name in model.variables}
    total = torch.zeros(n)
    for name, records in batch.items():
        term = losses[f"loss/{name}"]
        assert term.shape == (n,) and torch.isfinite(term).all()
        missing = torch.tensor([r is None for r in records])
        assert (term[missing] == 0).all(), f"{name}: a missing entry contributed to the loss"
        total += model.loss_weights[name] * term
    torch.testing.assert_close(losses["loss"], total)


@settings(max_examples=5)
@given(st.data())
def test_batches_without_missing_have_every_entry(data):
    model = _model(data.draw(SPECS))
    batch = data.draw(batches(model, n=2, missing=False))
    assert all(len(records) == 2 and all(r is not None for r in records) for records in batch.values())
