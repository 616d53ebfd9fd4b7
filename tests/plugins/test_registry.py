"""Plugin discovery: built-ins through entry points, attribution, conflicts, failures, block-list."""

from __future__ import annotations

import importlib.metadata as md
import types

import pytest
from tiny_specs import tiny_spec_2d
from pydantic import ValidationError

import metavoxel as mv
from metavoxel.plugins.registry import build_plugin_manager


def _kind(name: str) -> mv.VariableKind:
    from typing import Literal

    spec = type(f"{name.title()}Spec", (mv.VariableSpec,), {"__annotations__": {"kind": Literal[name]}})
    return mv.VariableKind(name=name, spec=spec, build=lambda s, c: None, description=f"test kind {name}")


def _plugin(*kinds: mv.VariableKind) -> types.SimpleNamespace:
    @mv.hookimpl
    def metavoxel_register_kinds(registry):
        for kind in kinds:
            registry.add(kind)

    return types.SimpleNamespace(metavoxel_register_kinds=metavoxel_register_kinds)


def test_builtins_come_from_the_metavoxel_distribution_through_entry_points():
    registry = mv.build_registry()
    assert {"continuous", "categorical", "image", "image_latent"} <= set(registry)
    origin = registry.origin("categorical")
    assert origin.distribution == "metavoxel" and origin.version == md.version("metavoxel")
    assert origin.entry_point == "metavoxel_builtin.categorical"
    assert not registry.failures


def test_the_core_runs_with_zero_plugins():
    empty = mv.build_registry(entry_points=False)
    assert len(empty) == 0
    with pytest.raises(mv.PluginError, match="unknown variable kind 'continuous': known kinds are none"):
        empty.get("continuous")
    with pytest.raises(mv.SpecError, match="no variable kinds are installed"):
        mv.ModelSpec.from_dict(tiny_spec_2d(), registry=empty)


def test_a_spec_validates_against_the_registry_it_is_given():
    only = mv.build_registry([(_plugin(_kind("ordinal")), mv.PluginOrigin("ordinal", "mv-ordinal", "0.3"))],
                             entry_points=False)
    spec = mv.ModelSpec.from_dict({"variables": [{"name": "cdr", "kind": "ordinal"}]}, registry=only)
    assert spec.variables[0].kind == "ordinal"
    with pytest.raises(ValidationError):
        mv.ModelSpec.model_validate({"variables": [{"name": "x", "kind": "continuous", "range": [0, 1]}]},
                                    context={"registry": only})


def test_duplicate_kind_names_both_distributions():
    a = (_plugin(_kind("score")), mv.PluginOrigin("a_plugin", "dist-a", "1.0"))
    b = (_plugin(_kind("score")), mv.PluginOrigin("b_plugin", "dist-b", "2.0"))
    with pytest.raises(mv.PluginError, match=r"'score' is provided twice: by plugin 'a_plugin' from dist-a 1\.0 "
                                             r"and by plugin 'b_plugin' from dist-b 2\.0"):
        mv.build_registry([b, a], entry_points=False)


def test_plugins_load_in_sorted_order():
    calls = []

    def plugin(name):
        @mv.hookimpl
        def metavoxel_register_kinds(registry):
            calls.append(name)

        return types.SimpleNamespace(metavoxel_register_kinds=metavoxel_register_kinds), mv.PluginOrigin(name)

    mv.build_registry([plugin("zeta"), plugin("alpha"), plugin("mu")], entry_points=False)
    assert calls == ["alpha", "mu", "zeta"]


def _broken_entry_point(monkeypatch):
    dist = md.distribution("metavoxel")
    broken = md.EntryPoint(name="broken", value="no_such_module_xyz", group="metavoxel")
    object.__setattr__(broken, "dist", dist) if hasattr(broken, "dist") else None
    real = md.entry_points

    def fake(**kwargs):
        found = list(real(**kwargs))
        return found + [broken] if kwargs.get("group") == "metavoxel" else found

    monkeypatch.setattr(md, "entry_points", fake)


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_load(monkeypatch):
    _broken_entry_point(monkeypatch)
    registry = mv.build_registry()
    assert "continuous" in registry
    (failure,) = registry.failures
    assert failure.origin.name == "broken" and "No module named 'no_such_module_xyz'" in failure.error
    assert "plugin 'broken' from metavoxel" in str(failure)
    with pytest.raises(mv.PluginError, match="plugin 'broken' from metavoxel .* failed to load.*METAVOXEL_DISABLE"):
        build_plugin_manager(strict=True)
    with pytest.raises(mv.PluginError, match="plugins that failed to load: plugin 'broken'"):
        registry.get("ordinal")


def test_disable_plugins_env_blocks_by_entry_point_or_distribution(monkeypatch):
    monkeypatch.setenv("METAVOXEL_DISABLE_PLUGINS", "image_latent, categorical")
    registry = mv.default_registry()
    assert set(registry) == {"continuous", "image"}
    monkeypatch.setenv("METAVOXEL_DISABLE_PLUGINS", "metavoxel")
    assert len(mv.default_registry()) == 0
    monkeypatch.delenv("METAVOXEL_DISABLE_PLUGINS")
    assert len(mv.default_registry()) >= 4


def test_a_kind_that_builds_a_non_variable_is_reported():
    bad = _kind("bad")
    registry = mv.build_registry([(_plugin(bad), mv.PluginOrigin("badplug", "dist-bad", "0.1"))])
    spec = tiny_spec_2d()
    spec["variables"].append({"name": "b", "kind": "bad"})
    with pytest.raises(mv.PluginError, match="kind 'bad' \\(plugin 'badplug' from dist-bad 0.1\\) built NoneType, "
                                             "which lacks"):
        mv.JointModel(spec, registry=registry)
