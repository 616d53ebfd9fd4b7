"""metavoxel's built-in variable kinds, shaped exactly like third-party plugins.

Each module is registered through the ``metavoxel`` entry-point group of metavoxel's own pyproject and
imports only the public API of ``metavoxel``.
"""
