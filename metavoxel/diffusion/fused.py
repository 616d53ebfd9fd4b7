"""The fast path: every Gaussian variable stepped (or noised) together in one kernel launch.

All variables built on `metavoxel.GaussianVariable` (images, latents, continuous scalars, and any
plugin kind that composes it) share the DDIM update and the RePaint overwrite, so the sampler hands
them to `metavoxel.kernels.ddim_repaint_step` together: one fused Triton launch per step on CUDA, the
PyTorch reference elsewhere. On CUDA every `metavoxel.UniformDiscreteVariable` is stepped and
overwritten in one more launch (`metavoxel.kernels.categorical_step`), so a step of the whole record is
two launches. Other kinds take their own `reverse_step`.

Noise: on CUDA the kernel draws it in-kernel (Philox, keyed from the sampling generator); elsewhere it
is drawn from the generator and passed explicitly, so the Triton interpreter and PyTorch paths give the
same samples. Training noises every Gaussian variable in one `metavoxel.kernels.q_sample` launch the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from metavoxel import kernels
from metavoxel.variables.discrete import UniformDiscreteVariable
from metavoxel.variables.gaussian import GaussianVariable

if TYPE_CHECKING:
    from metavoxel.diffusion.joint import JointModel
    from metavoxel.diffusion.sampler import Known

__all__ = ["CategoricalGroup", "GaussianGroup"]


class GaussianGroup:
    """The Gaussian variables of a model and the kernel backend they step with."""

    def __init__(self, model: JointModel):
        self.variables = {n: v for n, v in model.variables.items() if isinstance(v, GaussianVariable)}
        chosen = model.spec.network.kernels
        self.backend = None if chosen == "auto" else chosen  # auto defers to METAVOXEL_KERNELS
        self.in_kernel_noise = model.device.type == "cuda"

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def step(self, z: dict[str, torch.Tensor], out: dict[str, torch.Tensor], t: torch.Tensor, s: torch.Tensor,
             known: dict[str, Known], eta: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """z_s of every Gaussian variable: DDIM from level t to s, then the known entries re-noised to s."""
        if not self.variables:
            return {}
        names = list(self.variables)
        x = [z[n] for n in names]
        eps = [self._eps(n, z[n], out[n], t) for n in names]
        a_t = torch.stack([v.process.abar_at(t, z[n]) for n, v in self.variables.items()], dim=1)  # (B, V)
        a_s = torch.stack([v.process.abar_at(s, z[n]) for n, v in self.variables.items()], dim=1)  # (B, V)
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

    def corrupt(self, z0: dict[str, torch.Tensor], t: torch.Tensor,
                generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(z_t, eps) of every Gaussian variable for training, noised in one `kernels.q_sample` launch."""
        if not self.variables:
            return {}, {}
        names = list(self.variables)
        x0 = [z0[n] for n in names]
        abar = torch.stack([v.process.abar_at(t, z0[n]) for n, v in self.variables.items()], dim=1)  # (B, V)
        eps = seed = None
        if self.in_kernel_noise:
            seed = int(torch.randint(0, 2**62, (), generator=generator, device=t.device))
        else:
            eps = [_normal(x, generator) for x in x0]
        x_t, eps = kernels.q_sample(x0, abar, eps=eps, seed=seed, backend=self.backend)
        return dict(zip(names, x_t)), dict(zip(names, eps))

    def _eps(self, name: str, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        var = self.variables[name]
        eps = out.to(z_t.dtype)
        return eps if var.x0_range is None else var.process.clip_eps(z_t, eps, t, var.x0_range)


class CategoricalGroup:
    """The uniform-D3PM variables of a model, stepped in one `kernels.categorical_step` launch on CUDA.

    Off CUDA the group is empty: those variables take their own `reverse_step`, whose multinomial draws
    the CPU paths share exactly.
    """

    def __init__(self, model: JointModel):
        active = model.device.type == "cuda"
        self.variables = {n: v for n, v in model.variables.items()
                          if active and isinstance(v, UniformDiscreteVariable)}
        chosen = model.spec.network.kernels
        self.backend = None if chosen == "auto" else chosen

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def step(self, z: dict[str, torch.Tensor], out: dict[str, torch.Tensor], t: torch.Tensor, s: torch.Tensor,
             known: dict[str, Known], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """z_s of every categorical variable: the k-step posterior sample, then known classes re-noised to s."""
        if not self.variables:
            return {}
        names = list(self.variables)
        a_t = torch.stack([v.process.abar.to(t.device)[t].float() for v in self.variables.values()], dim=1)  # (B, V)
        a_s = torch.stack([v.process.abar.to(s.device)[s].float() for v in self.variables.values()], dim=1)  # (B, V)
        masks = [known[n].z_mask if n in known else None for n in names]
        any_known = any(m is not None for m in masks)
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        x_s, _ = kernels.categorical_step([out[n] for n in names], [z[n] for n in names], a_t, a_s,
                                          known=[known[n].z0 if n in known else None for n in names] if any_known else None,
                                          mask=masks if any_known else None, seed=seed, backend=self.backend)
        return dict(zip(names, x_s))


def _normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
