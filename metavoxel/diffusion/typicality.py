"""Typicality of a record's given values: the model's own denoising bound, split into the image and the metadata.

The denoising loss of a diffusion model, averaged over noise levels, is a Monte-Carlo estimate of a
variational bound on -log p (Ho et al. 2020, eq. 5; Kingma et al. 2021): a record unlike the training data
denoises worse. For a record with given variables G, split into its images I ⊆ G (the spatial variables)
and its metadata M = G \\ I (the scalars), two terms are estimated at J levels stratified over 1..T
(t_j = ⌈(j + ½) T / J⌉, as `metavoxel.diffusion.likelihood`), with the SAME noise for every record at a
level (common random numbers: a score depends on the record, not on its draws):

    image term    s_I = (1/J) Σ_j  L_I(x_I at t_j | x_M clean)      ≈ bound on -log p(x_I | x_M)
    metadata term s_M = (1/J) Σ_j  L_M(x_M at t_j | x_I clean)      ≈ bound on -log p(x_M | x_I)

where L is the kinds' own per-record training loss (noise MSE, cross-entropy of the x0 logits) summed over the
part's variables (the metadata term: its CONTINUOUS scalars; categorical ones are read below), and variables not in G enter as missing (prior noise at level T: marginalised, as training
shows them). This is clean conditioning, which a model trained with clean subsets has learned
(``diffusion.training.clean > 0``); a model trained with the paper's one shared t never saw a clean given value,
so for it both terms come from one call per level with every given variable at t_j (the joint bound, read per
part). Cost: 2·J network calls per record (J with one part only, or the paper's recipe); J = 5 keeps it <= 10.

The losses are kept per level (`TypicalityTerms.image_levels`, ``metadata_levels``): their spread differs by
orders of magnitude between levels, so `metavoxel.evaluation.typicality` standardises each level by the
validation split's before averaging, and reads the result as a percentile among the validation split's for the
same given variables. Where the image kinds declare `metavoxel.HasLossMap` (one grid for all of them), the image
term is also kept per location, L_I(t_j, x) on the diffusion grid (`TypicalityTerms.image_maps`; its mean over x
is L_I(t_j)): what the local image statistic and the score of a masked image read. A keep-mask given with an image
(``masks``) becomes the latent locations it keeps (`TypicalityTerms.image_keep`), derived as sampling derives the
known region (`metavoxel.diffusion.known`); the image term's network calls are the same with or without it. A
masked record has no metadata term (J calls): it would be the metadata given the WHOLE scan, the region the mask
drops included, which the request did not give.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from metavoxel.diffusion.known import outside_ignored
from metavoxel.errors import InputError
from metavoxel.variables.capabilities import HasCategories, HasLossMap
from metavoxel.variables.protocol import ScalarHead, SpatialHead

__all__ = ["PARTS", "TYPICALITY_LEVELS", "TypicalityTerms", "categorical", "mid_p", "typicality_terms"]

#: J, the levels each term is averaged over (2·J <= 10 network calls per record).
TYPICALITY_LEVELS = 5
#: The two parts a record's given values are split into.
PARTS = ("image", "metadata")


@dataclass
class TypicalityTerms:
    """Per-record, per-level losses (N, J) float64, NaN rows where the record gives nothing of that part.

    Attributes:
        image_levels, metadata_levels: L_I and L_M at each of the J levels t_j (module docstring); L_M sums the
            continuous scalars only (NaN where the record gives none).
        calls_per_record: network calls spent on each record.
        given: per record, the given variables (sorted, comma-joined: the key of its reference scores).
        image_maps: L_I(t_j, x) per location of the diffusion grid, (N, J, *grid) float32 (NaN rows where the record
            gives no image); None when an image kind declares no `HasLossMap` or the images' grids differ.
        image_keep: the latent locations each record's keep-mask keeps, (N, *grid) bool; None: no mask (all kept).
        category_midp: categorical variable -> its given class's mid-p value u_c at the top level (N,) float64
            (module docstring); NaN where the record does not give it (or its metadata is not scored: a mask).
        category_levels: categorical variable -> its cross-entropy at each level (N, J) float64, NaN as above.
    """

    image_levels: torch.Tensor
    metadata_levels: torch.Tensor
    calls_per_record: int
    given: list[str]
    image_maps: torch.Tensor | None = None
    image_keep: torch.Tensor | None = None
    category_midp: dict[str, torch.Tensor] = field(default_factory=dict)
    category_levels: dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, index: list[int]) -> TypicalityTerms:
        """The terms of the records ``index`` (in that order)."""
        pick = lambda x: None if x is None else x[index]  # noqa: E731
        return TypicalityTerms(self.image_levels[index], self.metadata_levels[index], self.calls_per_record,
                               [self.given[i] for i in index], pick(self.image_maps), pick(self.image_keep),
                               {k: v[index] for k, v in self.category_midp.items()},
                               {k: v[index] for k, v in self.category_levels.items()})

    @classmethod
    def concat(cls, parts: list[TypicalityTerms]) -> TypicalityTerms:
        """The records of ``parts`` one after another (image maps kept only when every part has them)."""
        cat = lambda xs: None if any(x is None for x in xs) else torch.cat(xs)  # noqa: E731
        names = set.intersection(*(set(p.category_midp) for p in parts))
        return cls(torch.cat([p.image_levels for p in parts]), torch.cat([p.metadata_levels for p in parts]),
                   max(p.calls_per_record for p in parts), [g for p in parts for g in p.given],
                   cat([p.image_maps for p in parts]), cat([p.image_keep for p in parts]),
                   {k: torch.cat([p.category_midp[k] for p in parts]) for k in sorted(names)},
                   {k: torch.cat([p.category_levels[k] for p in parts]) for k in sorted(names)})

    @property
    def image(self) -> torch.Tensor:
        """s_I (N,): the image losses averaged over the levels."""
        return self.image_levels.mean(dim=1)

    @property
    def metadata(self) -> torch.Tensor:
        """s_M (N,): the metadata losses averaged over the levels."""
        return self.metadata_levels.mean(dim=1)

    def levels(self, name: str) -> torch.Tensor:
        """(N, J) per-level losses of part ``name`` (``image`` or ``metadata``)."""
        return {"image": self.image_levels, "metadata": self.metadata_levels}[name]

    def part(self, name: str) -> torch.Tensor:
        """(N,) the level-averaged term of part ``name``."""
        return self.levels(name).mean(dim=1)


def categorical(variable: Any) -> bool:
    """Whether ``variable`` is read by its mid-p value: a scalar declaring `HasCategories` whose head gives one logit
    per category (its x0 logits)."""
    return isinstance(variable, HasCategories) and isinstance(variable.head, ScalarHead) and \
        variable.head.out_features == len(variable.categories)


def mid_p(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """u_c = Σ_{k: p_k < p_c} p_k + ½ Σ_{k: p_k = p_c} p_k with p = softmax(logits) (module docstring).

    Args:
        logits: (B, K) x0 logits.
        classes: (B,) long, the given class c of each record.

    Returns:
        (B,) float64 in [0, 1]: small = the given class is improbable under the model (0 only where p_c underflows).
    """
    p = torch.softmax(logits.double(), dim=-1)  # (B, K)
    p_c = p.gather(1, classes.long().reshape(-1, 1))  # (B, 1)
    return (p * (p < p_c)).sum(dim=1) + 0.5 * (p * (p == p_c)).sum(dim=1)


def _levels(total: int, count: int) -> list[int]:
    return [min(total, max(1, math.ceil((j + 0.5) * total / count))) for j in range(count)]


@torch.no_grad()
def typicality_terms(model: Any, fix: Mapping[str, Any], *, levels: int = TYPICALITY_LEVELS, seed: int = 0,
                     batch_size: int = 32, progress: Callable[[int, int], None] | None = None,
                     masks: Mapping[str, Any] | None = None) -> TypicalityTerms:
    """The image and metadata terms of N records (module docstring).

    Args:
        model: a `metavoxel.JointModel` (its current weights, in eval mode while scoring).
        fix: variable -> raw values of N records (None/NaN cells: not given for that record).
        levels: J (each term averages J network calls).
        seed: the shared noise's seed.
        batch_size: records per network call.
        progress: ``progress(done, total)`` after each network call.
        masks: image variable -> keep-mask in value space, (N|1, 1|C, *shape), non-zero = kept, as `sample` takes
            it: the image term is then read over the kept latent locations (`TypicalityTerms.image_keep`), and
            there is no metadata term.

    Raises:
        InputError: an unknown variable, ``levels`` < 1, or a mask for a variable that is not a given image.
    """
    if levels < 1:
        raise InputError(f"typicality: levels must be >= 1, got {levels}")
    diffusion, network = model.diffusion, model.net
    variables = diffusion.variables
    masks = dict(masks or {})
    fix = {name: outside_ignored(raw, torch.as_tensor(masks[name]).bool()) if name in masks else raw
           for name, raw in fix.items()}
    z0, present = diffusion.encode_batch(dict(fix))
    n = len(next(iter(present.values())))
    spatial = [name for name, v in variables.items() if isinstance(v.head, SpatialHead)]
    mapped = _mapped(variables, spatial)
    keep = _keep(variables, masks, fix, spatial, mapped, n)
    scalars = [name for name in variables if name not in spatial]
    classes = [name for name in scalars if categorical(variables[name])]  # read by their mid-p value
    continuous = [name for name in scalars if name not in classes]
    clean = diffusion.mixture.clean > 0
    grid = _levels(diffusion.timesteps, levels)
    device, total_t = diffusion.device, diffusion.timesteps
    given = [",".join(sorted(name for name in variables if bool(present[name][i]))) for i in range(n)]
    has = {"image": torch.stack([present[v] for v in spatial]).any(0) if spatial else torch.zeros(n, dtype=torch.bool),
           "metadata": torch.stack([present[v] for v in scalars]).any(0) if scalars else torch.zeros(n, dtype=torch.bool)}
    if keep is not None:  # the metadata part would read the whole scan, what the mask drops too: not scored
        has["metadata"] = torch.zeros(n, dtype=torch.bool)
    scored = {name: present[name].cpu() & has["metadata"] for name in scalars}  # (N,) per scalar
    parts = [p for p in PARTS if bool(has[p].any())]
    passes = [(p,) for p in parts] if clean else [tuple(parts)] if parts else []
    sums = {p: torch.zeros(n, len(grid), dtype=torch.float64) for p in PARTS}  # (N, J) per part
    class_levels = {name: torch.zeros(n, len(grid), dtype=torch.float64) for name in classes}  # (N, J)
    midp = {name: torch.zeros(n, dtype=torch.float64) for name in classes}  # (N,) at the top level
    maps = (torch.zeros(n, len(grid), *variables[spatial[0]].head.shape) if mapped and bool(has["image"].any())
            else None)  # (N, J, *grid)
    total, done = len(passes) * len(grid) * -(-n // max(1, batch_size)), 0
    was_training = model.training
    model.eval()
    try:
        for noised_parts in passes:
            noised = [v for p in noised_parts for v in (spatial if p == "image" else scalars)]
            for j, level in enumerate(grid):
                for start in range(0, n, max(1, batch_size)):
                    rows = slice(start, min(n, start + max(1, batch_size)))
                    losses, loss_maps, out = _losses(diffusion, network, {k: v[rows] for k, v in z0.items()},
                                                     {k: v[rows] for k, v in present.items()}, noised, level, clean,
                                                     total_t, seed * 1_000_003 + j, device, mapped)
                    for p in noised_parts:
                        names = spatial if p == "image" else continuous
                        sums[p][rows, j] = sum((losses[v] for v in names), torch.zeros(rows.stop - rows.start,
                                                                                       device=device)).double().cpu()
                    if "metadata" in noised_parts:
                        for name in classes:
                            class_levels[name][rows, j] = losses[name].double().cpu()
                            if j == len(grid) - 1:  # the top level: the value mostly noised
                                midp[name][rows] = mid_p(out[name].float(), z0[name][rows]).cpu()
                    if maps is not None and "image" in noised_parts:
                        maps[rows, j] = sum(loss_maps[v] for v in spatial).float().cpu()
                    done += 1
                    if progress is not None:
                        progress(done, total)
    finally:
        model.train(was_training)
    nan = torch.full((n, len(grid)), float("nan"), dtype=torch.float64)
    has["metadata"] = has["metadata"] & (torch.stack([scored[v] for v in continuous]).any(0) if continuous
                                         else torch.zeros(n, dtype=torch.bool))
    terms = {p: torch.where(has[p][:, None], sums[p], nan) for p in PARTS}
    class_levels = {v: torch.where(scored[v][:, None], x, nan) for v, x in class_levels.items()}
    midp = {v: torch.where(scored[v], x, nan[:, 0]) for v, x in midp.items()}
    if maps is not None:
        maps[~has["image"]] = float("nan")
    calls = len(passes) * len(grid)
    return TypicalityTerms(terms["image"], terms["metadata"], calls, given, maps, keep, midp, class_levels)


def _mapped(variables, spatial: list[str]) -> bool:
    """Whether the image term has a per-location map: every image kind declares `HasLossMap`, on one grid."""
    return bool(spatial) and all(isinstance(variables[v], HasLossMap) for v in spatial) and \
        len({tuple(variables[v].head.shape) for v in spatial}) == 1


def _keep(variables, masks: Mapping[str, Any], fix: Mapping[str, Any], spatial: list[str], mapped: bool,
          n: int) -> torch.Tensor | None:
    """The latent locations kept by the keep-masks, (N, *grid) bool (a location is kept when every image kept it),
    via each kind's `diffusion_mask` as sampling derives its known region; None without masks."""
    if not masks:
        return None
    for name in masks:
        if name not in spatial or name not in fix:
            raise InputError(f"typicality: a mask is given for {name!r}, which is not a given image variable")
    if not mapped:
        raise InputError("typicality: a masked image needs an image kind with a per-location loss "
                         "(metavoxel.HasLossMap); this model's cannot be scored masked")
    keep = None
    for name, mask in masks.items():
        mask = torch.as_tensor(mask).bool()
        grid = variables[name].head.shape
        z_mask = variables[name].diffusion_mask(mask if mask.dim() > len(grid) + 1 else mask[None])
        z_mask = z_mask.reshape(z_mask.shape[0], -1, *grid).all(dim=1)  # (N|1, *grid): every channel known
        keep = z_mask if keep is None else keep & z_mask
    if not bool(keep.flatten(1).any(dim=1).all()):
        raise InputError("typicality: a keep-mask keeps no location of the model's latent grid (too small, or only "
                         "at the border of what it drops); keep a larger region or score the whole image")
    return keep.expand(n, *keep.shape[1:]).cpu()


