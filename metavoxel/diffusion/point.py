"""Point predictions in a few network calls: posterior means and class probabilities under clean conditioning.

A model trained with clean subsets (`metavoxel.diffusion.mixture`) has learnt, for a free variable at level
t beside clean conditions c, the x0 prediction x0_hat(z_t, t, c) ≈ E[x0 | z_t, c] — for a Gaussian
(eps-parameterised) variable x0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), for a D3PM variable
the softmax of its x0 logits, p(x0 | z_t, c). By the tower rule, averaging it over z_t ~ p(z_t | c) gives
the posterior mean E[x0 | c] (Tweedie's formula averaged over the noisy state; the idea of reading the
network's x0 instead of walking the chain, UniDiffuser, Bao et al. 2023).

Reading it at t = T alone (z_T is prior noise) is exact in principle and poor in practice for an
eps-parameterised variable: 1 / sqrt(abar_T) is ~80 for the scaled_linear schedule, so every error of
eps_hat is amplified as much. `point_predict` therefore *renoises and reads*:

1. call 1 at level T: free variables prior noise, fixed ones clean at level 0; read x0_hat (clipped to the
   variable's declared range) and the class probabilities;
2. call k = 2..K at a lower level t_k: each target re-noised from its current estimate with fresh noise,
   z_{t_k} = sqrt(abar) m + sqrt(1 - abar) eps (a D3PM target from a class drawn from its current
   probabilities), every free non-target walked by its kind's own ``reverse_step``; read again.

At t_k with sqrt(abar) near 0.5 an eps error moves x0_hat by about 1.7x itself instead of ~80x, and the
state carries the previous estimate only weakly: E[x0_hat] ≈ (1 - w) E[x0 | c] + w m with
w = SNR_t / (SNR_t + 1 / Var[x0 | c]) (Gaussian algebra), small when the conditions pin x0 down and
shrinking geometrically over calls when they do not. All levels share one step for every free variable,
which is the mixture's ``clean`` recipe ("a subset clean, the rest at one t"). The answer: the last call's
x0_hat (Gaussian) and the mean of every call's probabilities (D3PM), averaged over ``draws`` chains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from metavoxel.diffusion.conditioning import Conditions
from metavoxel.diffusion.known import Known
from metavoxel.errors import InputError
from metavoxel.variables.fast_path import FusedDiscrete, FusedGaussian, GaussianFastPath
from metavoxel.variables.protocol import Variable

__all__ = ["MAX_CALLS", "READ_LEVELS", "PointPrediction", "point_levels", "point_predict"]

#: Network calls per subject a point prediction may spend (draws x levels).
MAX_CALLS = 5
#: The default read levels as fractions of T: the prior, then one level where sqrt(abar) ~ 0.55 for the
#: scaled_linear schedule (abar_t ~ 0.3 at t = 0.36 T). Measured on the toy: benchmarks/RESULTS.md.
READ_LEVELS = (1.0, 0.36)


@dataclass
class PointPrediction:
    """Point predictions per subject.

    Attributes:
        mean: Gaussian variable -> posterior mean in value space, (N, ...) (e.g. age in years (N,)).
        probs: D3PM variable -> class probabilities (N, K).
        draws: independent chains averaged per subject (D).
        levels: the steps read, T first (K of them).
        network_calls: forwards run (each over up to ``batch_size`` rows); per subject D * K rows.
    """

    mean: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor]
    draws: int
    levels: tuple[int, ...]
    network_calls: int


def point_levels(timesteps: int, levels: Sequence[int] | None, draws: int) -> tuple[int, ...]:
    """The steps to read at, checked: T first, strictly decreasing, >= 1, and draws * len <= `MAX_CALLS`.

    Args:
        timesteps: T.
        levels: integer steps (time convention of `metavoxel.processes.schedules`), or None for
            `READ_LEVELS` (fractions of T, rounded).
        draws: D, chains per subject.

    Raises:
        InputError: levels that break one of the rules above, or a budget over `MAX_CALLS` calls per subject.
    """
    T = int(timesteps)
    if levels is None:
        levels = [max(1, round(f * T)) for f in READ_LEVELS]
    levels = tuple(int(t) for t in levels)
    if not levels or levels[0] != T or any(b >= a for a, b in zip(levels, levels[1:])) or levels[-1] < 1:
        raise InputError(f"point prediction levels must start at T = {T} (prior noise), decrease strictly and stay "
                         f">= 1, got {list(levels)}; e.g. [{T}, {max(1, round(READ_LEVELS[1] * T))}]")
    if not 1 <= draws or draws * len(levels) > MAX_CALLS:
        raise InputError(f"draws x levels must be between 1 and {MAX_CALLS} network calls per subject, got "
                         f"{draws} x {len(levels)}; lower draws (e.g. {max(1, MAX_CALLS // len(levels))}) or levels")
    return levels


def point_predict(variables: Mapping[str, Variable], network: Callable, known: Mapping[str, Known], n: int,
                  targets: list[str], *, timesteps: int, draws: int, generator: torch.Generator,
                  device: torch.device, levels: Sequence[int] | None = None,
                  batch_size: int | None = None) -> PointPrediction:
    """Posterior means and class probabilities of ``targets`` for N subjects: renoise-and-read (module doc).

    Fixed variables enter clean at level 0 (partly known images through keep-mask channels) at every call.
    The N · D rows go through the network together (or in chunks of ``batch_size`` rows), once per level.

    Args:
        variables: the model's variables.
        network: ``network(z, t[, keep])``.
        known: the fixed variables, one row per subject (validated by `known_values`).
        n: N subjects.
        targets: the variables to predict (Gaussian or D3PM kinds, declared by their fast-path capability).
        timesteps: T.
        draws: D, independent chains per subject.
        generator, device: random draws and where states live.
        levels: the steps read, T first, strictly decreasing (default `READ_LEVELS`; see `point_levels`).
        batch_size: rows per network call (default all N · D).

    Returns:
        A `PointPrediction`: ``mean[name]`` (N, ...) in value space, ``probs[name]`` (N, K).

    Raises:
        InputError: a target whose kind declares neither a Gaussian nor a D3PM process, or bad ``levels``/``draws``.
    """
    levels = point_levels(timesteps, levels, draws)
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
    batch_size = rows if batch_size is None else max(1, int(batch_size))
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
    calls = 0
    for start in range(0, rows, batch_size):
        part = slice(start, min(rows, start + batch_size))
        chunk = {k: v.rows(part) for k, v in known.items()}
        answer, used = _read_chunk(variables, network, chunk, paths, part.stop - part.start, levels, generator, device)
        calls += used
        for name, value in answer.items():
            parts[name].append(value)
    mean, probs = {}, {}
    for name in targets:
        stacked = torch.cat(parts[name]).reshape(n, draws, *parts[name][0].shape[1:]).mean(dim=1)  # (N, ...)
        if isinstance(paths[name], GaussianFastPath):
            mean[name] = variables[name].decode(stacked).cpu()
        else:
            probs[name] = stacked.cpu()
    return PointPrediction(mean, probs, draws, levels, calls)


def _read_chunk(variables: Mapping[str, Variable], network: Callable, known: Mapping[str, Known], paths: Mapping,
                rows: int, levels: tuple[int, ...], generator: torch.Generator, device: torch.device
                ) -> tuple[dict[str, torch.Tensor], int]:
    """One chunk of rows through every level: the targets' x0 (rows, *z) or mean probabilities (rows, K)."""
    conditions = Conditions(variables, known, "clean", levels[0], rows)
    free = [name for name in variables if name not in conditions.held or not bool(conditions.held[name].all())]
    z = {name: var.prior(rows, generator=generator, device=device) for name, var in variables.items()}
    estimate: dict[str, torch.Tensor] = {}
    probs: dict[str, list[torch.Tensor]] = {name: [] for name, p in paths.items() if not isinstance(p, GaussianFastPath)}
    out: Mapping[str, torch.Tensor] = {}
    previous = None
    for i, level in enumerate(levels):
        t = torch.full((rows,), level, device=device, dtype=torch.long)
        if i > 0:
            for name in free:
                var = variables[name]
                if name not in paths:  # a free non-target walks its own reverse process
                    z[name] = var.reverse_step(z[name], out[name], previous, t, eta=0.0, generator=generator)
                elif isinstance(paths[name], GaussianFastPath):
                    z[name] = var.renoise(estimate[name], t, generator=generator)
                else:  # D3PM: re-noise a class drawn from the current probabilities
                    drawn = torch.multinomial(estimate[name], 1, generator=generator)[:, 0]  # (rows,)
                    z[name] = var.renoise(drawn.to(z[name].dtype), t, generator=generator)
        z = conditions.hold(z)
        levels_in = conditions.levels(t)
        out = network(z, levels_in, conditions.keep) if conditions.keep else network(z, levels_in)
        for name, path in paths.items():
            held = conditions.held.get(name)  # (rows,) rows where this target is given: its value, as is
            if isinstance(path, GaussianFastPath):
                x0 = path.process.predict_x0(z[name], out[name].float(), t)
                x0 = x0 if path.x0_range is None else x0.clamp(*path.x0_range)
                estimate[name] = x0 if held is None else torch.where(_expand(held, x0), z[name].to(x0.dtype), x0)
            else:
                p = torch.softmax(out[name].float(), dim=-1)  # (rows, K)
                if held is not None:
                    given = torch.nn.functional.one_hot(z[name].long(), p.shape[-1]).to(p.dtype)
                    p = torch.where(held[:, None], given, p)
                estimate[name] = p
                probs[name].append(p)
        previous = t
    answer = {name: torch.stack(p).mean(dim=0) for name, p in probs.items()}
    answer.update({name: estimate[name] for name, p in paths.items() if isinstance(p, GaussianFastPath)})
    return answer, len(levels)


def _expand(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool -> broadcastable against ``like`` (B, ...)."""
    return rows.reshape(-1, *([1] * (like.dim() - 1)))
