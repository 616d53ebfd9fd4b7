"""Point predictions in a few network calls: posterior means and class probabilities under clean conditioning.

A model trained with clean subsets (`metavoxel.diffusion.mixture`) has learnt, for a free variable at level
t beside clean conditions c, the x0 prediction x0_hat(z_t, t, c) ≈ E[x0 | z_t, c] — for a Gaussian
(eps-parameterised) variable x0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), for a D3PM variable
the softmax of its x0 logits, p(x0 | z_t, c). Averaged over z_t ~ p(z_t | c) it is the posterior mean
E[x0 | c] (the tower rule; reading the network's x0 instead of walking the chain is the UniDiffuser idea,
Bao et al. 2023).

Reading it at t = T alone (z_T is prior noise) is exact in principle and poor in practice for an
eps-parameterised variable: 1 / sqrt(abar_T) is ~80 for the scaled_linear schedule at T = 1000, so every
error of eps_hat is amplified as much. `point_predict` therefore *renoises and reads* over a few levels
T = t_1 > t_2 > ... > t_K, with D_k draws at level t_k:

1. level T: every free variable prior noise, the fixed ones clean at level 0; read x0_hat (clipped to the
   variable's declared range) and the class probabilities, and average them over the D_1 draws into one
   estimate per subject;
2. level t_k, k >= 2: each free variable re-noised from that shared estimate with fresh noise in each of
   D_k draws, z = sqrt(abar) m + sqrt(1 - abar) eps (a D3PM variable from a class drawn from its
   estimated probabilities); read again and average into the next estimate.

At sqrt(abar_t) ~ 0.7 an eps error moves x0_hat by about itself instead of ~80x, and the state carries
the previous estimate only weakly: E[x0_hat] ≈ (1 - w) E[x0 | c] + w m with w = SNR_t / (SNR_t +
1 / Var[x0 | c]) (Gaussian algebra), near 0 when the conditions pin x0 down and shrinking over levels when
they do not. Every free variable shares each call's level, the mixture's ``clean`` recipe ("a subset
clean, the rest at one t"). A free variable whose kind declares neither process cannot be re-noised from
an estimate: it enters every call as fresh prior noise at level T. The answer: the last level's x0_hat
(Gaussian) and the mean probabilities of every call (D3PM), each averaged over its draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metavoxel.diffusion.blend import seamless_paste
from metavoxel.diffusion.conditioning import Conditions, clean_refusal
from metavoxel.diffusion.known import Known, known_values
from metavoxel.diffusion.options import PointOptions
from metavoxel.diffusion.sampler import Streams, autocast_network
from metavoxel.errors import InputError, OptionError
from metavoxel.variables.fast_path import DiscreteFastPath, FusedDiscrete, FusedGaussian, GaussianFastPath
from metavoxel.variables.decoded import checked_decode
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["MAX_CALLS", "READ_LEVELS", "PointPrediction", "point_plan", "point_predict", "predict_point"]

#: Network calls per subject a point prediction may spend (the sum of the draws over the levels).
MAX_CALLS = 5
#: The default plan: (level as a fraction of T, draws). For the scaled_linear schedule at T = 1000,
#: abar is ~0.1 at 0.52 T and ~0.5 at 0.26 T. Chosen on a validation draw of the toy (benchmarks/RESULTS.md).
READ_LEVELS = ((1.0, 1), (0.52, 2), (0.26, 2))


@dataclass
class PointPrediction:
    """Point predictions per subject.

    Attributes:
        mean: Gaussian variable -> posterior mean in value space, (N, ...) (e.g. age in years (N,)).
        probs: D3PM variable -> class probabilities (N, K).
        levels: the steps read, T first (K of them).
        draws: draws per subject at each level (D_1..D_K); their sum is the network calls per subject.
        network_calls: forwards run (each over up to ``batch_size`` rows).
    """

    mean: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor]
    levels: tuple[int, ...]
    draws: tuple[int, ...]
    network_calls: int

    @property
    def calls_per_subject(self) -> int:
        return sum(self.draws)


def point_plan(timesteps: int, levels: Sequence[int] | None = None, draws: int | Sequence[int] | None = None
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The levels and draws per level, checked: T first, strictly decreasing, >= 1, <= `MAX_CALLS` calls.

    Args:
        timesteps: T.
        levels: integer steps (time convention of `metavoxel.processes.schedules`), or None for the levels
            of `READ_LEVELS` (fractions of T, rounded).
        draws: draws per level — one int for every level, one per level, or None (`READ_LEVELS`' draws
            with its levels, else 1 per level).

    Returns:
        ``(levels, draws)``, equal-length tuples.

    Raises:
        InputError: levels that break one of the rules above, draws < 1 or of another length, or more than
            `MAX_CALLS` network calls per subject.
    """
    T = int(timesteps)
    default = levels is None
    if default:
        levels = [max(1, round(f * T)) for f, _ in READ_LEVELS]
    levels = tuple(int(t) for t in levels)
    suggestion = [max(1, round(f * T)) for f, _ in READ_LEVELS]
    if not levels or levels[0] != T or any(b >= a for a, b in zip(levels, levels[1:])) or levels[-1] < 1:
        raise InputError(f"point prediction levels must start at T = {T} (prior noise), decrease strictly and stay "
                         f">= 1, got {list(levels)}; e.g. {suggestion}")
    if draws is None:
        draws = tuple(d for _, d in READ_LEVELS) if default else (1,) * len(levels)
    elif isinstance(draws, int):
        draws = (draws,) * len(levels)
    draws = tuple(int(d) for d in draws)
    if len(draws) != len(levels) or min(draws) < 1 or sum(draws) > MAX_CALLS:
        raise InputError(f"point prediction takes between 1 and {MAX_CALLS} network calls per subject, one draw or "
                         f"more at each of its {len(levels)} levels; got draws {list(draws)} for levels "
                         f"{list(levels)}; give fewer draws or levels")
    return levels, draws


