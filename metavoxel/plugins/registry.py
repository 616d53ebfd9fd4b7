"""Plugin discovery and the registry of variable kinds.

The plugin manager is built by a function (never at import time), so tests build one with exactly the
plugins they want. Discovery reads the entry-point group ``metavoxel`` in sorted name order; the
environment variable ``METAVOXEL_DISABLE_PLUGINS`` (comma-separated entry-point or distribution names)
blocks plugins (they are remembered as blocked). A plugin that fails to import, or whose hook raises, is
recorded once with its distribution and version (and raised in strict mode) and the other plugins load as
usual, so it harms only the models that use its kinds; two kinds with one name is an error naming both
distributions. `Registry.unavailable` explains a kind that is not registered: which installed plugins
failed or are blocked, never "not installed" for those.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from metavoxel.errors import PluginError
from metavoxel.plugins import hookspecs
from metavoxel.variables.protocol import VariableKind

__all__ = ["KindRegistrar", "PluginFailure", "PluginOrigin", "PluginWarning", "Registry", "build_plugin_manager",
           "build_registry", "default_registry", "disabled_plugins"]

ENTRY_POINT_GROUP = "metavoxel"
DISABLE_ENV = "METAVOXEL_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin came from: its name, distribution, version and entry point (if any)."""

    name: str
    distribution: str = "(not installed)"
    version: str = ""
    entry_point: str = ""

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}".strip()
        return f"plugin {self.name!r} from {dist}"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    origin: PluginOrigin
    error: str

    def __str__(self) -> str:
        return f"{self.origin} failed to load: {self.error}"


class PluginWarning(UserWarning):
    """An installed plugin failed to load or register; emitted once when the installed plugins are loaded."""


@dataclass(frozen=True)
class RegisteredKind:
    kind: VariableKind
    origin: PluginOrigin


def disabled_plugins(env: str | None = None) -> frozenset[str]:
    """Names in ``METAVOXEL_DISABLE_PLUGINS`` (entry-point or distribution names)."""
    text = os.environ.get(DISABLE_ENV, "") if env is None else env
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def build_plugin_manager(
    plugins: Iterable[tuple[Any, PluginOrigin]] = (),
    *,
    entry_points: bool = True,
    disabled: Iterable[str] | None = None,
    strict: bool = False,
    blocked_out: list[PluginOrigin] | None = None,
) -> tuple[pluggy.PluginManager, dict[str, PluginOrigin], list[PluginFailure]]:
    """A fresh plugin manager holding the given plugins and (optionally) the installed entry points.

    Args:
        plugins: extra (plugin object, origin) pairs, e.g. in tests.
        entry_points: also load the entry-point group ``metavoxel``.
        disabled: names to skip; default from ``METAVOXEL_DISABLE_PLUGINS``.
        strict: raise `PluginError` on the first plugin that fails to load instead of recording it.
        blocked_out: if given, the origins of the plugins the block-list skipped are appended to it.

    Returns:
        (manager, plugin name -> origin, failures).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = disabled_plugins() if disabled is None else frozenset(disabled)
    origins: dict[str, PluginOrigin] = {}
    failures: list[PluginFailure] = []
    skipped = [] if blocked_out is None else blocked_out
    candidates = list(plugins)
    if entry_points:
        candidates += _entry_point_plugins(blocked, failures, strict, skipped)
    for plugin, origin in sorted(candidates, key=lambda pair: pair[1].name):
        if origin.name in blocked or origin.distribution in blocked:
            skipped.append(origin)
            continue
        if origin.name in origins:
            raise PluginError(f"two plugins are named {origin.name!r}: {origins[origin.name]} and {origin}; "
                              f"uninstall one or block it with {DISABLE_ENV}={origin.name}")
        try:
            pm.register(plugin, name=origin.name)
        except Exception as exc:  # pluggy validates hook signatures here
            failure = PluginFailure(origin, f"{type(exc).__name__}: {exc}")
            if strict:
                raise PluginError(str(failure)) from exc
            failures.append(failure)
            continue
        origins[origin.name] = origin
    return pm, origins, failures


def _entry_point_plugins(blocked: frozenset[str], failures: list[PluginFailure], strict: bool,
                         skipped: list[PluginOrigin]):
    loaded = []
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        origin = PluginOrigin(ep.name, dist.metadata["Name"] if dist else "(unknown distribution)",
                              dist.version if dist else "", ep.value)
        if origin.name in blocked or origin.distribution in blocked:
            skipped.append(origin)
            continue
        try:
            loaded.append((ep.load(), origin))
        except Exception as exc:
            failure = PluginFailure(origin, f"{type(exc).__name__}: {exc}")
            if strict:
                raise PluginError(f"{failure}; fix or uninstall it, or block it with {DISABLE_ENV}={ep.name}") from exc
            failures.append(failure)
    return loaded


class KindRegistrar:
    """What a plugin's ``metavoxel_register_kinds`` hook receives: ``add`` kinds, attributed to the plugin."""

    def __init__(self, registry: Registry, origin: PluginOrigin):
        self._registry, self._origin = registry, origin

    def add(self, kind: VariableKind) -> None:
        self._registry._add(kind, self._origin)


