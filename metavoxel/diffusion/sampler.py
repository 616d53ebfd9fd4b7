"""Zero-shot sampling: the reverse chain with any subset of variables fixed (RePaint or clean).

Every variable walks one strided time grid (`metavoxel.diffusion.grid`). In ``repaint`` mode, after each
reverse step to level s, each fixed variable is overwritten — inside its mask for images — by its known
value re-noised to exactly level s (Lugmayr et al. 2022, "RePaint"); what is not fixed is thereby sampled
from the learned conditional. In ``clean`` mode a fixed variable stays clean at level 0 and is never
re-noised (`metavoxel.diffusion.conditioning`, which also holds classifier-free guidance). Variables that declare the fused fast path are stepped and overwritten together
(`metavoxel.diffusion.fused`); every other variable takes its own ``reverse_step`` and ``renoise``. At the
end the known values are returned exactly (for latent images: known voxels are pasted back after decoding).

This module runs one chain for one chunk of rows; `metavoxel.diffusion.process.JointDiffusion.sample`
validates the request, chunks the rows and gathers the results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from metavoxel.diffusion.conditioning import Conditions, call_network
from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.known import Known
from metavoxel.variables.protocol import Variable

__all__ = ["decode", "overwrite", "reverse_chain"]

Network = Callable[..., Mapping[str, torch.Tensor]]  # network(z, t[, keep]) -> {name: output}


def reverse_chain(variables: Mapping[str, Variable], network: Network, known: Mapping[str, Known],
                  grid: torch.Tensor, walk: list[tuple[int, int]], *, rows: int, eta: float,
                  gaussian: GaussianGroup, categorical: CategoricalGroup, generator: torch.Generator,
                  device: torch.device, bf16: bool = False, on_call: Callable[[], None] | None = None,
                  conditioning: str = "repaint", guidance: float = 0.0, timesteps: int | None = None
                  ) -> dict[str, torch.Tensor]:
    """z0 of every variable for ``rows`` records, walking ``walk`` over the strided ``grid`` of levels.

    Args:
        variables: the model's variables.
        network: ``network(z, t) -> {name: output}`` (a `metavoxel.diffusion.network.JointNetwork`).
        known: the fixed variables of these rows (validated by `metavoxel.diffusion.known.known_values`).
        grid: (K + 1,) levels of the strided grid, ``grid[0] = 0``.
        walk: (position, next position) pairs on the grid; a step up is a RePaint jump (``undo``).
        rows: B, the number of records in this chain.
        eta: DDIM eta for Gaussian kinds.
        gaussian, categorical: the fused groups (their members skip their own step and renoise).
        generator: every random draw, in a fixed order, so a seed gives the same chain.
        device: where the states live.
        bf16: run the network under bfloat16 autocast (states and updates stay float32).
        on_call: called after every network call (progress).
        conditioning: ``repaint`` or ``clean`` (see `metavoxel.diffusion.conditioning`).
        guidance: classifier-free guidance weight w (0: none; the marginal needs ``timesteps``).
        timesteps: T, the marginal's level (default: the grid's last level).

    Returns:
        name -> z0 (B, *z).
    """
    others = [name for name in variables if name not in gaussian and name not in categorical]
    conditions = Conditions(variables, known, conditioning, int(grid[-1]) if timesteps is None else timesteps, rows)
    repaint = conditions.repaint_known
    z = {name: var.prior(rows, generator=generator, device=device) for name, var in variables.items()}
    z = conditions.hold(overwrite(variables, z, repaint, int(grid[walk[0][0]]), rows, generator, device))
    prior = None
    if guidance != 0.0:  # the marginal's prior noise for the fixed variables, drawn once per chain
        prior = {name: variables[name].prior(rows, generator=generator, device=device) for name in known}
    for pos, nxt in walk:
        t = torch.full((rows,), int(grid[pos]), device=device, dtype=torch.long)
        s = torch.full((rows,), int(grid[nxt]), device=device, dtype=torch.long)
        if nxt > pos:  # RePaint undo: jump forward from level t to level s > t
            z = conditions.hold({name: var.undo(z[name], t, s, generator=generator) for name, var in variables.items()})
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = call_network(network, conditions, z, t, guidance=guidance, prior=prior)
        z_s = gaussian.step(z, out, t, s, dict(repaint), eta, generator)  # stepped and overwritten
        z_s.update(categorical.step(z, out, t, s, dict(repaint), generator))  # on CUDA; else empty
        for name in others:
            z_s[name] = variables[name].reverse_step(z[name], out[name], t, s, eta=eta, generator=generator)
        z = overwrite(variables, z_s, {n: k for n, k in repaint.items() if n in others}, int(grid[nxt]), rows,
                      generator, device)
        z = conditions.hold(z)
        if on_call is not None:
            on_call()
    return z


def overwrite(variables: Mapping[str, Variable], z: dict[str, torch.Tensor], known: Mapping[str, Known], level: int,
              rows: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """RePaint: fixed entries take their known value re-noised to exactly ``level`` (each kind's ``renoise``)."""
    if not known:
        return z
    t = torch.full((rows,), level, device=device, dtype=torch.long)
    out = dict(z)
    for name, k in known.items():
        noisy = variables[name].renoise(k.z0, t, generator=generator)
        out[name] = torch.where(k.z_mask, noisy, z[name])
    return out


def decode(variables: Mapping[str, Variable], z: Mapping[str, torch.Tensor],
           known: Mapping[str, Known]) -> dict[str, torch.Tensor]:
    """z0 -> values on the CPU, with known values returned exactly."""
    values = {}
    for name, var in variables.items():
        k = known.get(name)
        if k is not None and bool(k.value_mask.all()):
            values[name] = k.values  # fully known: no decode needed
            continue
        decoded = var.decode(z[name])
        values[name] = decoded if k is None else torch.where(k.value_mask, k.values.to(decoded.dtype), decoded)
    return {name: v.cpu() for name, v in values.items()}
