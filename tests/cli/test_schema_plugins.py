"""`metavoxel schema --with-installed-plugins`: the schema can include every installed plugin's kinds."""

from __future__ import annotations

import json
import types
from typing import Literal

import pytest

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.plugins import registry as plugin_registry

BUILTIN_KINDS = {"continuous", "categorical", "image", "image_latent"}


class ExtraSpec(mv.VariableSpec):
    kind: Literal["schema_extra"]
    levels: int = 3


def _extra_plugin() -> types.SimpleNamespace:
    @mv.hookimpl
    def metavoxel_register_kinds(registry):
        registry.add(mv.VariableKind(name="schema_extra", spec=ExtraSpec, build=lambda spec, ctx: None))

    return types.SimpleNamespace(metavoxel_register_kinds=metavoxel_register_kinds)


@pytest.fixture
def extra_installed(monkeypatch):
    """The installed plugins plus one from another distribution, as `default_registry` sees them."""
    registry = mv.build_registry([(_extra_plugin(), mv.PluginOrigin("schema_extra", "metavoxel-extra", "0.1"))])
    monkeypatch.setattr(plugin_registry, "default_registry", lambda: registry)
    return registry


def _kinds(schema_file) -> set[str]:
    schema = json.loads(schema_file.read_text())
    return {d["properties"]["kind"]["const"] for d in schema["$defs"].values()
            if "const" in d.get("properties", {}).get("kind", {})}


def test_default_schema_lists_exactly_the_builtin_kinds(tmp_path, extra_installed):
    assert run(["schema", "--out", str(tmp_path)]) == 0
    assert _kinds(tmp_path / "modelspec.schema.json") == BUILTIN_KINDS
    assert run(["schema", "--out", str(tmp_path), "--check"]) == 0


def test_with_installed_plugins_adds_every_installed_kind(tmp_path, extra_installed, capsys):
    assert run(["schema", "--out", str(tmp_path), "--with-installed-plugins"]) == 0
    assert _kinds(tmp_path / "modelspec.schema.json") == set(extra_installed) >= BUILTIN_KINDS | {"schema_extra"}
    assert run(["schema", "--out", str(tmp_path), "--check", "--with-installed-plugins"]) == 0
    capsys.readouterr()
    # the built-in-only schema differs from the one just written, and --check says how to regenerate it
    assert run(["schema", "--out", str(tmp_path), "--check"]) == 1
    assert "modelspec.schema.json" in capsys.readouterr().err


def test_the_flag_reaches_the_library_functions(tmp_path, extra_installed):
    from metavoxel.schema_files import render_schema_files, stale_schema_files, write_schema_files

    assert "schema_extra" not in render_schema_files()["modelspec.schema.json"]
    assert "schema_extra" in render_schema_files(with_installed_plugins=True)["modelspec.schema.json"]
    write_schema_files(tmp_path, with_installed_plugins=True)
    assert stale_schema_files(tmp_path, with_installed_plugins=True) == []
    assert stale_schema_files(tmp_path) == ["modelspec.schema.json"]