@torch.no_grad()
def predict_point(process: Any, network: Callable, fix: Mapping[str, Any], targets: list[str] | str | None = None, *,
                  masks: Mapping[str, Any] | None = None, options: PointOptions | None = None) -> PointPrediction:
    """Posterior means (Gaussian kinds) and class probabilities (D3PM kinds) of ``targets`` given ``fix``.

    The request side of `point_predict` (module docstring): the fixed values validated and encoded once, the
    plan checked, clean conditioning required.

    Args:
        process: the `metavoxel.diffusion.process.JointDiffusion` (variables, T, mixture, device, seed).
        network: ``network(z, t[, keep])`` in inference mode.
        fix: variable -> raw values for N subjects.
        targets: variables to predict (default: every variable not fixed).
        masks: image variable -> keep-mask, as in sampling (needs a model trained with keep-masks).
        options: seeds, batch size, precision and the plan (`PointOptions`).

    Returns:
        A `PointPrediction` with ``mean[name]`` (N, ...) in value space and ``probs[name]`` (N, K).

    Raises:
        OptionError: a model trained without clean subsets, a request clean conditioning cannot hold, or
            ``seeds`` not one per subject.
        InputError: an unknown target, or a plan over `MAX_CALLS` network calls per subject.
    """
    options = PointOptions() if options is None else options
    if process.mixture.clean <= 0:
        raise OptionError("point prediction needs a model trained with clean subsets (diffusion.training.clean "
                          "> 0), this one was not; sample instead ({method} sample) or retrain", "method")
    levels, draws = point_plan(process.timesteps, options.levels, options.draws)
    known, n = known_values(process.variables, dict(fix), dict(masks or {}), None, process.device)
    reason = clean_refusal(process, known, point=True)
    if reason is not None:
        raise reason
    targets = [targets] if isinstance(targets, str) else targets
    free = [name for name in process.variables if name not in known or not known[name].complete]
    targets = free if targets is None else list(targets)
    unknown = [t for t in targets if t not in process.variables]
    if unknown:
        raise InputError(f"unknown target(s) {', '.join(unknown)}; this model has {', '.join(process.variables)}")
    if options.seeds is not None:
        if len(options.seeds) != n:
            raise OptionError(f"{{seeds}}: expected one per subject ({n}), got {len(options.seeds)}", "seeds")
        generator: torch.Generator | list[torch.Generator] = [
            torch.Generator(device=process.device).manual_seed(x) for x in options.seeds]
    else:
        generator = torch.Generator(device=process.device).manual_seed(
            process.seed if options.seed is None else options.seed)
    if options.precision == "bf16":
        network = autocast_network(network, process.device)
    return point_predict(process.variables, network, known, n, targets, timesteps=process.timesteps,
                         levels=levels, draws=draws, generator=generator, device=process.device,
                         batch_size=options.batch_size)


