"""Tools for testing metavoxel and its plugins: the Variable conformance suite."""

from metavoxel.testing.conformance import CHECKS, build_example, conformance_cases, run_check

__all__ = ["CHECKS", "build_example", "conformance_cases", "run_check"]
