"""Every registered kind passes the Variable conformance suite."""

import pytest

from metavoxel.plugins import default_registry
from metavoxel.testing import conformance_cases, run_check


@pytest.mark.parametrize(("kind", "params", "check"), list(conformance_cases(default_registry())))
def test_conformance(kind, params, check):
    run_check(kind, params, check)