def _losses(diffusion, network, z0, present, noised: list[str], level: int, clean: bool, total_t: int, seed: int,
            device, mapped: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Per-variable losses (b,) of b records with ``noised`` at ``level`` and the other given variables clean (or
    at ``level`` too, without ``clean``), with ``mapped`` the noised images' loss maps (b, *grid), and the network's
    outputs; missing
    variables are prior noise at T (at ``level`` in the paper's recipe, as it trained). Every record's draws come
    from its own generator seeded by ``seed``: shared noise."""
    b = len(next(iter(present.values())))
    paper = diffusion.mixture.is_paper
    noisy = set(noised) if clean else set(diffusion.variables)
    states: dict[str, list[torch.Tensor]] = {name: [] for name in diffusion.variables}
    targets: dict[str, list[Any]] = {name: [] for name in diffusion.variables}
    for i in range(b):
        generator = torch.Generator(device=device).manual_seed(seed)  # the same draws for every record
        t = torch.full((1,), level, dtype=torch.long, device=device)
        for name, var in diffusion.variables.items():  # a fixed order: the draws depend on shapes only
            x0 = z0[name][i:i + 1]
            prior = var.prior(1, generator=generator, device=device)
            corrupted, target = var.corrupt(x0, t, generator=generator)
            if not bool(present[name][i]):
                states[name].append(prior)
            elif name in noisy:
                states[name].append(corrupted)
            else:
                states[name].append(x0)
            targets[name].append(target)
    z_t = {name: torch.cat(parts) for name, parts in states.items()}
    target = {name: _cat(parts) for name, parts in targets.items()}
    t = torch.full((b,), level, dtype=torch.long, device=device)
    if paper:
        out = network(z_t, t)
    else:
        shown = diffusion.shown(present)
        full = torch.full_like(t, total_t)
        zero = torch.zeros_like(t)
        given_levels = {name: torch.where(shown[name], t if name in noisy else zero, full) for name in z_t}
        out = network(z_t, given_levels)
    losses = {name: diffusion.variables[name].loss(out[name], target[name]) * present[name].float()
              for name in noised}
    maps = {name: diffusion.variables[name].loss_map(out[name], target[name])
            * present[name].float().reshape(-1, *([1] * (out[name].dim() - 2)))
            for name in noised if mapped and isinstance(diffusion.variables[name].head, SpatialHead)}
    return losses, maps, out


def _cat(parts: list[Any]) -> Any:
    """Concatenate per-record targets: tensors along dim 0, or tuples/dicts of tensors element-wise."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, tuple):
        return tuple(_cat([p[k] for p in parts]) for k in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([p[k] for p in parts]) for k in first}
    raise InputError(f"typicality: cannot batch a loss target of type {type(first).__name__}")