class Registry:
    """Variable kinds by name, each with the plugin it came from; and the plugins that failed to load."""

    def __init__(self) -> None:
        self._kinds: dict[str, RegisteredKind] = {}
        self.failures: list[PluginFailure] = []
        self.blocked: list[PluginOrigin] = []
        self.plugins: dict[str, PluginOrigin] = {}

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager, origins: dict[str, PluginOrigin],
                            failures: Iterable[PluginFailure] = (), *, strict: bool = False,
                            blocked: Iterable[PluginOrigin] = ()) -> Registry:
        """Call every plugin's ``metavoxel_register_kinds``. A hook that raises (or adds something that is not
        a `VariableKind`) is recorded in ``failures`` with none of its kinds, and the others register as
        usual; in ``strict`` mode it raises `PluginError`. Two kinds with one name always raise."""
        registry = cls()
        registry.plugins = dict(origins)
        registry.failures = list(failures)
        registry.blocked = list(blocked)
        for impl in sorted(pm.hook.metavoxel_register_kinds.get_hookimpls(), key=lambda i: i.plugin_name):
            origin = origins.get(impl.plugin_name, PluginOrigin(impl.plugin_name))
            before = dict(registry._kinds)
            try:
                impl.function(registry=KindRegistrar(registry, origin))
            except Exception as exc:
                if isinstance(exc, PluginError) and "provided twice" in str(exc):
                    raise  # a conflict between two plugins is the installation's problem, not one plugin's
                detail = str(exc) if isinstance(exc, PluginError) else \
                    f"{origin} raised while registering its kinds: {type(exc).__name__}: {exc}"
                if strict:
                    raise PluginError(detail) from exc
                registry._kinds = before  # none of a failed plugin's kinds: it harms only models that use them
                registry.plugins.pop(impl.plugin_name, None)
                registry.failures.append(PluginFailure(origin, detail.removeprefix(f"{origin} ")))
        return registry

    def _add(self, kind: VariableKind, origin: PluginOrigin) -> None:
        if not isinstance(kind, VariableKind):
            raise PluginError(f"{origin} registered {kind!r}; expected a metavoxel.VariableKind")
        if kind.name in self._kinds:
            other = self._kinds[kind.name].origin
            raise PluginError(f"variable kind {kind.name!r} is provided twice: by {other} and by {origin}; "
                              f"uninstall one or block it with {DISABLE_ENV}")
        self._kinds[kind.name] = RegisteredKind(kind, origin)

    def __contains__(self, name: str) -> bool:
        return name in self._kinds

    def __iter__(self):
        return iter(sorted(self._kinds))

    def __len__(self) -> int:
        return len(self._kinds)

    def get(self, name: str) -> VariableKind:
        """The kind called ``name``; `PluginError` listing the known kinds (and failed plugins) if absent."""
        if name not in self._kinds:
            known = ", ".join(sorted(self._kinds)) or "none"
            hint = f"; plugins that failed to load: {'; '.join(map(str, self.failures))}" if self.failures else ""
            hint += f"; blocked plugins: {', '.join(map(str, self.blocked))}" if self.blocked else ""
            raise PluginError(f"unknown variable kind {name!r}: known kinds are {known}{hint}")
        return self._kinds[name].kind

    def unavailable(self, kind: str | None = None, distribution: str | None = None) -> str | None:
        """Why a kind is not registered although an installed plugin may provide it: the failed or blocked
        plugins named like ``kind`` or from ``distribution`` (every failed or blocked plugin when both are
        None); None when there is no such plugin."""
        def matches(origin: PluginOrigin) -> bool:
            if kind is None and distribution is None:
                return True
            return origin.distribution == distribution or (kind is not None and (
                kind in (origin.name, origin.distribution) or f"-{kind}" in origin.distribution))
        failed = [f for f in self.failures if matches(f.origin)]
        blocked = [o for o in self.blocked if matches(o)]
        parts = [f"{f.origin} is installed but failed to load ({f.error}); fix or reinstall it" for f in failed]
        parts += [f"{o} is installed but blocked by {DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')!r}; remove "
                  f"{o.name!r} from it" for o in blocked]
        return "; ".join(parts) or None

    def origin(self, name: str) -> PluginOrigin:
        self.get(name)
        return self._kinds[name].origin

    def only(self, distribution: str) -> Registry:
        """A registry holding just the kinds that ``distribution`` provides."""
        subset = Registry()
        subset._kinds = {n: r for n, r in self._kinds.items() if r.origin.distribution == distribution}
        subset.plugins = {n: o for n, o in self.plugins.items() if o.distribution == distribution}
        return subset

    def kinds(self) -> list[VariableKind]:
        return [self._kinds[name].kind for name in sorted(self._kinds)]


def build_registry(plugins: Iterable[tuple[Any, PluginOrigin]] = (), *, entry_points: bool = True,
                   disabled: Iterable[str] | None = None, strict: bool = False) -> Registry:
    """A registry from a freshly built plugin manager (see `build_plugin_manager`)."""
    blocked: list[PluginOrigin] = []
    pm, origins, failures = build_plugin_manager(plugins, entry_points=entry_points, disabled=disabled, strict=strict,
                                                 blocked_out=blocked)
    return Registry.from_plugin_manager(pm, origins, failures, strict=strict, blocked=blocked)


@functools.cache
def _cached_default(disabled: frozenset[str]) -> Registry:
    registry = build_registry(disabled=disabled)
    for failure in registry.failures:  # once per process: the default registry is built once
        warnings.warn(f"{failure}; its kinds are unavailable, every other kind works", PluginWarning, stacklevel=3)
    return registry


def default_registry() -> Registry:
    """The registry of installed plugins (built on first use; rebuilt when the block-list changes)."""
    return _cached_default(disabled_plugins())
