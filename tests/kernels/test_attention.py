"""Triton flash attention (interpreter) against the PyTorch reference: output and every gradient by name."""

from __future__ import annotations

import math

import pytest
import torch

from metavoxel.kernels import attention, attention_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (B, H, N, M, d): self-attention, cross-attention to a few tokens, one token (N a multiple of the row block),
# d not a power of two (M a multiple of the key block), d = 128. Interpreter blocks: 32 query rows, 16 keys.
SHAPES = [
    (2, 2, 45, 45, 32),
    (1, 3, 37, 5, 64),
    (2, 1, 64, 1, 32),
    (1, 2, 33, 32, 24),
    (1, 1, 20, 18, 128),
]


def _inputs(shape, dtype, gen, requires_grad=True):
    b, h, n, m, d = shape
    q = torch.randn(b, h, n, d, generator=gen).to(dtype)
    k = torch.randn(b, h, m, d, generator=gen).to(dtype)
    v = torch.randn(b, h, m, d, generator=gen).to(dtype)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)]


def _reference(q, k, v, grad, scale=None):
    """Output and gradients of the reference, evaluated on float64 copies of the same inputs."""
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = attention_reference(*leaves, scale=scale)
    dq, dk, dv = torch.autograd.grad(out, leaves, grad.double())
    return {"out": out, "dq": dq, "dk": dk, "dv": dv}


def _assert_match(got: dict, want: dict, tol: tuple[float, float], dtype: torch.dtype) -> None:
    atol, rtol = tol
    for name, value in got.items():
        assert value.dtype == dtype, f"{name} has dtype {value.dtype}, expected {dtype}"
        torch.testing.assert_close(value.double(), want[name], atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_match_reference(interpreter, gen, attention_tol, shape, dtype):
    q, k, v = _inputs(shape, dtype, gen)
    out = attention(q, k, v, backend="triton")
    grad = torch.randn(out.shape, generator=gen).to(dtype)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    _assert_match({"out": out, "dq": dq, "dk": dk, "dv": dv}, _reference(q, k, v, grad), attention_tol[dtype], dtype)


def test_strided_inputs_custom_scale_and_no_query_grad(interpreter, gen):
    """Views from a (B, N, H, d) projection, an explicit scale, and gradients for k, v only."""
    b, n, m, h, d = 2, 19, 23, 3, 32
    q = torch.randn(b, n, h, d, generator=gen).permute(0, 2, 1, 3)  # (B, H, N, d), not contiguous
    kv = torch.randn(b, m, 2, h, d, generator=gen).requires_grad_()
    k, v = kv.unbind(2)
    k, v = k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)  # (B, H, M, d) views
    out = attention(q, k, v, scale=0.3, backend="triton")
    grad = torch.randn(out.shape, generator=gen)
    (dkv,) = torch.autograd.grad(out, (kv,), grad)
    want = _reference(q, k, v, grad, scale=0.3)
    torch.testing.assert_close(out.double(), want["out"], atol=2e-5, rtol=2e-5, msg=lambda m: f"out: {m}")
    dk, dv = dkv.unbind(2)
    for name, value in {"dk": dk, "dv": dv}.items():
        torch.testing.assert_close(value.permute(0, 2, 1, 3).double(), want[name], atol=2e-5, rtol=2e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("split", [2, 3])
def test_split_query_loop_of_key_gradients(interpreter, gen, split):
    """Cross-attention's dK/dV backward split over query blocks sums to the unsplit result."""
    from metavoxel.kernels.attention.backward import attention_backward
    from metavoxel.kernels.attention.blocks import Blocks
    from metavoxel.kernels.attention.forward import attention_forward

    q, k, v = _inputs((2, 2, 70, 3, 32), torch.float32, gen, requires_grad=False)
    scale = 1 / math.sqrt(32)
    out, lse = attention_forward(q, k, v, scale)
    grad = torch.randn(out.shape, generator=gen)
    dq, dk, dv = attention_backward(grad, q, k, v, out, lse, scale, blocks=Blocks(16, 16, 32, split=split))
    want = _reference(q, k, v, grad)
    for name, value in {"dq": dq, "dk": dk, "dv": dv}.items():
        torch.testing.assert_close(value.double(), want[name], atol=2e-5, rtol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_logsumexp_is_stored_in_log2_units(interpreter, gen):
    from metavoxel.kernels.attention.forward import attention_forward

    q, k, v = _inputs((1, 2, 21, 13, 32), torch.float32, gen, requires_grad=False)
    _, lse = attention_forward(q, k, v, 0.25)
    want = torch.logsumexp(torch.einsum("bhnd,bhmd->bhnm", q, k) * 0.25, dim=-1) / math.log(2)
    torch.testing.assert_close(lse, want, atol=1e-5, rtol=1e-5)


def test_large_logits_stay_finite(interpreter, gen):
    q, k, v = _inputs((1, 1, 17, 40, 32), torch.float16, gen)
    q = (q.detach() * 30).requires_grad_()
    out = attention(q, k, v, backend="triton")
    out.float().sum().backward()
    for name, value in {"out": out, "dq": q.grad, "dk": k.grad, "dv": v.grad}.items():
        assert torch.isfinite(value).all(), f"{name} has non-finite values"


def test_torch_backend_matches_reference_with_gradients(gen):
    q, k, v = _inputs((2, 2, 11, 7, 16), torch.float32, gen)
    out = attention(q, k, v, backend="torch")
    grad = torch.randn(out.shape, generator=gen)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    _assert_match({"out": out, "dq": dq, "dk": dk, "dv": dv}, _reference(q, k, v, grad), (2e-5, 2e-5), torch.float32)


def test_shape_errors_say_what_was_expected():
    q = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"q \(B, H, N, d\)"):
        attention(q, q, q)
    with pytest.raises(ValueError, match="disagree"):
        attention(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
