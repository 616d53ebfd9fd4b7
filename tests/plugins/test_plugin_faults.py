"""A faulty plugin harms only itself: a raising hook or builder, a method that raises, a plugin that fails to
import or is blocked — each reported once by kind, distribution and version, everything else keeps working."""

from __future__ import annotations

import types
import warnings

import pytest
from fake_dist import forget, install
from tiny_runs import write_run
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.plugins.registry import PluginWarning

FLAKY = '''
from typing import Literal

import metavoxel as mv
from metavoxel_builtin.continuous import KIND, Continuous, ContinuousSpec


class FlakySpec(ContinuousSpec):
    kind: Literal["flaky"]


class Flaky(Continuous):
    """A continuous kind whose encode breaks on values above 50 (a bug)."""

    kind = "flaky"

    def encode(self, values):
        if (values > 50).any():
            raise ValueError("cannot encode values above 50")
        return super().encode(values)


def build(spec, ctx):
    if spec.range[1] > 1000:
        raise RuntimeError("range too wide for this build")
    return Flaky.from_spec(spec, ctx)


KIND = mv.VariableKind(name="flaky", spec=FlakySpec, build=build, examples=KIND.examples)


@mv.hookimpl
def metavoxel_register_kinds(registry):
    registry.add(KIND)
'''


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    """The metavoxel-flaky 0.3 distribution, installed; yields its module path."""
    monkeypatch.delenv("METAVOXEL_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("METAVOXEL_DEBUG", raising=False)
    path = install(tmp_path / "site", monkeypatch, distribution="metavoxel-flaky", version="0.3",
                   module="metavoxel_flaky", source=FLAKY, entry_point="flaky")
    yield path
    forget("metavoxel_flaky")


def _spec(hi: float = 95.0) -> dict:
    spec = tiny_spec_2d()
    spec["variables"].append({"name": "score", "kind": "flaky", "range": [0.0, hi]})
    return spec


def _raising_plugin():
    @mv.hookimpl
    def metavoxel_register_kinds(registry):
        raise RuntimeError("hook exploded")

    return types.SimpleNamespace(metavoxel_register_kinds=metavoxel_register_kinds)


def test_a_raising_hook_is_recorded_once_and_every_other_kind_works():
    registry = mv.build_registry([(_raising_plugin(), mv.PluginOrigin("boom", "metavoxel-boom", "1.2"))])
    (failure,) = registry.failures
    assert "plugin 'boom' from metavoxel-boom 1.2" in str(failure) and "hook exploded" in str(failure)
    assert {"continuous", "categorical", "image"} <= set(registry)
    mv.JointModel(tiny_spec_2d(), registry=registry)  # a model that does not use the plugin
    with pytest.raises(mv.PluginError, match="plugin 'boom' from metavoxel-boom 1.2 raised while registering"):
        mv.build_registry([(_raising_plugin(), mv.PluginOrigin("boom", "metavoxel-boom", "1.2"))], strict=True)


def test_a_hook_that_raises_after_adding_a_kind_leaves_none_of_its_kinds():
    @mv.hookimpl
    def metavoxel_register_kinds(registry):
        registry.add(mv.default_registry().get("continuous").__class__(
            name="half", spec=mv.default_registry().get("continuous").spec, build=lambda s, c: None))
        raise RuntimeError("then it broke")

    plugin = types.SimpleNamespace(metavoxel_register_kinds=metavoxel_register_kinds)
    registry = mv.build_registry([(plugin, mv.PluginOrigin("half", "metavoxel-half", "0.1"))])
    assert "half" not in registry and len(registry.failures) == 1


def test_the_cli_lists_the_rest_and_warns_once(flaky, monkeypatch, capsys):
    flaky.write_text(FLAKY.replace("def metavoxel_register_kinds(registry):\n",
                                   "def metavoxel_register_kinds(registry):\n    raise KeyError('oops')\n"))
    forget("metavoxel_flaky")
    assert run(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "continuous" in captured.out and "plugin 'flaky' from metavoxel-flaky 0.3" in captured.out
    assert captured.out.count("failed:") == 1 and "warning" not in captured.err
    forget("metavoxel_flaky")
    assert run(["schema", "--out", str(flaky.parent / "schemas"), "--with-installed-plugins"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: plugin 'flaky' from metavoxel-flaky 0.3") == 1 and len(err.strip().splitlines()) == 1


def test_an_error_inside_a_kinds_method_is_one_line_naming_kind_and_distribution(flaky, tmp_path, capsys, monkeypatch):
    model = write_run(tmp_path / "run", _spec())
    assert run(["sample", "--model", str(model), "--fix", "score=20", "--steps", "2", "--out", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    out = tmp_path / "bad"
    assert run(["sample", "--model", str(model), "--fix", "score=80", "--steps", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: variable kind 'flaky' (plugin 'flaky' from metavoxel-flaky 0.3) failed in encode(): "
                          "ValueError: cannot encode values above 50")
    assert not out.exists()
    monkeypatch.setenv("METAVOXEL_DEBUG", "1")
    with pytest.raises(ValueError, match="above 50"):
        run(["sample", "--model", str(model), "--fix", "score=80", "--steps", "2", "--out", str(out)])


def test_a_builder_that_raises_is_named(flaky, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    import json

    spec.write_text(json.dumps(_spec(hi=5000.0)))
    assert run(["train", "--spec", str(spec), "--data", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert "variable kind 'flaky' (plugin 'flaky' from metavoxel-flaky 0.3) failed in build(): RuntimeError" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("broken", ["import", "blocked"])
def test_an_installed_plugin_that_failed_or_is_blocked_is_never_called_missing(flaky, tmp_path, capsys, monkeypatch,
                                                                               broken):
    model = write_run(tmp_path / "run", _spec())
    spec = tmp_path / "spec.json"
    spec.write_text((model / "spec.json").read_text().split('"spec": ', 1)[1].rsplit("}", 1)[0])
    if broken == "import":
        flaky.write_text("raise ImportError('a dependency is missing')\n")
        expected = "plugin 'flaky' from metavoxel-flaky 0.3 is installed but failed to load (ImportError: a dependency"
    else:
        monkeypatch.setenv("METAVOXEL_DISABLE_PLUGINS", "flaky")
        expected = "plugin 'flaky' from metavoxel-flaky 0.3 is installed but blocked by METAVOXEL_DISABLE_PLUGINS"
    forget("metavoxel_flaky")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        code = run(["sample", "--model", str(model), "--steps", "2", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and "not installed" not in err, err
    forget("metavoxel_flaky")
    code = run(["train", "--spec", str(spec), "--data", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and "does not match" not in err, err
