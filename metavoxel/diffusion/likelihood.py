"""Classification by likelihood: which class makes the record's denoising loss lowest.

For a categorical variable y with classes c = 1..K and the other variables' known values x, the joint
model's denoising loss is a Monte-Carlo estimate of a variational bound on -log p(x, y = c):

    score_c = (1 / J) Σ_j  L(x, y = c; t_j, ε_j),

the per-record loss of the spatial (image) variables at J timesteps t_j, stratified over 1..T
(t_j = ⌈(j + ½) T / J⌉), with the SAME noise ε_j, discrete corruption draws and missing-value noise for
every class (common random numbers), so score differences reflect the class and not the noise. The class
with the lowest score wins; the answer is deterministic for a given seed (no sampling chain).

Probabilities: p(c | x) = softmax_c(-τ · score_c). The temperature τ is fitted on held-out records by
minimising the negative log-likelihood of their true classes (`fit_temperature`, temperature scaling,
Guo et al. 2017), which makes the probabilities calibrated without changing the ranking.

This is the "zero-shot classifier" reading of a diffusion model (Li et al. 2023, "Your diffusion model
is secretly a zero-shot classifier"), applied to one variable of the joint model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from metavoxel.diffusion.joint import JointModel
from metavoxel.diffusion.process import Corrupted, JointDiffusion
from metavoxel.errors import InputError
from metavoxel.variables.capabilities import HasCategories

__all__ = ["class_probabilities", "class_scores", "fit_temperature"]


def _timesteps(total: int, count: int) -> list[int]:
    """J stratified timesteps in 1..T (midpoints of J equal strata)."""
    return [min(total, max(1, math.ceil((j + 0.5) * total / count))) for j in range(count)]


@torch.no_grad()
def class_scores(model: JointModel, fix: Mapping[str, Any], target: str, *, timesteps: int = 25, seed: int = 0,
                 terms: list[str] | None = None, batch_size: int = 64,
                 progress: Callable[[int, int], None] | None = None, seeds: Sequence[int] | None = None
                 ) -> torch.Tensor:
    """Mean denoising loss of every record under every class of ``target``: (N, K), lower is likelier.

    Args:
        model: the joint model (its current weights; put EMA weights in first).
        fix: variable -> raw values for N records; variables not given are treated as missing.
        target: a categorical variable of the model (it must not be in ``fix``).
        timesteps: J, the number of stratified timesteps averaged over.
        seed: seed of the shared noise; the same seed gives the same scores (a record's noise is keyed by
            its row, so its score depends on its position in ``fix``, not on ``batch_size``).
        seeds: one seed per record instead (e.g. `metavoxel.data.records.subject_seed`): a record's score
            then depends on nothing else in ``fix``.
        terms: the variables whose loss is scored (default: the spatial ones, i.e. the image).
        batch_size: records per network call (each call holds one record's K classes at one timestep).
        progress: ``progress(done, total)`` after each network call.
    """
    var = model.variables.get(target)
    classes = var.categories if isinstance(var, HasCategories) else None
    if var is None or classes is None:
        raise InputError(f"likelihood classification needs a categorical variable; {target!r} is "
                         f"{'not a variable' if var is None else 'not categorical'} of this model "
                         f"({', '.join(model.variables)})")
    if target in fix:
        raise InputError(f"{target!r} is the variable to classify; do not also fix it")
    if timesteps < 1:
        raise InputError(f"timesteps must be >= 1, got {timesteps}")
    terms = list(model.spatial) if terms is None else list(terms)
    diffusion, network = model.diffusion, model.net
    z0, present = diffusion.encode_batch(dict(fix))
    n, k = len(next(iter(present.values()))), len(classes)
    if seeds is not None and len(seeds) != n:
        raise InputError(f"seeds: expected one per record ({n}), got {len(seeds)}")
    seeds = None if seeds is None else [int(x) for x in seeds]

    def noise_seed(i: int, j: int) -> int:  # record i at the j-th timestep
        return (seed * 1009 + j) * 1_000_003 + i if seeds is None else (seeds[i] + j * 1_000_003) % 2**63

    grid = _timesteps(model.timesteps, timesteps)
    device = model.device
    scores = torch.zeros(n, k, dtype=torch.float64)
    per_call = max(1, batch_size // k)
    total, done = len(grid) * -(-n // per_call), 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, per_call):
            rows = torch.arange(start, min(n, start + per_call), device=device)
            b = len(rows)
            # every record repeated once per class: (b·K) rows, class-major within a record
            z_rep = {name: z[rows].repeat_interleave(k, dim=0) for name, z in z0.items()}
            p_rep = {name: p[rows].repeat_interleave(k, dim=0) for name, p in present.items()}
            z_rep[target] = torch.arange(k, device=device).repeat(b)
            p_rep[target] = torch.ones(b * k, dtype=torch.bool, device=device)
            for j, level in enumerate(grid):
                t = torch.full((b * k,), level, dtype=torch.long, device=device)
                noisy = _shared_noise(diffusion, z_rep, p_rep, t, b, k, [noise_seed(i, j) for i in range(start, start + b)])
                losses = diffusion.loss(network, noisy)
                loss = sum(losses[f"loss/{name}"] for name in terms)  # (b·K,)
                scores[start:start + b] += loss.double().reshape(b, k).cpu() / len(grid)
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        model.train(was_training)
    return scores


def _shared_noise(diffusion: JointDiffusion, z0, present, t, b: int, k: int, seeds: list[int]) -> Corrupted:
    """Corrupt (b·K) rows so that the K class copies of a record share every random draw.

    Row i·K + c is record i under class c. Each record's copies are corrupted with a generator seeded from
    ``seeds[i]``; the draws depend only on shapes, so a record gets the same noise under every class and
    whatever batch it is scored in.
    """
    copies = []
    for row in range(b * k):
        generator = torch.Generator(device=diffusion.device).manual_seed(seeds[row // k])
        one = slice(row, row + 1)
        copies.append(diffusion.corrupt({name: z[one] for name, z in z0.items()},
                                    {name: p[one] for name, p in present.items()}, t=t[one], generator=generator))
    z_t = {name: torch.cat([cp.z_t[name] for cp in copies]) for name in z0}
    targets = {name: torch.cat([cp.targets[name] for cp in copies]) for name in z0}
    levels = {name: torch.cat([cp.levels[name] for cp in copies]) for name in copies[0].levels}  # missing: T (`shown`)
    return Corrupted(z_t, targets, t, dict(present), levels)


def class_probabilities(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(-τ · scores) over classes: (N, K) probabilities."""
    return torch.softmax(-float(temperature) * scores.double(), dim=1)


def fit_temperature(scores: torch.Tensor, truth: torch.Tensor, *, lo: float = 1e-3, hi: float = 1e5) -> float:
    """The τ > 0 minimising the mean NLL of the true classes under `class_probabilities` (golden section on log τ)."""
    truth = torch.as_tensor(truth, dtype=torch.long)
    if len(truth) == 0:
        raise InputError("fit_temperature needs at least one record with a known class")

    def nll(log_tau: float) -> float:
        logp = torch.log_softmax(-math.exp(log_tau) * scores.double(), dim=1)
        return float(-logp[torch.arange(len(truth)), truth].mean())

    a, b = math.log(lo), math.log(hi)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)
