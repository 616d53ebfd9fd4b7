"""Fused DDIM + RePaint step (interpreter) against `ddim_repaint_step_reference`, and its in-kernel RNG."""

from __future__ import annotations

import pytest
import torch

from metavoxel.kernels import KernelUnavailable, ddim_repaint_step, ddim_repaint_step_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(3, 4, 12, 14, 10), (3, 1), (3, 5)]


def _like(gen, dtype=torch.float32, shapes=SHAPES):
    return [torch.randn(s, generator=gen).to(dtype) for s in shapes]


def _levels(gen, batch):
    a_t = torch.rand(batch, generator=gen) * 0.6 + 0.05
    a_s = torch.minimum(a_t + 0.3, torch.ones(batch))
    a_s[0] = 1.0  # the final step
    return a_t, a_s


def _case(gen, dtype):
    """Three variables: a latent known inside a soft spatial mask, a scalar known for some records, one unknown."""
    x_t, eps, known, z1, z2 = (_like(gen, dtype) for _ in range(5))
    spatial = torch.rand(1, 1, 12, 14, 10, generator=gen)
    spatial = torch.where(spatial < 0.4, torch.zeros(()), torch.where(spatial > 0.8, torch.ones(()), spatial))
    known[0] = torch.where(spatial.expand_as(known[0]) > 0, known[0], torch.full((), float("nan"), dtype=dtype))
    mask = [spatial, torch.tensor([[True], [False], [True]]), None]
    known[2] = None
    return x_t, eps, known, mask, z1, z2


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_list_form_matches_reference(interpreter, gen, elementwise_tol, dtype, eta):
    x_t, eps, known, mask, z1, z2 = _case(gen, dtype)
    a_t, a_s = _levels(gen, 3)
    x_s, x0 = ddim_repaint_step(x_t, eps, a_t, a_s, eta=eta, known=known, mask=mask, z1=z1, z2=z2,
                                return_x0=True, backend="triton")
    atol, rtol = elementwise_tol[dtype]
    for i in range(3):
        want_s, want_0 = ddim_repaint_step_reference(x_t[i], eps[i], a_t, a_s, eta=eta, known=known[i],
                                                     mask=mask[i], z1=z1[i], z2=z2[i])
        for name, got, want in ((f"x_s[{i}]", x_s[i], want_s), (f"x0_hat[{i}]", x0[i], want_0)):
            assert got.shape == want.shape and got.dtype == dtype, name
            assert torch.isfinite(got).all(), f"{name}: NaN known values leaked where the mask is 0"
            torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")


def test_prepacked_rows_with_per_variable_levels(interpreter, gen):
    sizes = [24, 1, 5]
    x_t, eps, known, z2 = (torch.randn(4, 30, generator=gen) for _ in range(4))
    mask = (torch.rand(1, 30, generator=gen) > 0.5).float()  # one mask for the whole batch
    a_t = torch.rand(4, 3, generator=gen) * 0.5 + 0.1
    a_s = a_t + 0.3
    x_s, x0 = ddim_repaint_step(x_t, eps, a_t, a_s, known=known, mask=mask, z2=z2, splits=sizes, backend="triton")
    assert x0 is None
    parts = zip(*(t.split(sizes, dim=1) for t in (x_t, eps, known, mask.expand(4, -1), z2)))
    want = [ddim_repaint_step_reference(x, e, a_t[:, i], a_s[:, i], known=k, mask=m, z2=z)[0]
            for i, (x, e, k, m, z) in enumerate(parts)]
    torch.testing.assert_close(x_s, torch.cat(want, dim=1), atol=1e-6, rtol=1e-6)


def test_without_mask_is_plain_ddim(interpreter, gen):
    x_t, eps = _like(gen), _like(gen)
    a_t, a_s = _levels(gen, 3)
    x_s, _ = ddim_repaint_step(x_t, eps, a_t, a_s, backend="triton")
    for i, got in enumerate(x_s):
        want, _ = ddim_repaint_step_reference(x_t[i], eps[i], a_t, a_s)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6, msg=lambda m, i=i: f"x_s[{i}]: {m}")


