"""``python -m metavoxel`` runs the command line."""

from metavoxel.cli import main

main()
