"""Tools for testing metavoxel and its plugins: the Variable conformance suite, its pytest plugin, and
hypothesis strategies (specs, timesteps, batches).

For plugin authors (see docs/plugins.md):

- the fixture ``metavoxel_conformance(kind_or_name, registry=None)`` (pytest plugin, opt-in:
  ``-p metavoxel.testing.pytest_plugin``);
- ``test_mine = conformance_tests("my_kind")``: one pytest item per (kind, example, check);
- ``timesteps(T)``, ``model_specs(registry)``, ``batches(model)``: hypothesis strategies (needs hypothesis).
"""

from metavoxel.testing.conformance import CHECKS, build_example, conformance_cases, run_check

__all__ = ["CHECKS", "batches", "build_example", "check_conformance", "conformance_cases", "conformance_tests",
           "model_specs", "run_check", "timesteps"]

_LAZY = {  # imported on first use: pytest and hypothesis are test-time dependencies
    "check_conformance": "metavoxel.testing.pytest_plugin",
    "conformance_tests": "metavoxel.testing.pytest_plugin",
    "batches": "metavoxel.testing.strategies",
    "model_specs": "metavoxel.testing.strategies",
    "timesteps": "metavoxel.testing.strategies",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metavoxel.testing' has no attribute {name!r}")
