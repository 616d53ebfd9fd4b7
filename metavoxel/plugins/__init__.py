"""Plugin discovery (pluggy) and the registry of variable kinds."""

from metavoxel.plugins.hookspecs import hookimpl, hookspec
from metavoxel.plugins.registry import (PluginFailure, PluginOrigin, PluginWarning, Registry, build_plugin_manager,
                                        build_registry, default_registry)

__all__ = ["PluginFailure", "PluginOrigin", "PluginWarning", "Registry", "build_plugin_manager", "build_registry",
           "default_registry", "hookimpl", "hookspec"]
