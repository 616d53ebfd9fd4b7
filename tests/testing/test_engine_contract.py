"""The conformance suite proves what the engine relies on: head widths, the summary contract, the declared
domain, and a tiny joint model trained and sampled through the public API."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import torch
from cyclic_kind import KIND as CYCLIC
from cyclic_kind import Cyclic, CyclicSpec

import metavoxel as mv
from metavoxel.testing import CHECKS, build_example
from metavoxel.testing.conformance import Case, check_domain, check_head_width, check_summarize
from metavoxel.testing.joint_check import check_joint_model


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
    with pytest.raises(AssertionError, match="marks sampled values as missing"):
        check_joint_model(Case(bad, {"period": 24.0}))


class _NaNSteps(Cyclic):
    def reverse_step(self, z_t, out, t, s, *, eta, generator):
        return torch.full_like(z_t, float("nan"))


def test_the_joint_model_check_sees_a_kinds_own_reverse_step():
    bad = _variant("nansteps", lambda spec, ctx: _NaNSteps(spec.name, spec.period, ctx.schedule("gaussian")))
    with pytest.raises(AssertionError):
        check_joint_model(Case(bad, {"period": 24.0}))


def test_build_example_gives_the_cyclic_kind_two_z_features():
    var = build_example(CYCLIC, {"period": 24.0})
    assert var.encode(torch.tensor([6.0]))[0].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert isinstance(var, mv.HasValueRange) and isinstance(var, mv.ClipsDenoised)
