"""Point predictions in a few network calls: the model's x0 prediction of free variables given clean ones.

A model trained with clean subsets (`metavoxel.diffusion.mixture`) has seen "targets at level T (prior
noise) beside clean conditions". One network call there predicts, for a Gaussian (eps-parameterised)
variable, x0 = (z_T - sqrt(1 - abar_T) eps) / sqrt(abar_T) — an estimate of the posterior mean
E[x0 | conditions] (the MSE-optimal eps gives it exactly) — and for a D3PM variable the x0 logits, whose
softmax is p(x0 | conditions). Averaging over a few prior-noise draws removes the dependence on the one
z_T drawn. The UniDiffuser idea (Bao et al. 2023) read at its first step instead of walking the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from metavoxel.diffusion.conditioning import Conditions
from metavoxel.diffusion.known import Known
from metavoxel.errors import InputError
from metavoxel.variables.fast_path import FusedDiscrete, FusedGaussian, GaussianFastPath
from metavoxel.variables.protocol import Variable

__all__ = ["PointPrediction", "point_predict"]


@dataclass
class PointPrediction:
    """Point predictions per subject.

    Attributes:
        mean: Gaussian variable -> posterior mean in value space, (N, ...) (e.g. age in years (N,)).
        probs: D3PM variable -> class probabilities (N, K).
        draws: prior-noise draws averaged; network_calls: forwards run (each over up to ``batch_size`` rows).
    """

    mean: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor]
    draws: int
    network_calls: int


def point_predict(variables: Mapping[str, Variable], network: Callable, known: Mapping[str, Known], n: int,
                  targets: list[str], *, timesteps: int, draws: int, generator: torch.Generator,
                  device: torch.device, batch_size: int | None = None) -> PointPrediction:
    """Posterior means and class probabilities of ``targets`` for N subjects from ``draws`` prior draws each.

    Fixed variables enter clean at level 0 (partly known images through keep-mask channels); every free
    variable, target or not, enters as prior noise at level T. All N · draws rows go through the network
    in one forward (or chunks of ``batch_size`` rows).

    Args:
        variables: the model's variables.
        network: ``network(z, t[, keep])``.
        known: the fixed variables, one row per subject (validated by `known_values`).
        n: N subjects.
        targets: the variables to predict (Gaussian or D3PM kinds, declared by their fast-path capability).
        timesteps: T.
        draws: prior-noise draws per subject (D).
        generator, device: random draws and where states live.
        batch_size: rows per network call (default all N · D).

    Raises:
        InputError: a target whose kind declares neither a Gaussian nor a D3PM process.
    """
    paths = {}
    for name in targets:
        var = variables[name]
        gauss = var.gaussian_fast_path() if isinstance(var, FusedGaussian) else None
        disc = var.discrete_fast_path() if isinstance(var, FusedDiscrete) else None
        if gauss is None and disc is None:
            raise InputError(f"point prediction reads a Gaussian (eps) or D3PM (x0-logit) prediction; {name!r} "
                             f"(kind {var.kind}) declares neither; sample it instead (--method sample)")
        paths[name] = gauss or disc
    rows = n * draws
    known = {name: k.repeat(draws) for name, k in known.items()}  # row i * D + d: subject i, draw d
    z = {name: var.prior(rows, generator=generator, device=device) for name, var in variables.items()}
    batch_size = rows if batch_size is None else max(1, int(batch_size))
    sums: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
    calls = 0
    for start in range(0, rows, batch_size):
        part = slice(start, min(rows, start + batch_size))
        b = part.stop - part.start
        conditions = Conditions(variables, {k: v.rows(part) for k, v in known.items()}, "clean", timesteps, b)
        z_part = conditions.hold({name: v[part] for name, v in z.items()})
        t = torch.full((b,), int(timesteps), device=device, dtype=torch.long)
        levels = conditions.levels(t)
        out = network(z_part, levels, conditions.keep) if conditions.keep else network(z_part, levels)
        calls += 1
        for name in targets:
            path = paths[name]
            if isinstance(path, GaussianFastPath):
                x0 = path.process.predict_x0(z_part[name], out[name].float(), t)
                sums[name].append(x0 if path.x0_range is None else x0.clamp(*path.x0_range))
            else:
                sums[name].append(torch.softmax(out[name].float(), dim=-1))  # (b, K)
    mean, probs = {}, {}
    for name in targets:
        stacked = torch.cat(sums[name]).reshape(n, draws, *sums[name][0].shape[1:]).mean(dim=1)  # (N, ...)
        if isinstance(paths[name], GaussianFastPath):
            mean[name] = variables[name].decode(stacked).cpu()
        else:
            probs[name] = stacked.cpu()
    return PointPrediction(mean, probs, draws, calls)
