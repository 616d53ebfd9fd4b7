"""Which plugin raised: an unexpected exception traced back to the kind and distribution whose code raised it.

A kind's ``build``, ``encode`` or any other method that raises something other than a `metavoxel.MetavoxelError`
is a bug in that plugin. The CLI turns it into one line naming the kind, the method, the distribution and
version (``METAVOXEL_DEBUG=1`` shows the traceback), instead of a traceback that names none of them.
"""

from __future__ import annotations

import types

from metavoxel.plugins.registry import DISABLE_ENV, PluginOrigin, Registry

__all__ = ["blame"]


def _package(module: str | None) -> str:
    return (module or "").split(".")[0]


def _plugin_packages(registry: Registry) -> dict[str, list[tuple[str, PluginOrigin]]]:
    """Top-level package -> [(kind name, origin)] for every registered kind (from its build and entry point)."""
    packages: dict[str, list[tuple[str, PluginOrigin]]] = {}
    for name in registry:
        kind, origin = registry.get(name), registry.origin(name)
        for module in {_package(getattr(kind.build, "__module__", None)), _package(origin.entry_point.split(":")[0])}:
            if module and module != "metavoxel":
                packages.setdefault(module, []).append((name, origin))
    return packages


def _frames(tb: types.TracebackType | None):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def blame(exc: BaseException, registry: Registry) -> str | None:
    """One line naming the kind, method and distribution whose code raised ``exc``; None when no plugin code
    is on its traceback (then it is metavoxel's own bug and deserves the traceback)."""
    packages = _plugin_packages(registry)
    for frame in _frames(exc.__traceback__):  # outermost plugin frame: the method the engine called
        owners = packages.get(_package(frame.f_globals.get("__name__")))
        if not owners:
            continue
        owner = frame.f_locals.get("self")
        own_kind = owner.kind if isinstance(getattr(type(owner), "kind", None), str) else None
        named = [(k, o) for k, o in owners if k == own_kind] or owners
        kinds = ", ".join(repr(k) for k, _ in named)
        origin = named[0][1]
        message = " ".join(str(exc).split()) or "(no message)"
        return (f"variable kind {kinds} ({origin}) failed in {frame.f_code.co_name}(): {type(exc).__name__}: "
                f"{message}; this is a bug in {origin.distribution} — report it to its authors, or block it with "
                f"{DISABLE_ENV}={origin.name} (METAVOXEL_DEBUG=1 shows the traceback)")
    return None
