"""The Variable conformance suite as a pytest plugin, for plugin authors.

Opt-in: a test suite that wants it loads it by name, with ``-p metavoxel.testing.pytest_plugin`` on the pytest
command line, in ``addopts`` (``[tool.pytest.ini_options] addopts = "-p metavoxel.testing.pytest_plugin"``), or
with ``pytest_plugins = ["metavoxel.testing.pytest_plugin"]`` in the root conftest.py; metavoxel registers no
``pytest11`` entry point, so other pytest sessions never import it. Two ways to use it::

    # 1. the fixture: one test per kind, every check on every example; a failure lists each failed check
    def test_my_kind_conforms(metavoxel_conformance):
        metavoxel_conformance("ordinal")          # a kind name (installed plugins), or a VariableKind

    # 2. one pytest item per (kind, example, check), assigned to a test_* name in a test module
    from metavoxel.testing import conformance_tests
    test_ordinal = conformance_tests("ordinal")

The plugin adds no autouse fixture, option or hook, and imports torch and the suite only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from metavoxel.plugins.registry import Registry
    from metavoxel.variables.protocol import VariableKind

__all__ = ["check_conformance", "conformance_tests", "metavoxel_conformance"]

class _Kinds:
    """A registry-shaped view of chosen kinds (what `conformance_cases` iterates)."""

    def __init__(self, kinds: list[VariableKind]):
        self._kinds = kinds

    def kinds(self) -> list[VariableKind]:
        return list(self._kinds)


def resolve_kinds(kinds: Any, registry: Registry | None = None) -> list[VariableKind]:
    """Kind names and/or `VariableKind` objects -> kinds; names are looked up in ``registry``.

    Args:
        kinds: one kind name or `VariableKind`, or an iterable of them.
        registry: where names are looked up; default the installed plugins (`metavoxel.default_registry`).
    """
    from metavoxel.variables.protocol import VariableKind

    items = [kinds] if isinstance(kinds, (str, VariableKind)) else list(kinds)
    if not items:
        raise ValueError("give at least one kind name or VariableKind to check")
    resolved = []
    for item in items:
        if isinstance(item, VariableKind):
            resolved.append(item)
            continue
        if registry is None:
            from metavoxel.plugins.registry import default_registry

            registry = default_registry()
        resolved.append(registry.get(item))  # PluginError listing the known kinds if absent
    return resolved


def check_conformance(kinds: Any, registry: Registry | None = None) -> int:
    """Run every conformance check on every example of ``kinds``; fail listing each check that failed.

    Args:
        kinds: a kind name or `VariableKind`, or an iterable of them.
        registry: where names are looked up; default the installed plugins.

    Returns:
        The number of checks run (all passed).

    Raises:
        pytest.fail.Exception: naming ``kind[example]-check`` and its message for every failure.
    """
    from metavoxel.testing.conformance import CHECKS, Case

    failures, ran = [], 0
    for kind in resolve_kinds(kinds, registry):
        if not kind.examples:
            failures.append(f"{kind.name}: declares no examples; give VariableKind(examples=...) one or more "
                            "parameter sets for the conformance suite to build")
            continue
        for i, params in enumerate(kind.examples):
            label = f"{kind.name}[{i}]"
            try:
                case = Case(kind, params)
            except Exception as exc:  # the example does not even build
                failures.append(f"{label}-build: {type(exc).__name__}: {exc} (params {params!r})")
                continue
            for check in CHECKS:
                ran += 1
                try:
                    check(case)
                except Exception as exc:
                    name = check.__name__.removeprefix("check_")
                    message = str(exc) or type(exc).__name__
                    failures.append(f"{label}-{name} ({check.__name__}: {(check.__doc__ or '').strip()}): "
                                    f"{type(exc).__name__}: {message}")
    if failures:
        pytest.fail(f"{len(failures)} metavoxel conformance check(s) failed:\n  " + "\n  ".join(failures),
                    pytrace=False)
    return ran


def conformance_tests(kinds: Any, registry: Registry | None = None) -> Callable[..., None]:
    """A test function parametrized over every (kind, example, check); assign it to a ``test_*`` name.

    Example::

        from metavoxel.testing import conformance_tests

        test_ordinal_conformance = conformance_tests("ordinal")

    Each check is its own pytest item with an id such as ``ordinal[0]-corruption``.

    Args:
        kinds: a kind name or `VariableKind`, or an iterable of them (names resolved at collection).
        registry: where names are looked up; default the installed plugins.
    """
    from metavoxel.testing.conformance import conformance_cases, run_check

    cases = list(conformance_cases(_Kinds(resolve_kinds(kinds, registry))))

    @pytest.mark.parametrize(("kind", "params", "check"), cases)
    def test_conformance(kind, params, check) -> None:
        run_check(kind, params, check)

    return test_conformance


@pytest.fixture
def metavoxel_conformance() -> Callable[..., int]:
    """``metavoxel_conformance(kind_or_name, registry=None)``: run the Variable conformance suite on a kind.

    Runs every check on every example of the kind (a name of an installed kind, a `metavoxel.VariableKind`,
    or an iterable of them) and fails listing each failed ``kind[example]-check`` with its message.
    Returns the number of checks run.
    """
    return check_conformance
