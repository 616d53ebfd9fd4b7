"""Zero-shot sampling: the reverse chain with any subset of variables fixed (RePaint or clean).

Every variable walks one strided time grid (`metavoxel.diffusion.grid`). In ``repaint`` mode, after each
reverse step to level s, each fixed variable is overwritten — inside its mask for images — by its known
value re-noised to exactly level s (Lugmayr et al. 2022, "RePaint"); what is not fixed is thereby sampled
from the learned conditional. In ``clean`` mode a fixed variable stays clean at level 0 and is never
re-noised (`metavoxel.diffusion.conditioning`, which also holds classifier-free guidance; a partly known
image's kept voxels are overwritten in both modes). Variables that declare the fused fast path are stepped
and overwritten together (`metavoxel.diffusion.fused`); every other variable takes its own
``reverse_step`` and ``renoise``. At the end the known values are returned exactly (for latent images:
known voxels are pasted back after decoding, and the generated ones meet them without a seam:
`metavoxel.diffusion.blend.seamless_paste`).

This module runs one chain for one chunk of rows; `metavoxel.diffusion.sampling.sample`
validates the request, chunks the rows and gathers the results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from typing import Any

import torch

from metavoxel.diffusion.blend import seamless_paste
from metavoxel.diffusion.conditioning import Conditions, call_network
from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.known import Known
from metavoxel.variables.decoded import checked_decode
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["decode", "overwrite", "reverse_chain", "Streams"]

Network = Callable[..., Mapping[str, torch.Tensor]]  # network(z, t[, keep]) -> {name: output}


def reverse_chain(variables: Mapping[str, Variable], network: Network, known: Mapping[str, Known],
                  grid: torch.Tensor, walk: list[tuple[int, int]], *, rows: int, eta: float,
                  gaussian: GaussianGroup, categorical: CategoricalGroup, generator: torch.Generator | Streams,
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
        generator: every random draw, in a fixed order, so a seed gives the same chain; or `Streams`, one
            generator per block of rows (e.g. per subject): each block draws only from its own generator,
            so its chain does not depend on the other rows of the batch (the network still runs once over
            all rows).
        device: where the states live.
        bf16: run the network under bfloat16 autocast (states and updates stay float32).
        on_call: called after every network call (progress).
        conditioning: ``repaint`` or ``clean`` (see `metavoxel.diffusion.conditioning`).
        guidance: classifier-free guidance weight w (0: none; the marginal needs ``timesteps``).
        timesteps: T, the marginal's level (default: the grid's last level).

    Returns:
        name -> z0 (B, *z).
    """
    streams = generator if isinstance(generator, Streams) else Streams.single(rows, generator)
    if streams.rows != rows:
        raise ValueError(f"streams cover {streams.rows} rows, the chain has {rows}")
    others = [name for name in variables if name not in gaussian and name not in categorical]
    conditions = Conditions(variables, known, conditioning, int(grid[-1]) if timesteps is None else timesteps, rows)

    def start(part: slice, gen: torch.Generator) -> dict[str, torch.Tensor]:
        b = part.stop - part.start
        z = {name: var.prior(b, generator=gen, device=device) for name, var in variables.items()}
        z = overwrite(variables, z, conditions.overwritten(part), int(grid[walk[0][0]]), b, gen, device)
        if guidance != 0.0:  # the marginal's prior noise for the fixed variables, drawn once per chain
            z.update({("prior", name): variables[name].prior(b, generator=gen, device=device) for name in known})
        return z

    z = streams.each(start)
    prior = {name: z.pop(("prior", name)) for name in known} if guidance != 0.0 else None  # type: ignore[call-overload]
    z = conditions.hold(z)
    for pos, nxt in walk:
        t = torch.full((rows,), int(grid[pos]), device=device, dtype=torch.long)
        s = torch.full((rows,), int(grid[nxt]), device=device, dtype=torch.long)
        if nxt > pos:  # RePaint undo: jump forward from level t to level s > t
            z = conditions.hold(streams.each(lambda part, gen: {
                name: var.undo(z[name][part], t[part], s[part], generator=gen) for name, var in variables.items()}))
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = call_network(network, conditions, z, t, guidance=guidance, prior=prior)

        def step(part: slice, gen: torch.Generator) -> dict[str, torch.Tensor]:
            zp, op, tp, sp, kp = _rows(z, part), _rows(out, part), t[part], s[part], conditions.overwritten(part)
            z_s = gaussian.step(zp, op, tp, sp, kp, eta, gen)  # stepped and overwritten
            z_s.update(categorical.step(zp, op, tp, sp, kp, gen))  # on CUDA; else empty
            for name in others:
                z_s[name] = variables[name].reverse_step(zp[name], op[name], tp, sp, eta=eta, generator=gen)
            return overwrite(variables, z_s, conditions.overwritten(part, others), int(grid[nxt]),
                             part.stop - part.start, gen, device)

        z = conditions.hold(streams.each(step))
        if on_call is not None:
            on_call()
    return z


class Streams:
    """Where a chain's random draws come from: blocks of consecutive rows, each with its own generator.

    A block draws, in the chain's fixed order, only from its own generator, so one block's samples are the
    same whatever other blocks share its batch (up to the network's floating-point batch invariance). One
    block over all rows is the plain single-generator chain, draw for draw.

    Args:
        blocks: (rows in the block, its generator) in row order.
    """

    def __init__(self, blocks: list[tuple[int, torch.Generator]]):
        self.parts: list[tuple[slice, torch.Generator]] = []
        first = 0
        for count, gen in blocks:
            self.parts.append((slice(first, first + int(count)), gen))
            first += int(count)
        self.rows = first

    @classmethod
    def single(cls, rows: int, generator: torch.Generator) -> Streams:
        return cls([(rows, generator)])

    def each(self, fn: Callable[[slice, torch.Generator], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``fn(rows, generator)`` for every block, its outputs concatenated back in row order."""
        parts = [fn(part, gen) for part, gen in self.parts]
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def autocast_network(network: Network, device: torch.device) -> Network:
    """``network`` run under bfloat16 autocast, its outputs returned as float32."""
    def run(*args: Any) -> dict[str, torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = network(*args)
        return {name: o.float() for name, o in out.items()}
    return run


def _rows(values: Mapping[str, torch.Tensor], part: slice) -> dict[str, torch.Tensor]:
    return {name: v[part] for name, v in values.items()}


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
    """z0 -> values on the CPU, with known values returned exactly; a kind whose decode gives NaN or infinite values
    is named with the fix (`metavoxel.variables.decoded.checked_decode`).

    An image known in part (a keep-mask) gets its known voxels back by `seamless_paste`: the generated voxels
    near the mask's border are moved by the decoder's error on the known ones, so no step is left there.
    """
    values = {}
    for name, var in variables.items():
        k = known.get(name)
        if k is not None and bool(k.value_mask.all()):
            values[name] = k.values  # fully known: no decode needed
            continue
        decoded = checked_decode(var, z[name])
        if k is None:
            values[name] = decoded
        elif isinstance(var.head, SpatialHead):
            values[name] = seamless_paste(decoded, k.values, k.value_mask)
        else:
            values[name] = torch.where(k.value_mask, k.values.to(decoded.dtype), decoded)
    return {name: v.cpu() for name, v in values.items()}
