"""The Variable conformance suite: the contract of `metavoxel.Variable`, checked on any kind.

Every kind — built-in or third-party — must pass every check, for every parameter set in its
``VariableKind.examples``. Use it from pytest::

    import pytest
    from metavoxel.testing import conformance_cases, run_check

    @pytest.mark.parametrize(("kind", "params", "check"), conformance_cases(my_registry))
    def test_conformance(kind, params, check):
        run_check(kind, params, check)

A spatial kind's example gives its grid as ``shape`` (2 or 3 sizes); the checks build it with that many
spatial dims. A kind whose encode/decode is lossy (e.g. a VAE) sets ``lossless = False`` on its variables
(`metavoxel.DeclaresRoundTrip`). Beyond each method on its own, the checks prove what the engine relies on:
head widths against z, the summary contract, samples inside the declared domain, and (`check_joint_model`)
a tiny `JointModel` trained and sampled free and fixed through the public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from metavoxel.errors import InputError
from metavoxel.plugins.registry import Registry
from metavoxel.processes.schedules import make_schedule
from metavoxel.variables.capabilities import HasCategories, HasLossMap, HasValueRange, is_lossless
from metavoxel.variables.decoded import checked_decode
from metavoxel.variables.protocol import BuildContext, ScalarHead, SpatialHead, Variable, VariableKind, missing_members
from metavoxel.variables.summary_contract import summary_problem
from metavoxel.testing.fast_path import check_fast_path
from metavoxel.testing.joint_check import check_joint_model

__all__ = ["CHECKS", "build_example", "conformance_cases", "run_check"]

B = 5  # records per check
T = 50  # diffusion steps of the test context


def build_example(kind: VariableKind, params: dict[str, Any], name: str = "v") -> Variable:
    """Validate ``params`` with the kind's spec model and build the variable in a small test context."""
    spec = kind.spec.model_validate({"name": name, "kind": kind.name, **params})
    dims = len(params.get("shape", (0, 0, 0)))
    ctx = BuildContext(T, {"gaussian": make_schedule("scaled_linear", T), "discrete": make_schedule("cosine", T)},
                       spatial_dims=dims, seed=0)
    return kind.build(spec, ctx)


