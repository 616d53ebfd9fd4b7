"""metavoxel-ordinal: the ``ordinal`` variable kind for metavoxel, an example third-party plugin.

The entry point ``ordinal = "metavoxel_ordinal.plugin"`` (group ``metavoxel``) registers the kind;
`metavoxel_ordinal.process` holds the neighbour-move discrete diffusion it brings.
"""

__version__ = "0.1.0"
