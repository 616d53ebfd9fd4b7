"""The fast-path conformance check on the interpreted Triton kernels: every built-in kind that opts in."""

from __future__ import annotations

import pytest

from metavoxel.plugins import default_registry
from metavoxel.testing.conformance import Case
from metavoxel.testing.fast_path import check_fast_path, fast_path_backends

pytestmark = pytest.mark.usefixtures("interpreter")


@pytest.mark.parametrize("kind,example", [("continuous", 0), ("continuous", 1), ("categorical", 0), ("image", 0),
                                          ("image", 1)],
                         ids=["continuous", "continuous-v", "categorical", "image", "image-v"])
def test_fused_kernels_equal_the_kinds_own_methods_under_triton(kind, example):
    assert "triton" in fast_path_backends()  # the interpreter runs the Triton kernels on the CPU
    registry_kind = default_registry().get(kind)
    params = dict(registry_kind.examples[example])
    assert params.get("prediction", "eps") == ("v" if example == 1 else "eps")  # each kind's second example predicts v
    check_fast_path(Case(registry_kind, params))