def point_predict(variables: Mapping[str, Variable], network: Callable, known: Mapping[str, Known], n: int,
                  targets: list[str], *, timesteps: int, generator: torch.Generator | Sequence[torch.Generator],
                  device: torch.device,
                  levels: Sequence[int] | None = None, draws: int | Sequence[int] | None = None,
                  batch_size: int | None = None) -> PointPrediction:
    """Posterior means and class probabilities of ``targets`` for N subjects: renoise-and-read (module doc).

    Fixed variables enter clean at level 0 at every call; a partly known image enters through its keep-mask
    channels, its kept voxels re-noised from z0 at each level as training draws them.
    Subjects go through the network together at each level (or in chunks of about ``batch_size`` rows).

    Args:
        variables: the model's variables.
        network: ``network(z, t[, keep])``.
        known: the fixed variables, one row per subject (validated by `known_values`).
        n: N subjects.
        targets: the variables to predict (Gaussian or D3PM kinds, declared by their fast-path capability).
        timesteps: T.
        generator, device: random draws and where states live; ``generator`` may be one per subject (N), so
            that a subject's answer does not depend on the other subjects.
        levels, draws: the plan (`point_plan`; default `READ_LEVELS`: T, 0.52 T, 0.26 T with 1, 2, 2 draws).
        batch_size: rows per network call (default all N · max(draws)).

    Returns:
        A `PointPrediction`: ``mean[name]`` (N, ...) in value space, ``probs[name]`` (N, K); a partly known
        image's kept voxels exactly, pasted as `sample` pastes them (`metavoxel.diffusion.blend`).

    Raises:
        InputError: a target whose kind declares neither a Gaussian nor a D3PM process, or a bad plan.
    """
    levels, draws = point_plan(timesteps, levels, draws)
    paths = {name: _path(var) for name, var in variables.items()}
    for name in targets:
        if paths[name] is None:
            var = variables[name]
            raise OptionError(f"point prediction reads a Gaussian (eps) or D3PM (x0-logit) prediction; {name!r} "
                              f"(kind {var.kind}) declares neither; sample it instead ({{method}} sample)", "method")
    per_chunk = n if batch_size is None else max(1, int(batch_size) // max(draws))  # subjects per forward
    own = not isinstance(generator, torch.Generator)
    if own and len(generator) != n:
        raise InputError(f"point prediction: expected one generator per subject ({n}), got {len(generator)}")
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
    calls = 0
    for start in range(0, n, per_chunk):
        subjects = slice(start, min(n, start + per_chunk))
        chunk = {k: v.rows(subjects) for k, v in known.items()}
        gens = list(generator[subjects]) if own else generator
        answer = _read_chunk(variables, network, chunk, paths, subjects.stop - subjects.start, levels, draws,
                             gens, device)
        calls += len(levels)
        for name in targets:
            parts[name].append(answer[name])
    mean, probs = {}, {}
    for name in targets:
        value = torch.cat(parts[name])  # (N, ...)
        if isinstance(paths[name], GaussianFastPath):
            decoded = checked_decode(variables[name], value)
            k = known.get(name)
            if k is not None and isinstance(variables[name].head, SpatialHead):  # a partly known image, as sample
                decoded = seamless_paste(decoded, k.values, k.value_mask)
            mean[name] = decoded.cpu()
        else:
            probs[name] = value.cpu()
    return PointPrediction(mean, probs, levels, draws, calls)


def _path(var: Variable) -> GaussianFastPath | DiscreteFastPath | None:
    """The process a point prediction reads and re-noises ``var`` with, or None when its kind declares none."""
    gauss = var.gaussian_fast_path() if isinstance(var, FusedGaussian) else None
    disc = var.discrete_fast_path() if isinstance(var, FusedDiscrete) else None
    return gauss or disc


def _read_chunk(variables: Mapping[str, Variable], network: Callable, known: Mapping[str, Known], paths: Mapping,
                n: int, levels: tuple[int, ...], draws: tuple[int, ...],
                generator: torch.Generator | list[torch.Generator], device: torch.device) -> dict[str, torch.Tensor]:
    """N subjects through every level: each readable free variable's estimate, x0 (N, *z) or probabilities (N, K)."""
    estimate: dict[str, torch.Tensor] = {}  # name -> (N, *z) x0 or (N, K) probabilities, shared by the draws
    probs: dict[str, list[torch.Tensor]] = {}
    for level, d in zip(levels, draws):
        rows = n * d
        rows_known = {name: k.repeat(d) for name, k in known.items()}  # row i * d + j: subject i, draw j
        conditions = Conditions(variables, rows_known, "clean", levels[0], rows)
        free = [name for name in variables if name not in conditions.held or not bool(conditions.held[name].all())]
        t = torch.full((rows,), level, device=device, dtype=torch.long)
        per_subject = isinstance(generator, list)
        streams = Streams([(d, g) for g in generator]) if per_subject else Streams.single(rows, generator)

        def draw(part: slice, gen: torch.Generator) -> dict[str, torch.Tensor]:  # one block's draws, fixed order
            b = part.stop - part.start
            zp = {name: var.prior(b, generator=gen, device=device) for name, var in variables.items()}
            # with one generator per subject every readable variable is re-noised (held rows are put back by
            # `hold`), so a subject's draws do not depend on which variables other subjects leave free
            for name in (list(variables) if per_subject else free):
                if name not in estimate:
                    continue  # the first level (prior noise), or a kind without a readable process
                m = estimate[name].repeat_interleave(d, dim=0)[part]  # (b, ...)
                if isinstance(paths[name], GaussianFastPath):
                    zp[name] = variables[name].renoise(m.to(zp[name].dtype), t[part], generator=gen)
                else:  # D3PM: re-noise a class drawn from the estimated probabilities
                    drawn = torch.multinomial(m, 1, generator=gen)[:, 0]  # (b,)
                    zp[name] = variables[name].renoise(drawn.to(zp[name].dtype), t[part], generator=gen)
            return zp

        z = streams.each(draw)
        z = conditions.hold(z)
        given = conditions.levels(t)
        given = {name: given[name] if isinstance(given, dict) else t for name in variables}
        for name in free:
            if paths[name] is None:  # no estimate to re-noise from: fresh prior noise, and the network is told so
                given[name] = torch.where(conditions.held.get(name, torch.zeros_like(t, dtype=torch.bool)),
                                          given[name], torch.full_like(t, levels[0]))
        out = network(z, given, conditions.keep) if conditions.keep else network(z, given)
        for name, path in paths.items():  # a fully given variable too: a target may be one
            if path is None:
                continue
            held = conditions.held.get(name)  # (rows,) rows where this variable is given: its value, as is
            if isinstance(path, GaussianFastPath):
                x0 = path.process.x0_from(z[name], out[name].float(), t, path.prediction)
                x0 = x0 if path.x0_range is None else x0.clamp(*path.x0_range)
                value = x0 if held is None else torch.where(_expand(held, x0), z[name].to(x0.dtype), x0)
                if name in conditions.keep:  # a partly known image: the next level re-noises its kept voxels from z0
                    k = rows_known[name]
                    value = torch.where(k.z_mask, k.z0.to(value.dtype), value)
            else:
                value = torch.softmax(out[name].float(), dim=-1)  # (rows, K)
                if held is not None:
                    one_hot = torch.nn.functional.one_hot(z[name].long(), value.shape[-1]).to(value.dtype)
                    value = torch.where(held[:, None], one_hot, value)
                probs.setdefault(name, []).append(value)
            estimate[name] = value.reshape(n, d, *value.shape[1:]).mean(dim=1)  # (N, ...)
    answer = {name: _mean_over_calls(p, n) for name, p in probs.items()}
    answer.update({name: e for name, e in estimate.items() if isinstance(paths[name], GaussianFastPath)})
    return answer


def _mean_over_calls(parts: list[torch.Tensor], n: int) -> torch.Tensor:
    """(N, K): the mean of every call's (N · D_k, K) probabilities, each row of a subject weighted alike."""
    rows = torch.cat([p.reshape(n, -1, p.shape[-1]) for p in parts], dim=1)  # (N, sum D_k, K)
    return rows.mean(dim=1)


def _expand(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool -> broadcastable against ``like`` (B, ...)."""
    return rows.reshape(-1, *([1] * (like.dim() - 1)))
