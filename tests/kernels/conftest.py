"""Kernel tests run the Triton kernels in Triton's interpreter on CPU tensors.

``TRITON_INTERPRET=1`` must be set before the first ``@triton.jit`` function is defined; the kernel
modules are imported lazily on first launch, so setting it here, at collection, is early enough.
Tests that launch kernels take the ``interpreter`` fixture, which skips them when Triton is missing.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def elementwise_tol():
    """(atol, rtol) per dtype for the elementwise kernels against the reference on the same inputs.

    Both compute in float32 and round once to the output dtype; the slack covers a last-bit difference
    (fused multiply-adds on the GPU).
    """
    return {torch.float32: (1e-6, 1e-6), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}


@pytest.fixture
def attention_tol():
    """(atol, rtol) per dtype for attention outputs and gradients against a float64 reference."""
    return {torch.float32: (2e-5, 2e-5), torch.float16: (4e-3, 4e-3), torch.bfloat16: (3e-2, 2e-2)}


@pytest.fixture
def interpreter(monkeypatch):
    """Skip without Triton; make sure the interpreter is on and no backend is forced by the environment."""
    from metavoxel.kernels.dispatch import triton_missing

    reason = triton_missing()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("METAVOXEL_KERNELS", raising=False)


@pytest.fixture
def gen():
    """A fresh, seeded generator per test, so failures reproduce."""
    return torch.Generator().manual_seed(1234)
