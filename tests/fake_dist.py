"""Install a throwaway plugin distribution for one test: a module plus a ``.dist-info`` (METADATA, entry points)
in a temporary site folder on ``sys.path``, so metavoxel discovers it through the real entry-point machinery."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def install(site: Path, monkeypatch: pytest.MonkeyPatch, *, distribution: str, version: str, module: str,
            source: str, entry_point: str | None = None) -> Path:
    """Write ``module.py`` (``source``) and the dist-info of ``distribution`` into ``site``; returns the module path."""
    site.mkdir(parents=True, exist_ok=True)
    path = site / f"{module}.py"
    path.write_text(source)
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[metavoxel]\n{entry_point or module} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    forget(module)
    return path


def forget(module: str) -> None:
    """Drop the module and the cached default registry, so the next use imports (and registers) afresh."""
    from metavoxel.plugins import registry

    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    registry._cached_default.cache_clear()
