"""The process piece of the engine: how noise comes (training) and goes (sampling) for every variable.

`JointDiffusion` is built from plain values — the variables, the schedule length T, the kernel backend
and the device — and takes the network as an argument wherever one is needed, the habit of
improved-diffusion's ``GaussianDiffusion`` and MONAI's inferers. It keeps corruption, the joint loss and
the sampling defaults; the requests that use it are functions over (process, network, options):
`metavoxel.diffusion.sampling.sample`, `metavoxel.diffusion.point.predict_point` and the likelihood
scores of `metavoxel.diffusion.likelihood`. Each variable corrupts, steps and re-noises itself (its kind's
methods); variables that declare the fused fast path are handled together by `metavoxel.diffusion.fused`.
Time follows `metavoxel.processes.schedules` (integer steps 0..T).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.mixture import LevelMixture, draw_levels, keep_mask
from metavoxel.diffusion.sampler import Network
from metavoxel.errors import InputError
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["Corrupted", "JointDiffusion"]


@dataclass
class Corrupted:
    """Records at their training levels.

    Attributes:
        z_t: name -> state (B, *z).
        targets: name -> what the kind's loss compares the output with.
        t: (B,) the image grid's step (the paper's one shared t when ``levels`` is empty).
        present: name -> (B,) bool, the value was observed.
        levels: name -> (B,) each variable's own step; empty = every variable at ``t``.
        keep: image variable -> (B, 2C, *grid) keep-mask channels [mask, mask * z0]; empty = none.
    """

    z_t: dict[str, torch.Tensor]
    targets: dict[str, Any]
    t: torch.Tensor
    present: dict[str, torch.Tensor]
    levels: dict[str, torch.Tensor] = field(default_factory=dict)
    keep: dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, index: torch.Tensor | slice) -> Corrupted:
        """The same records restricted to ``index`` (e.g. one rank's share of a global batch)."""
        take = lambda x: x[index] if isinstance(x, torch.Tensor) else x  # noqa: E731
        part = lambda d: {k: take(v) for k, v in d.items()}  # noqa: E731
        return Corrupted(part(self.z_t), part(self.targets), take(self.t), part(self.present), part(self.levels),
                         part(self.keep))

    def level(self, name: str) -> torch.Tensor:
        """(B,) the step of variable ``name``."""
        return self.levels.get(name, self.t)


class JointDiffusion:
    """Corruption and the joint training loss over a set of variables, and the spec's sampling defaults.

    Args:
        variables: name -> built `Variable`, in the model's order.
        timesteps: T, the number of diffusion steps.
        kernels: backend of the fused noising/stepping kernels: ``auto`` | ``triton`` | ``torch``.
        device: where states are created.
        loss_weights: name -> weight of its term in the total loss (default 1 each).
        sampling_steps, eta, seed: sampling defaults (reverse steps, DDIM eta, RNG seed).
        grid: the default spacing of the sampling grid, ``uniform`` or ``quadratic``
            (`metavoxel.diffusion.grid.time_grid`).
        mixture: how training draws per-variable levels (default: the paper's one shared t).
        conditioning: the default sampling mode, ``repaint`` or ``clean``.
    """

    def __init__(self, variables: Mapping[str, Variable], timesteps: int, *, kernels: str = "auto",
                 device: torch.device | str = "cpu", loss_weights: Mapping[str, float] | None = None,
                 sampling_steps: int = 50, eta: float = 1.0, seed: int = 0, mixture: LevelMixture | None = None,
                 conditioning: str = "repaint", grid: str = "uniform"):
        self.variables = dict(variables)
        self.timesteps = int(timesteps)
        self.kernels = kernels
        self.device = torch.device(device)
        self.loss_weights = {n: 1.0 for n in self.variables} | dict(loss_weights or {})
        self.sampling_steps, self.eta, self.seed = int(sampling_steps), float(eta), int(seed)
        self.mixture = LevelMixture() if mixture is None else mixture
        self.conditioning, self.grid = conditioning, grid
        spatial = [n for n, v in self.variables.items() if isinstance(v.head, SpatialHead)]
        self.groups = ([spatial] if spatial else []) + [[n] for n in self.variables if n not in spatial]

    def gaussian_group(self) -> GaussianGroup:
        return GaussianGroup(self.variables, self.kernels, self.device)

    def categorical_group(self) -> CategoricalGroup:
        return CategoricalGroup(self.variables, self.kernels, self.device)

    # -- training -------------------------------------------------------------------------------
    def encode_batch(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Raw values of B records -> (z0, present) per variable. A variable absent from ``batch`` is missing."""
        unknown = sorted(set(batch) - set(self.variables))
        if unknown:
            raise InputError(f"unknown variable(s) {', '.join(unknown)}; this model has {', '.join(self.variables)}")
        device, z0, present, sizes = self.device, {}, {}, {}
        for name, var in self.variables.items():
            if name in batch:
                values, present[name] = var.values(batch[name], device)
                z0[name] = var.encode(values)
                sizes[name] = len(present[name])
        if not sizes or len(set(sizes.values())) != 1:
            raise InputError(f"every variable in a batch needs the same number of records, got {sizes or 'none'}")
        n = next(iter(sizes.values()))
        for name, var in self.variables.items():
            if name not in batch:  # missing for every record: any placeholder, masked from the loss
                z0[name] = var.prior(n, generator=None, device=device)
                present[name] = torch.zeros(n, dtype=torch.bool, device=device)
        return z0, present

    def corrupt(self, z0: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], *,
                t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Corrupted:
        """The forward half of the joint loss: levels per record, each variable corrupted by its kind.

        With the paper's recipe (or an explicit ``t``) every variable shares one t ~ U[1, T]; otherwise
        the levels come from the spec's mixture (`metavoxel.diffusion.mixture.draw_levels`) and the noised
        image of a record gets a random keep-mask with probability ``keep_masks``. A missing variable is
        replaced by fresh prior noise (the network sees noise where it knows nothing); outside the paper's
        recipe it is also told so, at level T — except a missing image while another image of the record is
        present: the images share the U-Net's one level, so it keeps the group's level (prior noise at that
        level, the paper's way of showing a missing value; see `shown`).
        """
        n = len(next(iter(present.values())))
        device = next(iter(present.values())).device
        paper, drawn = self.mixture.is_paper, t is None
        if t is None and not paper:
            _, levels = draw_levels(self.groups, n, self.timesteps, self.mixture, generator, device)
            t = levels[self.groups[0][0]]
        else:
            if t is None:
                t = torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=device)
            levels = {name: t for name in self.variables}
        if not paper:
            full = torch.full_like(t, self.timesteps)
            shown = self.shown(present)
            levels = {name: torch.where(shown[name], level, full) for name, level in levels.items()}
        gaussian = GaussianGroup(self.variables, self.kernels, device)
        noisy, targets = gaussian.corrupt(z0, levels, generator)  # every fused Gaussian variable in one launch
        for name, var in self.variables.items():
            if name not in gaussian:
                noisy[name], targets[name] = var.corrupt(z0[name], levels[name], generator=generator)
        z_t = {}
        for name, var in self.variables.items():
            prior = var.prior(n, generator=generator, device=device)
            z_t[name] = torch.where(_expand(present[name], noisy[name]), noisy[name], prior)
        if paper:
            return Corrupted(z_t, targets, t, dict(present))
        keep = self._keep(z0, present, levels, generator) if drawn else {}  # an explicit t: no keep-masks
        return Corrupted(z_t, targets, t, dict(present), levels, keep)

    def shown(self, present: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> (B,) bool: the variable keeps its drawn level; False sends it to T (missing: known nothing).

        A present variable keeps its level; so does a missing image while another image of the record is
        present (the images share one level: a different one could not be given). Every image missing: T.
        """
        shown = dict(present)
        spatial = self.groups[0] if self.groups and len(self.groups[0]) > 1 else []
        if spatial:
            group = torch.stack([present[n] for n in spatial]).any(dim=0)  # (B,) some image present
            shown.update({n: group for n in spatial})
        return shown

    def _keep(self, z0, present, levels, generator) -> dict[str, torch.Tensor]:
        """Random keep-mask channels [mask, mask * z0] (B, 2C, *grid) for the noised, present images."""
        if self.mixture.keep_masks <= 0:
            return {}
        keep = {}
        for name, var in self.variables.items():
            if not isinstance(var.head, SpatialHead):
                continue
            x0 = z0[name]
            n = x0.shape[0]
            chosen = (torch.rand(n, generator=generator, device=x0.device) < self.mixture.keep_masks)
            chosen &= present[name] & (levels[name] > 0)
            m = keep_mask(n, x0.shape[2:], generator, x0.device) * _expand(chosen, x0).to(x0.dtype)  # (B, 1, *grid)
            m = m.expand_as(x0)  # (B, C, *grid)
            keep[name] = torch.cat([m, m * x0], dim=1)  # (B, 2C, *grid)
        return keep

    def loss(self, network: Network, batch: Corrupted) -> dict[str, torch.Tensor]:
        """The joint loss of corrupted records: per-record terms ``{"loss": (B,), "loss/<name>": (B,)}``.

        A missing variable contributes no loss, nor does one given clean (level 0: nothing to denoise); the
        total weights each term by its ``loss_weight``.
        """
        t = batch.levels if batch.levels else batch.t
        out = network(batch.z_t, t, batch.keep) if batch.keep else network(batch.z_t, t)
        n = len(batch.t)
        terms = {}
        total = torch.zeros(n, device=batch.t.device)
        for name, var in self.variables.items():
            counted = batch.present[name] & (batch.level(name) > 0) if batch.levels else batch.present[name]
            term = var.loss(out[name], batch.targets[name]) * counted.float()
            terms[f"loss/{name}"] = term
            total = total + self.loss_weights[name] * term
        return {"loss": total, **terms}

    def training_losses(self, network: Network, batch: Mapping[str, Any], *, t: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for raw values of B records: `encode_batch`, `corrupt`, `loss`."""
        z0, present = self.encode_batch(batch)
        return self.loss(network, self.corrupt(z0, present, t=t, generator=generator))


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) or (B, ...) bool mask reshaped to broadcast against ``like`` (B, ...)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))
