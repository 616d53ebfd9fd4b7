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

import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch

from metavoxel.diffusion.known import Known
from metavoxel.errors import OptionError
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["CONDITIONING_MODES", "ConditioningFallback", "Conditions", "call_network", "clean_refusal",
           "conditioning_mode"]

CONDITIONING_MODES = ("repaint", "clean")

Levels = torch.Tensor | dict[str, torch.Tensor]


class ConditioningFallback(UserWarning):
    """The model's default conditioning (clean) cannot serve a request, which is sampled with repaint."""


def conditioning_mode(process: Any, requested: str | None, guidance: float, known: Mapping[str, Known]) -> str:
    """The mode a request samples with: ``requested``, or the process's default (``process.conditioning``).

    ``process`` is a `metavoxel.diffusion.process.JointDiffusion` (its ``conditioning``, ``mixture``,
    ``variables`` and ``groups``). A mode asked for by name is honoured or refused; where the default is clean
    but clean cannot serve this request (`clean_refusal`), the request is sampled with repaint and a
    `ConditioningFallback` warning says why (the result's ``conditioning`` records it too).

    Raises:
        OptionError: clean asked of a model trained without clean subsets, or of a request it cannot serve;
            guidance asked of a model trained without prior subsets.
    """
    mixture = process.mixture
    mode = process.conditioning if requested is None else requested
    if mode == "clean" and mixture.clean <= 0:
        raise OptionError("{conditioning} clean needs a model trained with clean subsets (diffusion.training.clean "
                          "> 0), this one was not; set {conditioning} to repaint or retrain", "conditioning")
    reason = clean_refusal(process, known) if mode == "clean" else None
    if reason is not None and requested is None:
        warnings.warn(ConditioningFallback(f"the model's default conditioning, clean, cannot hold this request "
                                           f"({reason.reason}); sampled with repaint"), stacklevel=3)
        mode = "repaint"
    elif reason is not None:
        raise reason
    if guidance > 0 and mixture.prior <= 0:
        raise OptionError("{guidance} needs a model trained with prior subsets (diffusion.training.prior > 0) to "
                          "know the marginal, this one was not; set {guidance} to 0 or retrain", "guidance")
    return mode


def clean_refusal(process: Any, known: Mapping[str, Known], *, point: bool = False) -> OptionError | None:
    """Why clean conditioning cannot hold these fixed values, or None when it can.

    Two cases: an image partly known (a mask) in a model trained without keep-masks; and image variables,
    which share the U-Net's one level, some held whole and some not (one noised or free) in the same row.
    ``point``: the request is a point prediction (clean only), so the way out offered is sampling.
    """
    variables = process.variables
    way_out = "predict by sampling instead ({method} sample)" if point else "set {conditioning} to repaint"
    options = ("method",) if point else ("conditioning",)
    if process.mixture.keep_masks <= 0:
        partial = [n for n, k in known.items() if isinstance(variables[n].head, SpatialHead)
                   and bool((k.z_mask.flatten(1).any(1) & ~k.z_mask.flatten(1).all(1)).any())]
        if partial:
            return _refusal(f"{', '.join(partial)} is partly known (a mask), which clean conditioning holds only in "
                            "a model trained with keep-masks (diffusion.training.keep_masks > 0)",
                            f"{way_out} or retrain", options)
    spatial = [n for n in process.groups[0] if isinstance(variables[n].head, SpatialHead)] if process.groups else []
    if len(spatial) < 2 or not known:
        return None
    rows = len(next(iter(known.values())).z_mask)
    none = torch.zeros(rows, dtype=torch.bool)
    held = torch.stack([known[n].z_mask.flatten(1).all(1).cpu() if n in known else none for n in spatial])  # (I, N)
    mixed = held.any(0) & ~held.all(0)  # (N,) rows where some image is held whole and another is not
    if not bool(mixed.any()):
        return None
    row = int(mixed.nonzero()[0, 0])
    some = torch.stack([known[n].z_mask.flatten(1).any(1).cpu() if n in known else none for n in spatial])  # (I, N)
    state = {n: "held whole" if h else "fixed inside a mask" if a else "free"
             for n, h, a in zip(spatial, held[:, row].tolist(), some[:, row].tolist())}
    whole = [n for n, s in state.items() if s == "held whole"]
    if "free" in state.values():
        fix = f"fix every image ({', '.join(spatial)})"
    elif process.mixture.keep_masks > 0:
        fix = f"fix {', '.join(whole)} inside a mask too"
    else:
        fix = f"fix {', '.join(n for n, s in state.items() if s != 'held whole')} whole"
    told = "; ".join(f"{n} is {s}" for n, s in state.items())
    return _refusal(f"image variables {', '.join(spatial)} share one level, so clean conditioning needs them all "
                    f"held whole or all noised, but in row {row} {told}", f"{way_out}, or {fix}", options)


def _refusal(reason: str, fix: str, options: tuple[str, ...]) -> OptionError:
    """An OptionError ``reason; fix`` that keeps ``reason`` alone as ``.reason`` (for the fallback warning)."""
    error = OptionError(f"{reason}; {fix}", *options)
    error.reason = reason.replace("{", "{{").replace("}", "}}") and reason
    return error


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
