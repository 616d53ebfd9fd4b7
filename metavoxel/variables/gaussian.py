"""The forward corruption, reverse step and loss shared by every Gaussian kind (eps- or v-parameterised)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from metavoxel.processes import GaussianProcess
from metavoxel.variables.fast_path import GaussianFastPath, overridden

__all__ = ["GaussianVariable", "Prediction", "prediction_field"]

#: What a Gaussian kind's network output is (`metavoxel.processes.gaussian.PREDICTIONS`), as a spec type.
Prediction = Literal["eps", "v"]


def prediction_field(default: Prediction = "eps") -> Any:
    """The ``prediction`` field of a Gaussian kind's spec: ``prediction: mv.Prediction = mv.prediction_field()``.

    The kind's ``from_spec`` sets ``variable.prediction = spec.prediction``; `GaussianVariable` does the rest.
    ``default`` is what a spec that names no prediction gets (``image_latent``: v; the others: the paper's eps).
    """
    return Field(default, description=(
        "What the network outputs for this variable: eps, the noise (Ho et al. 2020; the paper's), or v, the "
        "velocity sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022), whose x0 estimate stays as accurate "
        "as the output near t = T, where eps's is divided by sqrt(abar_t); docs/conditioning.md says what each "
        "measured."))


class GaussianVariable:
    """Implements the corruption half of the `Variable` protocol with a `GaussianProcess`.

    A kind sets ``self.process`` and ``self.z_shape`` (the per-record shape of z) and writes the
    encoder and head halves itself. ``out`` has the shape of z: the network predicts the noise, or the velocity
    v where the kind sets ``prediction = "v"`` (`metavoxel.processes.gaussian.PREDICTIONS`): training then
    compares ``out`` with v, and every reverse step reads the noise it implies.
    """

    process: GaussianProcess
    z_shape: tuple[int, ...]
    x0_range: tuple[float, float] | None = None  # where z0 is known to lie: reverse steps clip x0_hat to it
    prediction: str = "eps"  # what ``out`` is: "eps" (the noise) or "v" (the velocity)

    def gaussian_fast_path(self) -> GaussianFastPath | None:
        """Opt into the fused Gaussian kernels unless a subclass overrides a step they replace."""
        if overridden(self, GaussianVariable):
            return None
        return GaussianFastPath(self.process, self.x0_range, self.prediction)

    def prior(self, n: int, *, generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.process.prior((n, *self.z_shape), generator=generator, device=device)

    def corrupt(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None):
        z_t, eps = self.process.q_sample(z0, t, generator=generator)
        return z_t, self.process.target(z0, eps, t, self.prediction)  # (z_t, the loss's target)

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        return self.process.q_sample(z0, t, generator=generator)[0]

    def undo(self, z_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None) -> torch.Tensor:
        return self.process.undo(z_s, s, t, generator=generator)

    def reverse_step(self, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        eps_hat = self.process.eps_from(z_t, out.to(z_t.dtype), t, self.prediction)
        return self.process.ddim_step(z_t, eps_hat, t, s, eta=eta, generator=generator, clip=self.x0_range)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.process.loss(out, target)

    def loss_map(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`mv.HasLossMap`: the loss per location of z's grid, (B, *z_shape[1:]); a kind overriding `loss` overrides
        this too (the conformance suite checks that its mean over the locations is `loss`)."""
        return self.process.loss_map(out, target)

    def diffusion_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.bool()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}
