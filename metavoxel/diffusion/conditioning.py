"""How fixed variables enter each network call while sampling: RePaint, clean, and the guidance marginal.

- ``repaint`` (Lugmayr et al. 2022; the paper's method): after every reverse step a fixed value is
  replaced by its known value re-noised to the new level (`metavoxel.diffusion.sampler.overwrite`).
- ``clean``: a fixed value enters at level 0 at every step and is never re-noised — the network was trained
  to see it so (`metavoxel.diffusion.mixture`; UniDiffuser, Bao et al. 2023). A partly known image is
  noised as training noises it: its kept voxels drawn from z0 at each level (as repaint does), the rest
  sampled, and the network told the kept voxels clean through its keep-mask channels [mask, mask * z0]
  (CSDI, Tashiro et al. 2021).
- guidance (classifier-free guidance, Ho & Salimans 2022): with weight w the prediction is
  (1 + w) · out(cond) − w · out(marginal), where the marginal call sees the fixed variables as unknown —
  prior noise at level T — and no keep-mask; for a D3PM variable ``out`` are its x0 logits. Both calls share
  one forward (rows concatenated). The image variables share the U-Net's one level, so a held image whose
  row has another image not held (translation: one image fixed, the other sampled) is shown unknown the
  way training shows a missing image beside a present one: prior noise at the shared level t
  (`metavoxel.diffusion.process.JointDiffusion.shown`).

A fixed row is *held* when every entry of the variable is known in that row; a row with some entries
known (an inpainting mask) is *partial*.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import torch

from metavoxel.diffusion.known import Known
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["CONDITIONING_MODES", "Conditions", "call_network"]

CONDITIONING_MODES = ("repaint", "clean")

Levels = torch.Tensor | dict[str, torch.Tensor]


class Conditions:
    """The fixed variables of one chunk of rows, as the network and the sampler see them.

    Args:
        variables: the model's variables.
        known: the fixed variables of these rows.
        mode: ``repaint`` or ``clean``.
        timesteps: T (the marginal's level).
        rows: B.
    """

    def __init__(self, variables: Mapping[str, Variable], known: Mapping[str, Known], mode: str, timesteps: int,
                 rows: int):
        self.variables, self.known, self.mode, self.T, self.rows = variables, dict(known), mode, int(timesteps), rows
        self.held = {n: k.z_mask.reshape(rows, -1).all(dim=1) for n, k in self.known.items()}  # (B,) bool
        self.keep: dict[str, torch.Tensor] = {}
        self.partial: dict[str, torch.Tensor] = {}  # image -> (B,) bool: rows with some voxels known (clean mode)
        if mode == "clean":
            for name, k in self.known.items():
                if isinstance(variables[name].head, SpatialHead):
                    partial = k.z_mask & ~_expand(self.held[name], k.z_mask)
                    if bool(partial.any()):
                        m = partial.to(k.z0.dtype)  # (B, C, *grid)
                        self.keep[name] = torch.cat([m, m * k.z0], dim=1)  # (B, 2C, *grid)
                        self.partial[name] = partial.reshape(rows, -1).any(dim=1)

    def overwritten(self, part: slice, names: Collection[str] | None = None) -> dict[str, Known]:
        """What the sampler overwrites after each step in rows ``part`` (of ``names``, default all).

        Repaint mode: every fixed variable. Clean mode: the partly known images, whose kept voxels are
        re-noised from z0 as training draws them (z_t of the kept voxels from their z0, beside the clean
        keep-mask channels) — and only where ``part`` holds such a row, so a block of held or missing rows
        draws no re-noising noise (a subject's draws do not depend on which subjects share its chunk).
        """
        if self.mode == "repaint":
            chosen = list(self.known)
        else:
            chosen = [n for n, rows in self.partial.items() if bool(rows[part].any())]
        return {n: self.known[n].rows(part) for n in chosen if names is None or n in names}

    def hold(self, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Clean mode: held rows keep their clean value z0 (never stepped, never re-noised)."""
        if self.mode != "clean":
            return z
        out = dict(z)
        for name, k in self.known.items():
            out[name] = torch.where(_expand(self.held[name], z[name]), k.z0.to(z[name].dtype), z[name])
        return out

    def levels(self, t: torch.Tensor) -> Levels:
        """The step of every variable: ``t`` (B,), or name -> (B,) with held rows at 0 in clean mode."""
        if self.mode != "clean" or not any(bool(h.any()) for h in self.held.values()):
            return t
        return {n: torch.where(self.held[n], torch.zeros_like(t), t) if n in self.held else t for n in self.variables}

    def marginal(self, z: dict[str, torch.Tensor], t: torch.Tensor, prior: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The guidance marginal's inputs: held rows of fixed variables at prior noise and level T (a held
        image beside an image that is not held: prior noise at the images' shared level ``t``)."""
        z_m, levels = dict(z), {n: t for n in self.variables}
        spatial = [n for n, v in self.variables.items() if isinstance(v.head, SpatialHead)]
        none = torch.zeros_like(t, dtype=torch.bool)
        images_held = torch.stack([self.held.get(n, none) for n in spatial]).all(dim=0) if spatial else none  # (B,)
        for name, held in self.held.items():
            z_m[name] = torch.where(_expand(held, z[name]), prior[name], z[name])
            at_T = held & images_held if name in spatial else held
            levels[name] = torch.where(at_T, torch.full_like(t, self.T), t)
        return z_m, levels


def call_network(network: Callable, conditions: Conditions, z: dict[str, torch.Tensor], t: torch.Tensor, *,
                 guidance: float = 0.0, prior: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One network call under ``conditions`` (and, for ``guidance`` != 0, its marginal in the same forward)."""
    levels = conditions.levels(t)
    if guidance == 0.0 or not conditions.known:
        return _forward(network, z, levels, conditions.keep)
    z_m, levels_m = conditions.marginal(z, t, prior or {})
    both_levels = {n: torch.cat([_per_variable(levels, n), levels_m[n]]) for n in conditions.variables}
    both_z = {n: torch.cat([z[n], z_m[n]]) for n in z}
    keep = {n: torch.cat([k, torch.zeros_like(k)]) for n, k in conditions.keep.items()}
    out = _forward(network, both_z, both_levels, keep)
    b = conditions.rows
    return {n: (1 + guidance) * o[:b] - guidance * o[b:] for n, o in out.items()}  # eps or x0 logits


def _forward(network: Callable, z, levels, keep) -> dict[str, torch.Tensor]:
    return network(z, levels, keep) if keep else network(z, levels)


def _per_variable(levels: Levels, name: str) -> torch.Tensor:
    return levels if isinstance(levels, torch.Tensor) else levels[name]


def _expand(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool -> broadcastable against ``like`` (B, ...)."""
    return rows.reshape(-1, *([1] * (like.dim() - 1)))
