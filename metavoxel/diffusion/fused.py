"""The fast path: the Gaussian variables that opt in stepped (or noised) together in one kernel launch.

A variable joins a group only by declaring the capability (`metavoxel.variables.fast_path`): the
built-in `GaussianVariable` and `UniformDiscreteVariable` do, and decline as soon as a subclass
overrides ``corrupt``, ``renoise`` or ``reverse_step``, so such a variable takes its own methods.
The Gaussian group hands its members to `metavoxel.kernels.ddim_repaint_step` together: one fused Triton
launch per step on CUDA, the PyTorch reference elsewhere. On CUDA the uniform-D3PM group is stepped and
overwritten in one more launch (`metavoxel.kernels.categorical_step`).

Noise: on CUDA the kernel draws it in-kernel (Philox, keyed from the sampling generator); elsewhere it
is drawn from the generator and passed explicitly, so the Triton interpreter and PyTorch paths give the
same samples. Training noises every member in one `metavoxel.kernels.q_sample` launch the same way.

This module knows variables, kernels and known values; it imports nothing else of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from metavoxel import kernels
from metavoxel.diffusion.known import Known
from metavoxel.variables.fast_path import FusedDiscrete, FusedGaussian
from metavoxel.variables.protocol import Variable

__all__ = ["CategoricalGroup", "GaussianGroup"]


def _backend(choice: str | None) -> str | None:
    return None if choice in (None, "auto") else choice  # auto defers to METAVOXEL_KERNELS


class GaussianGroup:
    """The variables that declare the fused Gaussian path, and the kernel backend they step with.

    Args:
        variables: every variable of the model; those whose `gaussian_fast_path` returns a path join.
        backend: ``auto`` | ``triton`` | ``torch`` (None: ``METAVOXEL_KERNELS``, else auto).
        device: where the states live; on CUDA the kernels draw their noise in-kernel.
    """

    def __init__(self, variables: Mapping[str, Variable], backend: str | None, device: torch.device):
        self.paths = {n: p for n, v in variables.items()
                      if isinstance(v, FusedGaussian) and (p := v.gaussian_fast_path()) is not None}
        self.backend = _backend(backend)
        self.in_kernel_noise = torch.device(device).type == "cuda"

    def __contains__(self, name: str) -> bool:
        return name in self.paths

    def step(self, z: dict[str, torch.Tensor], out: dict[str, torch.Tensor], t: torch.Tensor, s: torch.Tensor,
             known: dict[str, Known], eta: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """z_s of every Gaussian variable: DDIM from level t to s, then the known entries re-noised to s."""
        if not self.paths:
            return {}
        names = list(self.paths)
        x = [z[n] for n in names]
        eps = [self._eps(n, z[n], out[n], t) for n in names]
        a_t = torch.stack([p.process.abar_at(t, z[n]) for n, p in self.paths.items()], dim=1)  # (B, V)
        a_s = torch.stack([p.process.abar_at(s, z[n]) for n, p in self.paths.items()], dim=1)  # (B, V)
        known_z = [known[n].z0 if n in known else None for n in names]
        masks = [known[n].z_mask if n in known else None for n in names]
        any_known = any(m is not None for m in masks)
        z1 = z2 = seed = None
        if self.in_kernel_noise:
            seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        else:
            z1 = [_normal(xi, generator) for xi in x] if eta > 0 else None
            # variables with nothing known get a placeholder: the kernel never reads z2 where mask is 0
            z2 = [_normal(k, generator) if k is not None else xi for k, xi in zip(known_z, x)] if any_known else None
        x_s, _ = kernels.ddim_repaint_step(x, eps, a_t, a_s, eta=eta, known=known_z if any_known else None,
                                           mask=masks if any_known else None, z1=z1, z2=z2, seed=seed,
                                           backend=self.backend)
        return {n: xs.to(xi.dtype) for n, xs, xi in zip(names, x_s, x)}

    def corrupt(self, z0: Mapping[str, torch.Tensor], levels: Mapping[str, torch.Tensor],
                generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(z_t, target) of every member for training, noised in one `kernels.q_sample` launch.

        The target is the noise eps, or v for a member that predicts v (`GaussianProcess.target`).

        ``levels[name]`` (B,) is each member's own step (per-variable noise levels share one launch).
        """
        if not self.paths:
            return {}, {}
        names = list(self.paths)
        x0 = [z0[n] for n in names]
        abar = torch.stack([p.process.abar_at(levels[n], z0[n]) for n, p in self.paths.items()], dim=1)  # (B, V)
        eps = seed = None
        if self.in_kernel_noise:
            seed = int(torch.randint(0, 2**62, (), generator=generator, device=x0[0].device))
        else:
            eps = [_normal(x, generator) for x in x0]
        x_t, eps = kernels.q_sample(x0, abar, eps=eps, seed=seed, backend=self.backend)
        targets = [self.paths[n].process.target(clean, e, levels[n], self.paths[n].prediction)
                   for n, clean, e in zip(names, x0, eps)]
        return dict(zip(names, x_t)), dict(zip(names, targets))

    def _eps(self, name: str, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        path = self.paths[name]
        eps = path.process.eps_from(z_t, out.to(z_t.dtype), t, path.prediction)
        return eps if path.x0_range is None else path.process.clip_eps(z_t, eps, t, path.x0_range)


class CategoricalGroup:
    """The variables that declare the fused D3PM path, stepped in one `kernels.categorical_step` launch.

    The group is active on CUDA. Elsewhere it is empty and those variables take their own `reverse_step`,
    whose multinomial draws the CPU paths share exactly (the kernel draws its own noise in-kernel, so the
    two paths agree in distribution, not draw for draw).

    Args:
        variables: every variable of the model; those whose `discrete_fast_path` returns a path join.
        backend: ``auto`` | ``triton`` | ``torch`` (None: ``METAVOXEL_KERNELS``, else auto).
        device: where the states live.
        active: force the group on (True, e.g. the CUDA code path under Triton's interpreter) or off;
            None: on exactly when ``device`` is CUDA.
    """

    def __init__(self, variables: Mapping[str, Variable], backend: str | None, device: torch.device,
                 active: bool | None = None):
        self.backend = _backend(backend)
        active = torch.device(device).type == "cuda" if active is None else active
        self.paths = {n: p for n, v in variables.items()
                      if active and isinstance(v, FusedDiscrete) and (p := v.discrete_fast_path()) is not None}

    def __contains__(self, name: str) -> bool:
        return name in self.paths

    def step(self, z: dict[str, torch.Tensor], out: dict[str, torch.Tensor], t: torch.Tensor, s: torch.Tensor,
             known: dict[str, Known], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """z_s of every categorical variable: the k-step posterior sample, then known classes re-noised to s."""
        if not self.paths:
            return {}
        names = list(self.paths)
        a_t = torch.stack([p.process.abar.to(t.device)[t].float() for p in self.paths.values()], dim=1)  # (B, V)
        a_s = torch.stack([p.process.abar.to(s.device)[s].float() for p in self.paths.values()], dim=1)  # (B, V)
        masks = [known[n].z_mask if n in known else None for n in names]
        any_known = any(m is not None for m in masks)
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        x_s, _ = kernels.categorical_step([out[n] for n in names], [z[n] for n in names], a_t, a_s,
                                          known=[known[n].z0 if n in known else None for n in names] if any_known else None,
                                          mask=masks if any_known else None, seed=seed, backend=self.backend)
        return dict(zip(names, x_s))


def _normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
