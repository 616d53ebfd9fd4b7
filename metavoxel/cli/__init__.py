"""The ``metavoxel`` command line: a thin Typer layer over the library API."""

from metavoxel.cli.main import app, main, run

__all__ = ["app", "main", "run"]
