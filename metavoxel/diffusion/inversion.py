"""Deterministic DDIM inversion of image latents under clean conditions, and DDIM regeneration from it.

DDIM with eta = 0 (Song et al. 2021, eq. 12) is a deterministic map from z_T to z0: the reverse step from
level b to level a < b is

    z_a = sqrt(abar_a) x0_hat + sqrt(1 - abar_a) eps_hat,  x0_hat = (z_b - sqrt(1 - abar_b) eps_hat) / sqrt(abar_b),

with eps_hat = eps(z_b, b | c) the network's noise for the conditions c. Inverting it walks the grid the
other way, from z0 up to z_T: z_b = sqrt(abar_b / abar_a) (z_a - sqrt(1 - abar_a) eps_hat) + sqrt(1 - abar_b)
eps_hat. The exact inverse needs eps_hat at the unknown z_b; the usual DDIM inversion (Dhariwal & Nichol
2021, App. F; Mokady et al. 2023) reads it at the known z_a instead (at level b, the level the reverse step
reads). ``refine`` fixed-point iterations then read it again at the current estimate of z_b, the
fixed-point inversion of Pan et al. 2023 ("Effective real image editing with accelerated iterative
diffusion inversion") and Garibi et al. 2024 ("ReNoise"); each costs one more network call per step and
brings regenerate(invert(z0)) back toward z0 as far as the network is smooth (tests/diffusion/
test_inversion.py measures it on a network whose eps is exact).

Conditions are clean (`metavoxel.diffusion.conditioning`, ``clean``): the scalars are held at level 0 at
every call, in both directions, so the inverted noise is "the subject's own" given its values, and a
regeneration with some values changed keeps everything the conditions do not explain (the abduction of a
counterfactual, Pearl's abduction-action-prediction, as in diffusion counterfactuals: Sanchez & Tsaftaris
2022). The image variables walk the grid together (they share the U-Net's one level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from metavoxel.diffusion.conditioning import Conditions, call_network
from metavoxel.variables.fast_path import FusedGaussian, GaussianFastPath
from metavoxel.variables.protocol import Variable

__all__ = ["ddim_invert", "ddim_regenerate", "invertible"]


def invertible(var: Variable) -> GaussianFastPath | None:
    """The Gaussian process (and what its output is, eps or v) DDIM inversion runs ``var`` with, or None when
    its kind declares none (`metavoxel.variables.fast_path.FusedGaussian`)."""
    return var.gaussian_fast_path() if isinstance(var, FusedGaussian) else None


@torch.no_grad()
def ddim_invert(variables: Mapping[str, Variable], network: Callable, z0: Mapping[str, torch.Tensor],
                conditions: Conditions, grid: torch.Tensor, *, refine: int = 0, guidance: float = 0.0,
                prior: Mapping[str, torch.Tensor] | None = None,
                on_call: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """z_T of the images ``z0`` under ``conditions`` (clean, held at level 0), walking ``grid`` upwards.

    Args:
        variables: the model's variables.
        network: ``network(z, levels[, keep]) -> {name: output}`` in inference mode.
        z0: image name -> clean latent (B, *z) to invert; every image variable of the model.
        conditions: the held scalars of these B rows (`Conditions` in ``clean`` mode, images not held).
        grid: (K + 1,) levels 0 = t_0 < ... < t_K (`metavoxel.diffusion.grid.time_grid`).
        refine: fixed-point iterations per step (module docstring); 0 is plain DDIM inversion.
        guidance, prior: classifier-free guidance weight w and its marginal's noise for the held variables, as
            `ddim_regenerate` takes them: inverting the guided ODE that will regenerate the image, so that
            regenerating under the same conditions and guidance gives the image back.
        on_call: called after every network call.

    Returns:
        image name -> z at level t_K (B, *z), float32.

    Raises:
        ValueError: an image whose kind declares no Gaussian process (`invertible`).
    """
    paths = _paths(variables, z0)
    rows = conditions.rows
    device = next(iter(z0.values())).device
    z = {name: var.prior(rows, generator=None, device=device) for name, var in variables.items()}  # placeholders
    z.update({name: x.float() for name, x in z0.items()})
    z = conditions.hold(z)
    for i in range(len(grid) - 1):
        a = torch.full((rows,), int(grid[i]), device=device, dtype=torch.long)
        b = torch.full((rows,), int(grid[i + 1]), device=device, dtype=torch.long)
        estimate = dict(z)  # z_b's estimate: z_a first (plain DDIM inversion), then the fixed point's iterates
        for _ in range(1 + int(refine)):
            out = call_network(network, conditions, estimate, b, guidance=guidance, prior=prior)
            if on_call is not None:
                on_call()
            for name, path in paths.items():
                eps = path.process.eps_from(estimate[name], out[name].float(), b, path.prediction)
                estimate[name] = _up(path, z[name], eps, a, b)
        z = conditions.hold(estimate)
    return {name: z[name] for name in paths}


@torch.no_grad()
def ddim_regenerate(variables: Mapping[str, Variable], network: Callable, z_T: Mapping[str, torch.Tensor],
                    conditions: Conditions, grid: torch.Tensor, *, guidance: float = 0.0,
                    prior: Mapping[str, torch.Tensor] | None = None,
                    on_call: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """z0 of the images from ``z_T`` under ``conditions``: deterministic DDIM (eta = 0) down ``grid``.

    Each image takes its kind's own ``reverse_step`` with eta = 0, the step `metavoxel.diffusion.sampler`
    takes, so regenerating with the conditions an image was inverted under walks the inversion back.

    Args:
        variables, network, conditions, grid, on_call: as in `ddim_invert`.
        z_T: image name -> state at level ``grid[-1]`` (B, *z).
        guidance: classifier-free guidance weight w (`metavoxel.diffusion.conditioning.call_network`).
        prior: the guidance marginal's noise for the held variables, name -> (B, *z) (needed when w != 0).

    Returns:
        image name -> z0 (B, *z).
    """
    _paths(variables, z_T)
    rows = conditions.rows
    device = next(iter(z_T.values())).device
    z = {name: var.prior(rows, generator=None, device=device) for name, var in variables.items()}
    z.update({name: x.float() for name, x in z_T.items()})
    z = conditions.hold(z)
    for i in range(len(grid) - 1, 0, -1):
        t = torch.full((rows,), int(grid[i]), device=device, dtype=torch.long)
        s = torch.full((rows,), int(grid[i - 1]), device=device, dtype=torch.long)
        out = call_network(network, conditions, z, t, guidance=guidance, prior=prior)
        if on_call is not None:
            on_call()
        z = dict(z)
        for name in z_T:
            z[name] = variables[name].reverse_step(z[name], out[name].float(), t, s, eta=0.0, generator=None)
        z = conditions.hold(z)
    return {name: z[name] for name in z_T}


def _paths(variables: Mapping[str, Variable], images: Mapping[str, torch.Tensor]) -> dict[str, GaussianFastPath]:
    paths = {}
    for name in images:
        path = invertible(variables[name])
        if path is None:
            raise ValueError(f"{name!r} (kind {variables[name].kind}) declares no Gaussian process, so DDIM cannot "
                             "invert it")
        paths[name] = path
    return paths


def _up(path: GaussianFastPath, z_a: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z_b = sqrt(abar_b) x0_hat + sqrt(1 - abar_b) eps with x0_hat = (z_a - sqrt(1 - abar_a) eps) / sqrt(abar_a).

    x0_hat is not clamped to a declared ``x0_range``: at a = 0 it is z0 itself, and the inverse of a clamped
    reverse step is not unique.
    """
    process = path.process
    alpha_a, alpha_b = process.level(a, z_a), process.level(b, z_a)
    x0 = (z_a - (1 - alpha_a).sqrt() * eps) / alpha_a.sqrt()
    return alpha_b.sqrt() * x0 + (1 - alpha_b).sqrt() * eps
