"""The hooks a metavoxel plugin may implement (pluggy project name ``metavoxel``).

A plugin is a module (or object) named by an entry point in the group ``metavoxel``::

    [project.entry-points.metavoxel]
    ordinal = "my_package.metavoxel_plugin"

and marks its hook implementations with `metavoxel.hookimpl`.
"""

from __future__ import annotations

import pluggy

PROJECT = "metavoxel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def metavoxel_register_kinds(registry) -> None:
    """Add the variable kinds this plugin provides.

    Called once per plugin while the registry is built, in sorted plugin-name order.

    Args:
        registry: a `metavoxel.plugins.registry.KindRegistrar`; call ``registry.add(kind)`` with a
            `metavoxel.VariableKind` for each kind. Adding a name another plugin already added raises
            `metavoxel.errors.PluginError` naming both distributions. A hook that raises (or adds anything
            but a `VariableKind`) is recorded once as this plugin's failure, with none of its kinds; the
            other plugins, and every model that does not use its kinds, keep working.

    Example::

        @metavoxel.hookimpl
        def metavoxel_register_kinds(registry):
            registry.add(metavoxel.VariableKind(name="ordinal", spec=OrdinalSpec, build=Ordinal.from_spec))
    """
