"""Backend dispatch: auto falls back quietly and says so, explicit triton raises with the reason."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch

from metavoxel.kernels import KernelUnavailable, attention, ddim_repaint_step, q_sample, requested_backend
from metavoxel.kernels import dispatch

# The package re-exports the function `attention`, which shadows the subpackage of the same name.
attention_module = importlib.import_module("metavoxel.kernels.attention")


def _qkv():
    return [torch.randn(1, 2, 5, 16) for _ in range(3)]


def _calls():
    """One call of each op with the given backend."""
    x, a = [torch.zeros(2, 3)], torch.full((2,), 0.5)
    return {
        "attention": lambda backend: attention(*_qkv(), backend=backend),
        "q_sample": lambda backend: q_sample(x, a, backend=backend),
        "ddim_repaint_step": lambda backend: ddim_repaint_step(x, x, a, a, backend=backend),
    }


@pytest.fixture
def fresh_log(monkeypatch, caplog):
    monkeypatch.setattr(dispatch, "_announced", set())
    caplog.set_level(logging.INFO, logger="metavoxel.kernels")
    return caplog


@pytest.fixture
def no_triton_launch(monkeypatch):
    """Fail the test if the attention kernel is launched."""

    class Forbidden:
        @staticmethod
        def apply(*args):
            raise AssertionError("the Triton kernel ran")

    monkeypatch.setattr(attention_module, "FlashAttentionFunction", Forbidden)


def test_auto_on_cpu_runs_torch_and_logs_it_once(interpreter, fresh_log, no_triton_launch):
    q, k, v = _qkv()
    out = attention(q, k, v)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    attention(q, k, v)
    lines = [r.getMessage() for r in fresh_log.records if "attention" in r.getMessage()]
    assert len(lines) == 1 and "torch backend" in lines[0] and "CUDA" in lines[0], lines


@pytest.mark.parametrize("op", sorted(_calls()))
def test_auto_on_cpu_picks_torch_for_every_op(interpreter, fresh_log, op):
    _calls()[op](None)
    assert any(f"kernel {op}: using the torch backend" in r.getMessage() for r in fresh_log.records)


@pytest.mark.parametrize("op", sorted(_calls()))
def test_explicit_triton_on_cpu_without_interpreter_raises(interpreter, monkeypatch, op):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelUnavailable, match="CUDA tensors.*TRITON_INTERPRET=1"):
        _calls()[op]("triton")


@pytest.mark.parametrize("op", sorted(_calls()))
def test_environment_forces_triton(interpreter, monkeypatch, op):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("METAVOXEL_KERNELS", "triton")
    with pytest.raises(KernelUnavailable):
        _calls()[op](None)
    _calls()[op]("torch")  # the per-call argument wins over the environment


def test_bad_environment_value_raises_value_error(monkeypatch):
    monkeypatch.setenv("METAVOXEL_KERNELS", "cuda")
    with pytest.raises(ValueError, match="auto, triton, torch.*METAVOXEL_KERNELS"):
        attention(*_qkv())
    with pytest.raises(ValueError):
        requested_backend()


def test_bad_backend_argument_raises_value_error():
    with pytest.raises(ValueError, match="'fast'"):
        attention(*_qkv(), backend="fast")


def test_missing_triton_falls_back_or_raises(monkeypatch, fresh_log):
    monkeypatch.setattr(dispatch, "triton_missing", lambda: "triton is not importable (test)")
    q, k, v = _qkv()
    attention(q, k, v)  # auto: quiet fallback
    with pytest.raises(KernelUnavailable, match="not importable"):
        attention(q, k, v, backend="triton")


def test_unsupported_inputs_fall_back_in_auto_and_raise_when_explicit(interpreter, no_triton_launch):
    q, k, v = (torch.randn(1, 1, 4, 8, dtype=torch.float64) for _ in range(3))
    attention(q, k, v)
    with pytest.raises(KernelUnavailable, match="float64"):
        attention(q, k, v, backend="triton")
    wide = [torch.randn(1, 1, 4, 160) for _ in range(3)]
    attention(*wide)
    with pytest.raises(KernelUnavailable, match="<= 128"):
        attention(*wide, backend="triton")
    with pytest.raises(KernelUnavailable, match="dtypes differ"):
        attention(q.float(), k.half(), v.float(), backend="triton")


def test_kernels_compiled_before_the_interpreter_was_requested_are_refused():
    class Compiled:  # stands in for a JITFunction defined without TRITON_INTERPRET
        pass

    with pytest.raises(KernelUnavailable, match="before TRITON_INTERPRET=1"):
        dispatch.check_interpretable(Compiled(), torch.device("cpu"))
    dispatch.check_interpretable(Compiled(), torch.device("cuda"))  # compiled kernels are right for CUDA


def test_package_works_without_triton():
    """With triton unimportable, the package imports, auto runs torch, explicit triton says why it cannot."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["triton"] = None  # import triton now raises ImportError
import torch
from metavoxel.kernels import KernelUnavailable, attention, ddim_repaint_step, q_sample
q = torch.randn(1, 2, 5, 16, requires_grad=True)
attention(q, q, q).sum().backward()
x_t, eps = q_sample([torch.zeros(2, 3)], torch.full((2,), 0.5))
ddim_repaint_step(x_t, eps, torch.full((2,), 0.5), torch.full((2,), 0.7))
try:
    attention(q, q, q, backend="triton")
except KernelUnavailable as exc:
    assert "not importable" in str(exc), exc
else:
    raise SystemExit("explicit triton did not raise")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
