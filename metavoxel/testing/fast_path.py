"""Conformance check for kinds that opt into the fused fast path: the fused kernels equal the kind's own methods.

A kind that returns a path from `gaussian_fast_path` (or `discrete_fast_path`) lets the engine replace its
``corrupt``, ``renoise`` and ``reverse_step`` with one kernel launch for all such variables. This check
runs both on random inputs and compares them: exactly for the Gaussian kernels (same noise draws), and
through the step's log-probabilities for the D3PM kernel (it draws its own Gumbel noise). It uses the
PyTorch reference always, and the Triton kernels too when Triton runs here (on CUDA, or on the CPU in
Triton's interpreter when ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from metavoxel import kernels
from metavoxel.diffusion.fused import GaussianGroup
from metavoxel.kernels.dispatch import device_problem
from metavoxel.variables.fast_path import FusedDiscrete, FusedGaussian

if TYPE_CHECKING:
    from metavoxel.testing.conformance import Case

__all__ = ["check_fast_path", "fast_path_backends"]


def fast_path_backends(device: torch.device | str = "cpu") -> list[str]:
    """The kernel backends that can run here: ``torch`` always, ``triton`` when it can run on ``device``."""
    probe = torch.zeros(1, device=device)
    return ["torch"] + ([] if device_problem([probe], explicit=True) else ["triton"])


def check_fast_path(case: Case) -> None:
    """A kind that opts into a fused path gets the same corruption, step and re-noising from the kernels."""
    var = case.var
    gaussian = var.gaussian_fast_path() if isinstance(var, FusedGaussian) else None
    discrete = var.discrete_fast_path() if isinstance(var, FusedDiscrete) else None
    for backend in fast_path_backends():
        if gaussian is not None:
            _check_gaussian(case, gaussian, backend)
        if discrete is not None:
            _check_discrete(case, discrete, backend)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_gaussian(case: Case, path, backend: str) -> None:
    from metavoxel.testing.conformance import B

    var, z0 = case.var, case.z0
    t, s = case.levels(seed=21)
    own_t, own_target = var.corrupt(z0, t, generator=_gen(22))
    eps = torch.randn(z0.shape, generator=_gen(22), dtype=z0.dtype)
    fused_t, fused_eps = kernels.q_sample([z0], path.process.abar_at(t, z0)[:, None], eps=[eps], backend=backend)
    torch.testing.assert_close(fused_t[0], own_t, rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"fused q_sample ({backend}) differs from corrupt: {m}")
    target = path.process.target(z0, fused_eps[0], t, path.prediction)  # what the loss compares the output with
    torch.testing.assert_close(target, own_target, rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"fused target ({backend}) differs from corrupt's: {m}")

    out = case.output(seed=23).to(z0.dtype)
    own = var.reverse_step(own_t, out, t, s, eta=0.0, generator=_gen(24))
    eps_hat = path.process.eps_from(own_t, out, t, path.prediction)
    eps_hat = eps_hat if path.x0_range is None else path.process.clip_eps(own_t, eps_hat, t, path.x0_range)
    a_t, a_s = path.process.abar_at(t, z0)[:, None], path.process.abar_at(s, z0)[:, None]
    mask = torch.zeros(B, dtype=torch.bool)
    mask[::2] = True  # every second record known: the kernel re-noises it to s, like renoise
    mask = mask.reshape(B, *([1] * (z0.dim() - 1))).expand_as(z0)
    noise = torch.randn(z0.shape, generator=_gen(25), dtype=z0.dtype)
    fused, _ = kernels.ddim_repaint_step([own_t], [eps_hat], a_t, a_s, eta=0.0, known=[z0], mask=[mask],
                                         z2=[noise], backend=backend)
    torch.testing.assert_close(fused[0][~mask], own[~mask], rtol=1e-4, atol=1e-4,
                               msg=lambda m: f"fused DDIM step ({backend}) differs from reverse_step: {m}")
    renoised = var.renoise(z0, s, generator=_gen(25))
    torch.testing.assert_close(fused[0][mask], renoised[mask], rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"fused RePaint overwrite ({backend}) differs from renoise: {m}")

    # the engine's group reads the output the way the kind does (eps or v) when it steps and sets targets
    group = GaussianGroup({"v": var}, backend, torch.device("cpu"))
    stepped = group.step({"v": own_t}, {"v": out}, t, s, {}, 0.0, _gen(26))["v"]
    torch.testing.assert_close(stepped, own, rtol=1e-4, atol=1e-4,
                               msg=lambda m: f"the engine's fused step ({backend}) differs from reverse_step: {m}")
    _, group_target = group.corrupt({"v": z0}, {"v": t}, _gen(22))
    _, own_target = var.corrupt(z0, t, generator=_gen(22))
    torch.testing.assert_close(group_target["v"], own_target, rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"the engine's fused target ({backend}) differs from corrupt's: {m}")


def _check_discrete(case: Case, path, backend: str) -> None:
    var, z0 = case.var, case.z0  # the kind's own reverse_step samples from ``own`` (see check_reverse_step)
    t, s = case.levels(seed=31)
    z_t = var.corrupt(z0, t, generator=_gen(32))[0]
    logits = case.output(seed=33)
    a_t = path.process.abar.to(t.device)[t].float()
    a_s = path.process.abar.to(s.device)[s].float()
    x_s, log_p = kernels.categorical_step(logits, z_t, a_t, a_s, seed=7, return_log_probs=True, backend=backend)
    own = path.process.reverse_log_probs(z_t, logits, t, s).float()
    torch.testing.assert_close(log_p.exp(), own.exp(), rtol=1e-4, atol=1e-5,
                               msg=lambda m: f"fused D3PM step ({backend}) differs from reverse_step's distribution: {m}")
    assert bool((own.exp()[torch.arange(len(x_s)), x_s] > 0).all()), "the fused step drew a class of probability 0"