def _z1(seed, batch=2, width=16_000):
    """eta = 1, x_t = eps_hat = 0: x_s = sigma * z1."""
    zeros = torch.zeros(batch, width)
    a_t, a_s = torch.full((batch,), 0.3), torch.full((batch,), 0.6)
    x_s, _ = ddim_repaint_step(zeros, zeros, a_t, a_s, eta=1.0, seed=seed, backend="triton")
    sigma = ((1 - 0.6) / (1 - 0.3)) ** 0.5 * (1 - 0.3 / 0.6) ** 0.5
    return x_s / sigma


def _z2(seed, batch=2, width=16_000):
    """Everything known and zero: x_s = sqrt(1 - a_s) * z2."""
    zeros = torch.zeros(batch, width)
    a_t, a_s = torch.full((batch,), 0.3), torch.full((batch,), 0.6)
    x_s, _ = ddim_repaint_step(zeros, zeros, a_t, a_s, known=zeros, mask=torch.ones(1, width), seed=seed,
                               backend="triton")
    return x_s / (1 - 0.6) ** 0.5


def _corr(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))


@pytest.mark.parametrize("draw", [_z1, _z2], ids=["z1", "z2"])
def test_in_kernel_noise_is_standard_normal_and_seeded(interpreter, draw):
    z = draw(seed=5)
    n = z.numel()
    assert abs(z.double().mean()) < 5 / n**0.5, "mean is not ~0"
    assert abs(z.double().var() - 1) < 5 * (2 / n) ** 0.5, "variance is not ~1"
    assert torch.equal(z, draw(seed=5)), "the same seed must give the same noise"
    assert abs(_corr(z, draw(seed=6))) < 5 / n**0.5, "different seeds are correlated"


def test_z1_and_z2_are_uncorrelated(interpreter):
    z1, z2 = _z1(seed=9), _z2(seed=9)
    assert abs(_corr(z1, z2)) < 5 / z1.numel() ** 0.5


def test_torch_backend_matches_reference(gen):
    x_t, eps, known, mask, z1, z2 = _case(gen, torch.float32)
    a_t, a_s = _levels(gen, 3)
    x_s, x0 = ddim_repaint_step(x_t, eps, a_t, a_s, eta=0.5, known=known, mask=mask, z1=z1, z2=z2,
                                return_x0=True, backend="torch")
    for i in range(3):
        want_s, want_0 = ddim_repaint_step_reference(x_t[i], eps[i], a_t, a_s, eta=0.5, known=known[i],
                                                     mask=mask[i], z1=z1[i], z2=z2[i])
        torch.testing.assert_close(x_s[i], want_s, atol=0, rtol=0)
        torch.testing.assert_close(x0[i], want_0, atol=0, rtol=0)
    drawn, _ = ddim_repaint_step(x_t, eps, a_t, a_s, eta=0.5, known=known, mask=mask, seed=1, backend="torch")
    again, _ = ddim_repaint_step(x_t, eps, a_t, a_s, eta=0.5, known=known, mask=mask, seed=1, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(drawn, again))


def test_mask_without_known_is_rejected(gen):
    x_t, eps = _like(gen), _like(gen)
    a_t, a_s = _levels(gen, 3)
    with pytest.raises(ValueError, match="known"):
        ddim_repaint_step(x_t, eps, a_t, a_s, mask=[None, torch.ones(3, 1), None])


def test_inputs_requiring_grad_cannot_run_in_triton(interpreter, gen):
    x_t = [t.requires_grad_() for t in _like(gen)]
    a_t, a_s = _levels(gen, 3)
    with pytest.raises(KernelUnavailable, match="no backward"):
        ddim_repaint_step(x_t, _like(gen), a_t, a_s, backend="triton")
    with torch.no_grad():
        ddim_repaint_step(x_t, _like(gen), a_t, a_s, backend="triton")