class Case:
    """One variable under test with a fixed set of example records."""

    def __init__(self, kind: VariableKind, params: dict[str, Any]):
        self.kind, self.params = kind, params
        self.var = build_example(kind, params)
        self.values = self.var.example_values(B, _gen(0))
        self.z0 = self.var.encode(self.var.values(self.values)[0])

    def levels(self, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (t, s) with 1 <= t <= T and 0 <= s < t, per record."""
        t = torch.randint(1, T + 1, (B,), generator=_gen(seed))
        s = (torch.rand(B, generator=_gen(seed + 1)) * t).long()
        return t, s

    def output(self, seed: int = 2) -> torch.Tensor:
        """A random network output of the right shape for this variable."""
        head = self.var.head
        shape = (B, head.channels, *head.shape) if isinstance(head, SpatialHead) else (B, head.out_features)
        return torch.randn(shape, generator=_gen(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same_kind_of_tensor(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)}, expected {tuple(b.shape)}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype}, expected {b.dtype}"
    if a.is_floating_point():
        assert torch.isfinite(a).all(), f"{what}: not finite"


# -- the checks ---------------------------------------------------------------------------------------
def check_spec(case: Case) -> None:
    """The spec model validates, round-trips through JSON, and forbids unknown fields."""
    from pydantic import ValidationError

    spec = case.kind.spec.model_validate({"name": "v", "kind": case.kind.name, **case.params})
    assert case.kind.spec.model_validate_json(spec.model_dump_json()) == spec, "spec does not round-trip through JSON"
    try:
        case.kind.spec.model_validate({"name": "v", "kind": case.kind.name, **case.params, "no_such_field": 1})
    except ValidationError:
        return
    raise AssertionError("the spec model accepts unknown fields; set model_config extra='forbid'")


def check_protocol(case: Case) -> None:
    """The variable has every protocol member and a well-formed head."""
    var = case.var
    assert not missing_members(var), f"missing protocol members: {missing_members(var)}"
    assert var.kind == case.kind.name, f"variable.kind is {var.kind!r}, expected {case.kind.name!r}"
    head = var.head
    if isinstance(head, SpatialHead):
        assert head.channels >= 1 and all(s >= 1 for s in head.shape), f"bad spatial head {head}"
    else:
        assert isinstance(head, ScalarHead), f"head must be SpatialHead or ScalarHead, got {type(head).__name__}"
        assert min(head.channel_features, head.token_features, head.out_features) >= 1, f"bad scalar head {head}"


def check_values(case: Case) -> None:
    """Example values are accepted as present; a None record is marked missing."""
    values, present = case.var.values(case.values)
    assert present.dtype == torch.bool and present.shape == (B,), "present must be a (B,) bool tensor"
    assert present.all(), "example values must all be present"
    records: list[Any] = [case.values[i] for i in range(B)]
    records[1] = None
    _values, present = case.var.values(records)
    assert present.tolist() == [True, False, True, True, True], "a None record must be marked missing"


def check_encode_decode(case: Case) -> None:
    """decode(encode(values)) has the values' shape (and equals them for lossless kinds)."""
    values = case.var.values(case.values)[0]
    decoded = case.var.decode(case.z0)
    assert decoded.shape == values.shape, f"decode gives {tuple(decoded.shape)}, values are {tuple(values.shape)}"
    if is_lossless(case.var):
        torch.testing.assert_close(decoded.to(values.dtype), values, rtol=1e-5, atol=1e-5)


def check_prior(case: Case) -> None:
    """prior(n) has the shape and dtype of z0."""
    _same_kind_of_tensor(case.var.prior(B, generator=_gen(3), device="cpu"), case.z0, "prior")


def check_corruption(case: Case) -> None:
    """corrupt/renoise/undo keep shape and dtype; at t = 0 corrupt and renoise return z0 exactly."""
    var, z0 = case.var, case.z0
    t, s = case.levels()
    z_t, _target = var.corrupt(z0, t, generator=_gen(4))
    _same_kind_of_tensor(z_t, z0, "corrupt")
    _same_kind_of_tensor(var.renoise(z0, t, generator=_gen(5)), z0, "renoise")
    zero = torch.zeros(B, dtype=torch.long)
    assert torch.equal(var.renoise(z0, zero, generator=_gen(6)), z0), "renoise at t = 0 must return z0 exactly"
    assert torch.equal(var.corrupt(z0, zero, generator=_gen(6))[0], z0), "corrupt at t = 0 must return z0 exactly"
    _same_kind_of_tensor(var.undo(var.renoise(z0, s, generator=_gen(7)), s, t, generator=_gen(8)), z0, "undo")


def check_reverse_step(case: Case) -> None:
    """reverse_step keeps shape and dtype, for eta 0 and 1, down to s = 0."""
    var = case.var
    t, s = case.levels()
    z_t = var.corrupt(case.z0, t, generator=_gen(9))[0]
    for eta in (0.0, 1.0):
        _same_kind_of_tensor(var.reverse_step(z_t, case.output(), t, s, eta=eta, generator=_gen(10)), z_t, "reverse_step")
    final = var.reverse_step(z_t, case.output(), t, torch.zeros(B, dtype=torch.long), eta=1.0, generator=_gen(10))
    _same_kind_of_tensor(final, z_t, "reverse_step to s = 0")


def check_loss(case: Case) -> None:
    """loss is per record (B,), finite, and differentiable in the network output; a spatial kind declaring
    `HasLossMap` gives a per-location loss (B, *head.shape) whose mean over the locations is loss."""
    t, _ = case.levels()
    _z_t, target = case.var.corrupt(case.z0, t, generator=_gen(11))
    out = case.output().requires_grad_(True)
    loss = case.var.loss(out, target)
    assert loss.shape == (B,), f"loss must have shape (B,) = ({B},), got {tuple(loss.shape)}"
    assert torch.isfinite(loss).all(), "loss is not finite"
    loss.sum().backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0, "loss has no gradient"
    head = case.var.head
    if isinstance(case.var, HasLossMap) and isinstance(head, SpatialHead):
        with torch.no_grad():
            loss_map = case.var.loss_map(out, target)
        assert loss_map.shape == (B, *head.shape), (f"loss_map must have shape (B, *head.shape) = {(B, *head.shape)}, "
                                                    f"got {tuple(loss_map.shape)}")
        assert torch.allclose(loss_map.flatten(1).mean(dim=1).double(), loss.detach().double(), rtol=1e-4, atol=1e-6), (
            "loss_map averaged over the locations differs from loss; a kind overriding loss must override loss_map too")


def check_network_io(case: Case) -> None:
    """channel_input (and token_input for scalars) have the widths the head declares."""
    var, head = case.var, case.var.head
    z_t = var.corrupt(case.z0, case.levels()[0], generator=_gen(12))[0]
    c = var.channel_input(z_t)
    assert c.is_floating_point(), "channel_input must be floating point"
    if isinstance(head, SpatialHead):
        assert c.shape == (B, head.channels, *head.shape), f"channel_input {tuple(c.shape)} does not match {head}"
    else:
        assert c.shape == (B, head.channel_features), f"channel_input {tuple(c.shape)} does not match {head}"
        tok = var.token_input(z_t)
        assert tok.is_floating_point() and tok.shape == (B, head.token_features), f"token_input {tuple(tok.shape)}"


def check_head_width(case: Case) -> None:
    """A scalar head's ``out_features`` is what ``loss`` and ``reverse_step`` read: the width of z when the
    network predicts in z space (noise or x0, a float target of z's shape), K for K class logits."""
    var, head = case.var, case.var.head
    if not isinstance(head, ScalarHead):
        return
    _z_t, target = var.corrupt(case.z0, case.levels()[0], generator=_gen(15))
    width = case.z0[0].numel()  # features of z per record
    if isinstance(target, torch.Tensor) and target.is_floating_point() and target.shape == case.z0.shape:
        assert head.out_features == width, (
            f"ScalarHead(out_features={head.out_features}) but z has {width} features per record (z0 "
            f"{tuple(case.z0.shape)}) and loss compares the output with a target of that shape: a narrower head "
            f"is broadcast over z and trains silently wrong; set out_features={width}")
    if isinstance(var, HasCategories) and not (isinstance(target, torch.Tensor) and target.is_floating_point()):
        k = len(var.categories)
        assert head.out_features == k, (f"ScalarHead(out_features={head.out_features}) for {k} categories: a "
                                        f"head of class logits needs out_features={k}")


def check_domain(case: Case) -> None:
    """Samples (prior, then reverse steps to level 0 with random network outputs, decoded) are values the
    kind accepts, inside its declared `HasValueRange` and among its `HasCategories` labels."""
    var = case.var
    z = var.prior(B, generator=_gen(16), device="cpu")
    grid = [T, (3 * T) // 4, T // 2, T // 4, 0]
    for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
        t_, s_ = torch.full((B,), t, dtype=torch.long), torch.full((B,), s, dtype=torch.long)
        z = var.reverse_step(z, case.output(seed=17 + i), t_, s_, eta=1.0, generator=_gen(30 + i))
    values = checked_decode(var, z)  # the check sampling makes: finite, or the kind and the fix named
    _values, present = var.values(values)
    assert present.all(), "values() marks decoded samples as missing; samples must be values the kind accepts"
    if isinstance(var, HasValueRange):
        lo, hi = var.value_range
        slack = 1e-5 * (hi - lo)
        flat = values.double().reshape(-1)
        assert ((flat >= lo - slack) & (flat <= hi + slack)).all(), (
            f"samples leave the declared value_range [{lo:g}, {hi:g}] (got [{float(flat.min()):g}, "
            f"{float(flat.max()):g}]); set x0_range so reverse steps clip their estimate of z0 (mv.ClipsDenoised)")
    if isinstance(var, HasCategories):
        for item in var.format(values):
            try:
                var.parse(str(item))
            except InputError as err:
                raise AssertionError(f"a sample formats as {item!r}, which parse rejects: {err}") from None


def check_determinism(case: Case) -> None:
    """The same generator seed gives the same corruption and reverse step."""
    t, s = case.levels()
    a = case.var.corrupt(case.z0, t, generator=_gen(13))[0]
    b = case.var.corrupt(case.z0, t, generator=_gen(13))[0]
    assert torch.equal(a, b), "corrupt is not reproducible from the generator"
    out = case.output()
    a = case.var.reverse_step(a, out, t, s, eta=1.0, generator=_gen(14))
    b = case.var.reverse_step(b, out, t, s, eta=1.0, generator=_gen(14))
    assert torch.equal(a, b), "reverse_step is not reproducible from the generator"


def check_summarize(case: Case) -> None:
    """summarize over (N, S, ...) samples keeps the summary contract that `sample` and `predict` render
    (`metavoxel.variables.summaries`), with the same keys whatever N and S; format gives one object per record."""
    values = case.var.values(case.values)[0]
    keys = None
    for n, s in ((1, B), (B, 1)):
        summary = case.var.summarize(values.reshape(n, s, *values.shape[1:]))  # (N, S, ...)
        problem = summary_problem(summary, n, spatial=isinstance(case.var.head, SpatialHead))
        assert problem is None, f"summarize over samples of shape (N={n}, S={s}, ...): {problem}"
        assert keys is None or list(summary) == keys, f"summary keys {list(summary)} differ from {keys} for other N, S"
        keys = list(summary)
        if isinstance(case.var, HasCategories) and "probs" in summary:
            k = len(case.var.categories)
            assert len(summary["probs"][0]) == k, f"summary['probs'] has {len(summary['probs'][0])} classes, expected {k}"
    assert len(case.var.format(values)) == B, "format must give one object per record"


def check_parse_rejects(case: Case) -> None:
    """parse rejects nonsense with an InputError that names the variable."""
    try:
        case.var.parse("\u2603 not a valid value \u2603")
    except InputError as err:
        assert "v" in str(err), "the error should name the variable"
        return
    raise AssertionError("parse accepted nonsense; it must raise metavoxel.InputError")


CHECKS: tuple[Callable[[Case], None], ...] = (
    check_spec, check_protocol, check_values, check_encode_decode, check_prior, check_corruption,
    check_reverse_step, check_loss, check_network_io, check_head_width, check_domain, check_determinism,
    check_summarize, check_parse_rejects, check_joint_model, check_fast_path,
)


def conformance_cases(registry: Registry) -> Iterator[Any]:
    """pytest params (kind, params, check) for every kind of ``registry``, example and check."""
    import pytest

    for kind in registry.kinds():
        if not kind.examples:
            yield pytest.param(kind, {}, None, id=f"{kind.name}-no-examples")
            continue
        for i, params in enumerate(kind.examples):
            for check in CHECKS:
                yield pytest.param(kind, params, check, id=f"{kind.name}[{i}]-{check.__name__.removeprefix('check_')}")


def run_check(kind: VariableKind, params: dict[str, Any], check: Callable[[Case], None] | None) -> None:
    """Run one conformance check; a kind without examples fails (it must declare at least one)."""
    assert check is not None, f"kind {kind.name!r} declares no examples; give VariableKind(examples=...) one or more"
    check(Case(kind, params))
