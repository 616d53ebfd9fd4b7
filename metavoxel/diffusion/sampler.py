"""Zero-shot sampling: the reverse process with any subset of variables fixed (RePaint).

Every variable walks one strided time grid (`metavoxel.diffusion.grid`). After each reverse step to
level s, each fixed variable is overwritten — inside its mask for images — by its known value re-noised
to exactly level s (Lugmayr et al. 2022); what is not fixed is thereby sampled from the learned
conditional. Gaussian variables are stepped and overwritten together in one fused kernel call
(`metavoxel.diffusion.fused`); other kinds use their own ``reverse_step`` and ``renoise``. At the end the known values are returned exactly (for latent images: known voxels are
pasted back after decoding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.results import SampleResult
from metavoxel.errors import InputError
from metavoxel.variables.protocol import SpatialHead

if TYPE_CHECKING:
    from metavoxel.diffusion.joint import JointModel

__all__ = ["sample"]


class Known:
    """A fixed variable: known values and where they hold, in value space and in z space, per row."""

    def __init__(self, values: torch.Tensor, value_mask: torch.Tensor, z0: torch.Tensor, z_mask: torch.Tensor):
        self.values, self.value_mask, self.z0, self.z_mask = values, value_mask, z0, z_mask

    def repeat(self, times: int) -> Known:
        return Known(*(x.repeat_interleave(times, dim=0) for x in (self.values, self.value_mask, self.z0, self.z_mask)))

    def rows(self, rows: slice) -> Known:
        return Known(self.values[rows], self.value_mask[rows], self.z0[rows], self.z_mask[rows])


@torch.no_grad()
def sample(model: JointModel, fix: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None, *,
           num_subjects: int | None = None, num_samples: int = 1, steps: int | None = None, seed: int | None = None,
           eta: float | None = None, batch_size: int | None = None, jump_length: int = 1, jump_rounds: int = 1,
           precision: str = "fp32", progress: Callable[[int, int], None] | None = None) -> SampleResult:
    """Draw ``num_samples`` joint samples for each of N subjects, with the ``fix``ed variables held.

    Args:
        model: the joint model (its current weights are used; put EMA weights in first).
        fix: variable -> raw values for N subjects (a missing value leaves that subject's variable free).
        masks: image variable -> known-region mask (N, 1|C, *shape), 1 = keep the fixed voxel (inpainting).
        num_subjects: N when nothing is fixed (default 1).
        num_samples: samples per subject (S).
        steps: reverse steps on the strided grid (default: the spec's ``diffusion.sampling_steps``).
        seed: RNG seed (default: the spec's seed); results are reproducible for the same seed and batch_size.
        eta: DDIM eta for Gaussian kinds (default: the spec's).
        batch_size: rows (subjects × samples) per network call; default all N·S at once.
        jump_length, jump_rounds: RePaint resampling; ``jump_rounds = 1`` disables it.
        precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast (the diffusion
            states and updates stay float32).
        progress: called as ``progress(done, total)`` after every network call.

    Returns:
        A `SampleResult` with values of shape (N, S, ...) per variable.
    """
    spec = model.spec.diffusion
    steps = spec.sampling_steps if steps is None else int(steps)
    eta = spec.eta if eta is None else float(eta)
    seed = model.spec.seed if seed is None else int(seed)
    if num_samples < 1:
        raise InputError(f"num_samples must be >= 1, got {num_samples}")
    grid = time_grid(model.timesteps, steps)
    walk = repaint_walk(steps, jump_length, jump_rounds)
    known, n = _known(model, dict(fix or {}), dict(masks or {}), num_subjects)
    rows = n * num_samples
    known = {name: k.repeat(num_samples) for name, k in known.items()}
    batch_size = rows if batch_size is None else max(1, int(batch_size))
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    calls_per_chunk = sum(1 for a, b in walk if b < a)
    total_calls, done = calls_per_chunk * -(-rows // batch_size), 0
    if precision not in ("fp32", "bf16"):
        raise InputError(f"precision must be fp32 or bf16, got {precision!r}")
    bf16 = precision == "bf16"
    gaussian, categorical = GaussianGroup(model), CategoricalGroup(model)
    others = [name for name in model.variables if name not in gaussian and name not in categorical]
    was_training = model.training
    model.eval()
    chunks: list[dict[str, torch.Tensor]] = []
    try:
        for start in range(0, rows, batch_size):
            part = slice(start, min(rows, start + batch_size))
            chunk_known = {name: k.rows(part) for name, k in known.items()}
            b = part.stop - part.start
            z = {name: var.prior(b, generator=generator, device=device) for name, var in model.variables.items()}
            z = _overwrite(model, z, chunk_known, grid[walk[0][0]], b, generator)
            for pos, nxt in walk:
                t = torch.full((b,), int(grid[pos]), device=device, dtype=torch.long)
                s = torch.full((b,), int(grid[nxt]), device=device, dtype=torch.long)
                if nxt > pos:  # RePaint undo: jump forward from level t to level s > t
                    z = {name: var.undo(z[name], t, s, generator=generator) for name, var in model.variables.items()}
                    continue
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = model.denoise(z, t)
                z_s = gaussian.step(z, out, t, s, chunk_known, eta, generator)  # stepped and overwritten
                z_s.update(categorical.step(z, out, t, s, chunk_known, generator))  # on CUDA; else empty
                for name in others:
                    z_s[name] = model.variables[name].reverse_step(z[name], out[name], t, s, eta=eta,
                                                                   generator=generator)
                z = _overwrite(model, z_s, {n: k for n, k in chunk_known.items() if n in others}, int(grid[nxt]), b,
                               generator)
                done += 1
                if progress is not None:
                    progress(done, total_calls)
            chunks.append(_decode(model, z, chunk_known))
    finally:
        model.train(was_training)
    samples = {name: torch.cat([c[name] for c in chunks]).reshape(n, num_samples, *chunks[0][name].shape[1:])
               for name in model.variables}
    fixed = {name: k.value_mask.reshape(n, num_samples, -1)[:, 0].any(dim=1) for name, k in known.items()}
    return SampleResult(model.variables, samples, fixed, seed=seed, steps=steps, eta=eta)


def _known(model: JointModel, fix: dict[str, Any], masks: dict[str, Any], num_subjects: int | None):
    """Validate what is fixed and encode it once per subject."""
    names = list(model.variables)
    for what, given in (("--fix", fix), ("--mask", masks)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InputError(f"{what}: unknown variable(s) {', '.join(unknown)}; this model has {', '.join(names)}")
    for name in masks:
        if name not in fix:
            raise InputError(f"a mask is given for {name!r} but {name!r} is not fixed; fix it too (the mask says "
                             "which of its voxels to keep)")
        if not isinstance(model.variables[name].head, SpatialHead):
            raise InputError(f"{name!r} is not an image: masks apply to image variables only")
    device, known, sizes = model.device, {}, {}
    for name, raw in fix.items():
        var = model.variables[name]
        values, present = var.values(raw, device)
        sizes[name] = len(present)
        value_mask = present.reshape(-1, *([1] * (values.dim() - 1))).expand_as(values)
        if name in masks:
            mask = torch.as_tensor(masks[name], device=device).bool()
            mask = mask[None] if mask.dim() == values.dim() - 1 else mask
            try:
                value_mask = value_mask & mask.expand_as(values)
            except RuntimeError:
                raise InputError(f"mask for {name!r} has shape {tuple(mask.shape)}, which does not fit the image "
                                 f"{tuple(values.shape)}; give (N, 1, *shape) or (1, *shape)") from None
        z0 = var.encode(values)
        z_mask = var.diffusion_mask(value_mask)
        z_mask = (z_mask.reshape(*z_mask.shape, *([1] * (z0.dim() - z_mask.dim())))).expand_as(z0)
        known[name] = Known(values, value_mask, z0, z_mask)
    if len(set(sizes.values())) > 1:
        raise InputError(f"every fixed variable needs one value per subject; got {sizes}")
    n = next(iter(sizes.values())) if sizes else (1 if num_subjects is None else int(num_subjects))
    if sizes and num_subjects is not None and num_subjects != n:
        raise InputError(f"num_subjects={num_subjects} but the fixed values are for {n} subjects")
    if n < 1:
        raise InputError("nothing to sample for zero subjects")
    if len(known) == len(names) and all(bool(k.z_mask.all()) for k in known.values()):
        raise InputError(f"every variable is fixed ({', '.join(names)}), so there is nothing to sample; "
                         "leave at least one variable free")
    return known, n


def _overwrite(model: JointModel, z: dict[str, torch.Tensor], known: dict[str, Known], level: int, b: int,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """RePaint: fixed entries take their known value re-noised to exactly ``level``."""
    if not known:
        return z
    t = torch.full((b,), level, device=model.device, dtype=torch.long)
    out = dict(z)
    for name, k in known.items():
        noisy = model.variables[name].renoise(k.z0, t, generator=generator)
        out[name] = torch.where(k.z_mask, noisy, z[name])
    return out


def _decode(model: JointModel, z: dict[str, torch.Tensor], known: dict[str, Known]) -> dict[str, torch.Tensor]:
    """z0 -> values, with known values returned exactly."""
    values = {}
    for name, var in model.variables.items():
        k = known.get(name)
        if k is not None and bool(k.value_mask.all()):
            values[name] = k.values  # fully known: no decode needed
            continue
        decoded = var.decode(z[name])
        values[name] = decoded if k is None else torch.where(k.value_mask, k.values.to(decoded.dtype), decoded)
    return {name: v.cpu() for name, v in values.items()}
