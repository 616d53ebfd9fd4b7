"""The conformance suite as a pytest plugin: the `metavoxel_conformance` fixture and `conformance_tests`."""

from __future__ import annotations

import importlib.metadata as md

import pytest

import metavoxel as mv
from metavoxel.testing import CHECKS

pytest_plugins = ["pytester"]

BROKEN_KIND = '''
from typing import Literal

import metavoxel as mv
from metavoxel_builtin.continuous import KIND, Continuous, ContinuousSpec


class LeakySpec(ContinuousSpec):
    kind: Literal["leaky"]


class Leaky(Continuous):
    """A continuous variant whose renoise at t = 0 does not return z0 exactly."""

    kind = "leaky"

    def renoise(self, z0, t, *, generator):
        return super().renoise(z0, t, generator=generator) + 1e-4


BROKEN = mv.VariableKind(name="leaky", spec=LeakySpec, build=Leaky.from_spec, examples=KIND.examples)
'''


def test_the_plugin_is_opt_in_and_this_suite_loads_it_by_name(pytestconfig):
    assert not [ep for ep in md.entry_points(group="pytest11") if ep.value.startswith("metavoxel")]
    assert pytestconfig.pluginmanager.get_plugin("metavoxel.testing.pytest_plugin") is not None  # tests/conftest.py


def test_a_pytest_session_that_does_not_ask_for_it_imports_neither_it_nor_torch(pytester):
    pytester.makepyfile(test_plain='''
        import sys

        def test_nothing_of_metavoxel(request):
            assert "metavoxel_conformance" not in request.fixturenames
            assert not [m for m in sys.modules if m == "torch" or m.startswith("metavoxel")]
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_plugin_adds_no_autouse_fixture():
    import metavoxel.testing.pytest_plugin as plugin

    fixtures = [getattr(plugin, name) for name in dir(plugin) if hasattr(getattr(plugin, name), "_fixture_function_marker")
                or type(getattr(plugin, name)).__name__ == "FixtureFunctionDefinition"]
    assert fixtures, "the plugin should define the metavoxel_conformance fixture"
    for fixture in fixtures:
        marker = getattr(fixture, "_fixture_function_marker", None) or fixture._fixture_function_marker
        assert not marker.autouse


def _run(pytester, *args):
    """The inner session in a subprocess, as a plugin author runs it (loading the plugin by name)."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "metavoxel.testing.pytest_plugin", "-rf", *args)


def test_fixture_passes_a_builtin_kind_and_reports_the_failed_check_of_a_broken_one(pytester):
    pytester.makepyfile(broken_kind=BROKEN_KIND)
    pytester.makepyfile(test_kinds='''
        import metavoxel as mv
        from broken_kind import BROKEN
        from metavoxel_builtin.continuous import KIND

        def test_continuous(metavoxel_conformance):
            from metavoxel.testing import CHECKS

            assert metavoxel_conformance("continuous") == len(CHECKS) * len(KIND.examples)  # every check, example

        def test_leaky(metavoxel_conformance):
            metavoxel_conformance(BROKEN)

        def test_unknown(metavoxel_conformance):
            metavoxel_conformance("no_such_kind")

        def test_bare(metavoxel_conformance):
            metavoxel_conformance(mv.VariableKind(name="bare", spec=KIND.spec, build=KIND.build))

        def test_plain(request):  # the plugin adds no autouse fixture
            assert "metavoxel_conformance" not in request.fixturenames
    ''')
    result = _run(pytester)
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*2 metavoxel conformance check(s) failed:*",
        "*leaky[[]0]-corruption (check_corruption: *): AssertionError: renoise at t = 0 must return z0 exactly*",
        "*leaky[[]1]-corruption*",
    ])
    out = result.stdout.str()
    assert "leaky[0]-spec" not in out and "leaky[0]-loss" not in out  # only the failing check is reported
    assert "unknown variable kind 'no_such_kind': known kinds are" in out
    assert "bare: declares no examples" in out
    for failed in ("test_leaky", "test_unknown", "test_bare"):
        assert f"FAILED test_kinds.py::{failed}" in out
    assert "FAILED test_kinds.py::test_continuous" not in out


def test_conformance_tests_gives_one_item_per_example_and_check(pytester):
    pytester.makepyfile(broken_kind=BROKEN_KIND)
    pytester.makepyfile(test_items='''
        from broken_kind import BROKEN
        from metavoxel.testing import conformance_tests

        test_categorical = conformance_tests("categorical")
        test_leaky = conformance_tests([BROKEN])
    ''')
    result = _run(pytester)
    checks, registry = len(CHECKS), mv.default_registry()
    categorical, leaky = (checks * len(registry.get(k).examples) for k in ("categorical", "continuous"))
    result.assert_outcomes(passed=categorical + leaky - 2, failed=2)  # leaky fails corruption on its 2 examples
    result.stdout.fnmatch_lines(["FAILED test_items.py::test_leaky[[]leaky[[]0]-corruption] - AssertionError*",
                                 "FAILED test_items.py::test_leaky[[]leaky[[]1]-corruption] - *"])


@pytest.mark.parametrize("kinds", [[], ()])
def test_no_kinds_is_an_error(kinds):
    from metavoxel.testing import check_conformance

    with pytest.raises(ValueError, match="at least one kind"):
        check_conformance(kinds)
