"""Fused noising (interpreter) against `q_sample_reference`, row packing, autograd and the in-kernel RNG."""

from __future__ import annotations

import pytest
import torch

from metavoxel.kernels import KernelUnavailable, q_sample, q_sample_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(3, 4, 12, 14, 10), (3, 1), (3, 5)]  # a latent, a scalar, a small vector


def _variables(gen, dtype=torch.float32, shapes=SHAPES):
    return [torch.randn(s, generator=gen).to(dtype) for s in shapes]


def _abar(gen, batch, n_vars=None):
    shape = (batch,) if n_vars is None else (batch, n_vars)
    return torch.rand(shape, generator=gen) * 0.98 + 0.01


@pytest.mark.parametrize("per_variable", [False, True], ids=["shared_abar", "per_variable_abar"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_list_form_matches_reference(interpreter, gen, elementwise_tol, dtype, per_variable):
    x0 = _variables(gen, dtype)
    eps = _variables(gen, dtype)
    abar = _abar(gen, 3, len(x0) if per_variable else None)
    x_t, eps_out = q_sample(x0, abar, eps=eps, backend="triton")
    assert eps_out is eps
    atol, rtol = elementwise_tol[dtype]
    for i, (got, x, e) in enumerate(zip(x_t, x0, eps)):
        want = q_sample_reference(x, abar[:, i] if per_variable else abar, e)
        assert got.shape == x.shape and got.dtype == dtype, f"x_t[{i}]"
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m, i=i: f"x_t[{i}]: {m}")


def test_prepacked_rows_with_splits_equal_the_list_form(interpreter, gen):
    x0 = _variables(gen)
    eps = _variables(gen)
    abar = _abar(gen, 3, 3)
    rows = torch.cat([x.reshape(3, -1) for x in x0], dim=1)  # (B, F)
    eps_rows = torch.cat([e.reshape(3, -1) for e in eps], dim=1)
    splits = [x[0].numel() for x in x0]
    x_t, _ = q_sample(rows, abar, eps=eps_rows, splits=splits, backend="triton")
    listed, _ = q_sample(x0, abar, eps=eps, backend="triton")
    torch.testing.assert_close(x_t, torch.cat([x.reshape(3, -1) for x in listed], dim=1), atol=0, rtol=0)


def test_mixed_dtypes_come_back_in_their_own_dtype(interpreter, gen):
    x0 = [torch.randn(2, 3, 5, 6, generator=gen).bfloat16(), torch.randn(2, 1, generator=gen)]
    x_t, eps = q_sample(x0, _abar(gen, 2), seed=1, backend="triton")
    assert [t.dtype for t in x_t] == [torch.bfloat16, torch.float32]
    assert [t.shape for t in eps] == [t.shape for t in x0]


def test_drawn_noise_is_returned_and_is_the_noise_used(interpreter, gen):
    x0 = _variables(gen)
    abar = _abar(gen, 3)
    x_t, eps = q_sample(x0, abar, seed=11, offset=5, backend="triton")
    for i, (got, x, e) in enumerate(zip(x_t, x0, eps)):
        torch.testing.assert_close(got, q_sample_reference(x, abar, e), atol=1e-6, rtol=1e-6,
                                   msg=lambda m, i=i: f"x_t[{i}]: {m}")


def _noise(seed, offset=0, batch=2, width=24_000):
    """Drawn noise alone: x0 = 0 and abar = 0 give x_t = eps."""
    x0 = [torch.zeros(batch, width // 3), torch.zeros(batch, width - width // 3)]
    x_t, eps = q_sample(x0, torch.zeros(batch), seed=seed, offset=offset, backend="triton")
    torch.testing.assert_close(torch.cat(x_t, 1), torch.cat(eps, 1), atol=0, rtol=0)
    return torch.cat(eps, 1)  # (B, F)


def _corr(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))


def test_in_kernel_noise_is_standard_normal_and_seeded(interpreter):
    eps = _noise(seed=7)
    n = eps.numel()
    assert abs(eps.double().mean()) < 5 / n**0.5, "mean is not ~0"
    assert abs(eps.double().var() - 1) < 5 * (2 / n) ** 0.5, "variance is not ~1"
    assert abs((eps.abs() < 1).double().mean() - 0.6827) < 0.01, "not Gaussian-shaped"
    assert torch.equal(eps, _noise(seed=7)), "the same seed must give the same noise"
    bound = 5 / (n**0.5)
    assert abs(_corr(eps, _noise(seed=8))) < bound, "different seeds are correlated"
    assert abs(_corr(eps, _noise(seed=7, offset=eps.numel()))) < bound, "disjoint offsets are correlated"
    assert abs(_corr(eps[0], eps[1])) < 5 / eps.shape[1] ** 0.5, "rows repeat each other"


def test_gradients_flow_to_x0_and_eps(interpreter, gen):
    x0 = [t.requires_grad_() for t in _variables(gen)]
    eps = [t.requires_grad_() for t in _variables(gen)]
    abar = _abar(gen, 3, 3)
    x_t, _ = q_sample(x0, abar, eps=eps, backend="triton")
    grads = [torch.randn(t.shape, generator=gen) for t in x_t]
    got = torch.autograd.grad(x_t, x0 + eps, grads)
    want_out = [q_sample_reference(x, abar[:, i], e) for i, (x, e) in enumerate(zip(x0, eps))]
    want = torch.autograd.grad(want_out, x0 + eps, grads)
    names = [f"dx0[{i}]" for i in range(3)] + [f"deps[{i}]" for i in range(3)]
    for name, g, w in zip(names, got, want):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_torch_backend_matches_reference_and_is_seeded(gen):
    x0 = _variables(gen)
    eps = _variables(gen)
    abar = _abar(gen, 3)
    x_t, _ = q_sample(x0, abar, eps=eps, backend="torch")
    for got, x, e in zip(x_t, x0, eps):
        torch.testing.assert_close(got, q_sample_reference(x, abar, e), atol=0, rtol=0)
    _, first = q_sample(x0, abar, seed=3, backend="torch")
    _, again = q_sample(x0, abar, seed=3, backend="torch")
    _, other = q_sample(x0, abar, seed=4, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_bad_arguments_say_what_to_do(gen):
    x0 = _variables(gen)
    with pytest.raises(ValueError, match=r"\(3,\) or \(3, 3\)"):
        q_sample(x0, torch.rand(3, 2))
    with pytest.raises(ValueError, match="list of 3 tensors"):
        q_sample(x0, torch.rand(3), eps=x0[:2])
    with pytest.raises(ValueError, match="same batch size"):
        q_sample([torch.zeros(2, 3), torch.zeros(3, 3)], torch.rand(2))
    with pytest.raises(ValueError, match="splits"):
        q_sample(torch.zeros(2, 10), torch.rand(2, 2), splits=[4, 5])


def test_integer_inputs_cannot_run_in_triton(interpreter):
    with pytest.raises(KernelUnavailable, match="float32/float16/bfloat16"):
        q_sample(torch.zeros(2, 3, dtype=torch.int64), torch.rand(2), backend="triton")
