"""The conformance suite proves what the engine relies on: head widths, the summary contract, the declared
domain, and a tiny joint model trained and sampled through the public API."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
import torch
from cyclic_kind import KIND as CYCLIC
from cyclic_kind import Cyclic, CyclicSpec

import metavoxel as mv
from metavoxel.testing import CHECKS, build_example
from metavoxel.testing.conformance import Case, check_domain, check_head_width, check_summarize
from metavoxel.testing.joint_check import check_joint_model
from metavoxel.variables.decoded import NonFiniteValues


def test_a_kind_whose_z_is_wider_than_its_value_passes_every_check():
    case = Case(CYCLIC, CYCLIC.examples[0])
    for check in CHECKS:
        check(case)


def _variant(name: str, build) -> mv.VariableKind:
    spec = type(f"{name.title()}Spec", (CyclicSpec,), {"__annotations__": {"kind": Literal[name]}})
    return mv.VariableKind(name=name, spec=spec, build=build, examples=({"period": 24.0},))


def test_a_head_narrower_than_z_fails_naming_the_fix():
    narrow = _variant("narrow", lambda spec, ctx: Cyclic(spec.name, spec.period, ctx.schedule("gaussian"),
                                                          out_features=1))
    with pytest.raises(AssertionError, match=r"out_features=1.*z has 2 features.*set out_features=2"):
        check_head_width(Case(narrow, {"period": 24.0}))


class _Median(Cyclic):
    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return {"median": samples.double().median(dim=1).values}  # a tensor, not a list per subject


def test_a_summary_outside_the_contract_fails():
    bad = _variant("tensorsum", lambda spec, ctx: _Median(spec.name, spec.period, ctx.schedule("gaussian")))
    with pytest.raises(AssertionError, match=r"summary\['median'\] must be a list of one item per subject.*tolist"):
        check_summarize(Case(bad, {"period": 24.0}))


class _Unclipped(Cyclic):
    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return super().decode(z0) + 24.0 * z0[:, 0].abs().float()  # leaves [0, 24) for most samples


def test_samples_outside_the_declared_range_fail():
    bad = _variant("unclipped", lambda spec, ctx: _Unclipped(spec.name, spec.period, ctx.schedule("gaussian")))
    with pytest.raises(AssertionError, match=r"samples leave the declared value_range \[0, 24\]"):
        check_domain(Case(bad, {"period": 24.0}))


def test_samples_outside_the_categories_fail():
    kind = mv.default_registry().get("categorical")
    case = Case(kind, kind.examples[0])
    case.var.format = lambda values: ["nonsense" for _ in values.reshape(-1)]
    with pytest.raises(AssertionError, match="which parse rejects"):
        check_domain(case)


class _LostOnDecode(Cyclic):
    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return torch.full((len(z0),), float("nan"))  # every sample decodes to "missing"


def test_the_joint_model_check_samples_through_the_engine():
    bad = _variant("lost", lambda spec, ctx: _LostOnDecode(spec.name, spec.period, ctx.schedule("gaussian")))
    with pytest.raises(NonFiniteValues, match="variable 'v' of kind 'cyclic': decode gave 4 NaN value.*x0_range"):
        check_joint_model(Case(bad, {"period": 24.0}))  # the engine's own check of decoded values


class _NaNSteps(Cyclic):
    def reverse_step(self, z_t, out, t, s, *, eta, generator):
        return torch.full_like(z_t, float("nan"))


def test_the_joint_model_check_sees_a_kinds_own_reverse_step():
    bad = _variant("nansteps", lambda spec, ctx: _NaNSteps(spec.name, spec.period, ctx.schedule("gaussian")))
    with pytest.raises(NonFiniteValues, match="the sampled z0 itself holds NaN.*reverse_step"):
        check_joint_model(Case(bad, {"period": 24.0}))


class PositiveSpec(mv.VariableSpec):
    """A positive quantity over a wide range, log-mapped to [-1, 1] (as the older plugin tutorial wrote it)."""

    kind: Literal["positive", "positive_clipped"]
    range: tuple[float, float] = (1e-30, 1e30)


class _Positive(mv.GaussianVariable):
    """values (B,) > 0 <-> z (B, 1) = 2 (log v - log lo) / (log hi - log lo) - 1; no x0_range unless given."""

    def __init__(self, name: str, lo: float, hi: float, abar: torch.Tensor, kind: str, clip: bool):
        self.name, self.kind, self.log_lo, self.log_hi = name, kind, math.log(lo), math.log(hi)
        self.process, self.z_shape = mv.GaussianProcess(abar), (1,)
        self.x0_range = (-1.0, 1.0) if clip else None
        self.head = mv.ScalarHead(channel_features=1, token_features=1, out_features=1)

    def parse(self, text: str) -> float:
        return float(text)

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        v = mv.float_values(raw, self.name)
        present = torch.isfinite(v)
        return torch.where(present, v, 1.0).to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return (2 * (values.double().log() - self.log_lo) / (self.log_hi - self.log_lo) - 1).float().reshape(-1, 1)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        log = self.log_lo + (z0.double().reshape(-1) + 1) / 2 * (self.log_hi - self.log_lo)
        return log.exp().float()  # past ~3.4e38 (z0 > 1.29) float32 overflows to inf

    def format(self, values: torch.Tensor) -> list[float]:
        return [float(v) for v in values.reshape(-1)]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return (self.log_lo + u * (self.log_hi - self.log_lo)).exp().float()

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t

    def token_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return {"median": samples.double().median(dim=1).values.tolist()}


def _positive(name: str, clip: bool) -> mv.VariableKind:
    build = lambda spec, ctx: _Positive(spec.name, *spec.range, ctx.schedule("gaussian"), name, clip)  # noqa: E731
    return mv.VariableKind(name=name, spec=PositiveSpec, build=build, examples=({},))


def test_a_decode_that_overflows_is_named_with_the_fix_after_a_few_training_steps():
    """The issue's log-mapped kind without x0_range: a lightly trained model samples z0 past where encode puts data,
    exp overflows, and the tiny joint model meets the sampler's check (not a broken summary later)."""
    with pytest.raises(NonFiniteValues, match=r"variable 'v' of kind 'positive': decode gave 1 infinite value\(s\) "
                                              r"of 4 from z0 in \[.*\]; declare x0_range \(mv.ClipsDenoised\)"):
        check_joint_model(Case(_positive("positive", clip=False), {}))
    check_joint_model(Case(_positive("positive_clipped", clip=True), {}))  # the fix: x0_range declared


def test_build_example_gives_the_cyclic_kind_two_z_features():
    var = build_example(CYCLIC, {"period": 24.0})
    assert var.encode(torch.tensor([6.0]))[0].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert isinstance(var, mv.HasValueRange) and isinstance(var, mv.ClipsDenoised)
