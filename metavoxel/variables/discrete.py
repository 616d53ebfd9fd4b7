"""The forward corruption, reverse step and loss shared by kinds diffused with D3PM's uniform transition."""

from __future__ import annotations

import torch

from metavoxel.processes import UniformDiscreteProcess
from metavoxel.variables.fast_path import DiscreteFastPath, overridden

__all__ = ["UniformDiscreteVariable"]


class UniformDiscreteVariable:
    """Implements the corruption half of the `Variable` protocol with a `UniformDiscreteProcess`.

    z is a (B,) long class index; the network predicts x0 logits (B, K). A kind sets ``self.process``
    and writes the encoder and head halves itself.
    """

    process: UniformDiscreteProcess

    def discrete_fast_path(self) -> DiscreteFastPath | None:
        """Opt into the fused categorical kernel unless a subclass overrides a step it replaces."""
        if overridden(self, UniformDiscreteVariable):
            return None
        return DiscreteFastPath(self.process)

    def prior(self, n: int, *, generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.process.prior(n, generator=generator, device=device)

    def corrupt(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None):
        return self.process.q_sample(z0, t, generator=generator), z0  # target: the clean class

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        return self.process.q_sample(z0, t, generator=generator)

    def undo(self, z_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None) -> torch.Tensor:
        return self.process.undo(z_s, s, t, generator=generator)

    def reverse_step(self, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.process.reverse_step(z_t, out, t, s, generator=generator)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.process.loss(out, target)

    def diffusion_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.bool().reshape(-1)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}
