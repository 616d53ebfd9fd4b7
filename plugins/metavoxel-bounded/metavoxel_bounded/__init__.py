"""metavoxel-bounded: the ``bounded`` variable kind for metavoxel, an example third-party plugin.

The entry point ``bounded = "metavoxel_bounded.plugin"`` (group ``metavoxel``) registers the kind.
"""

__version__ = "0.1.0"
