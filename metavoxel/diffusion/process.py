"""The process piece of the engine: how noise comes (training) and goes (sampling) for every variable.

`JointDiffusion` is built from plain values — the variables, the schedule length T, the kernel backend
and the device — and takes the network as an argument wherever one is needed, the habit of
improved-diffusion's ``GaussianDiffusion`` and MONAI's inferers. Each variable corrupts, steps and
re-noises itself (its kind's methods); variables that declare the fused fast path are handled together
by `metavoxel.diffusion.fused`. Time follows `metavoxel.processes.schedules` (integer steps 0..T).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.conditioning import CONDITIONING_MODES
from metavoxel.diffusion.known import known_values
from metavoxel.diffusion.mixture import LevelMixture, draw_levels, keep_mask
from metavoxel.diffusion.point import PointPrediction, point_plan, point_predict
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import Network, Streams, decode, reverse_chain
from metavoxel.errors import InputError
from metavoxel.seeds import check_seed
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["Corrupted", "JointDiffusion"]


@dataclass
class Corrupted:
    """Records at their training levels.

    Attributes:
        z_t: name -> state (B, *z).
        targets: name -> what the kind's loss compares the output with.
        t: (B,) the image grid's step (the paper's one shared t when ``levels`` is empty).
        present: name -> (B,) bool, the value was observed.
        levels: name -> (B,) each variable's own step; empty = every variable at ``t``.
        keep: image variable -> (B, 2C, *grid) keep-mask channels [mask, mask * z0]; empty = none.
    """

    z_t: dict[str, torch.Tensor]
    targets: dict[str, Any]
    t: torch.Tensor
    present: dict[str, torch.Tensor]
    levels: dict[str, torch.Tensor] = field(default_factory=dict)
    keep: dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, index: torch.Tensor | slice) -> Corrupted:
        """The same records restricted to ``index`` (e.g. one rank's share of a global batch)."""
        take = lambda x: x[index] if isinstance(x, torch.Tensor) else x  # noqa: E731
        part = lambda d: {k: take(v) for k, v in d.items()}  # noqa: E731
        return Corrupted(part(self.z_t), part(self.targets), take(self.t), part(self.present), part(self.levels),
                         part(self.keep))

    def level(self, name: str) -> torch.Tensor:
        """(B,) the step of variable ``name``."""
        return self.levels.get(name, self.t)


class JointDiffusion:
    """Corruption, the joint training loss and zero-shot sampling over a set of variables.

    Args:
        variables: name -> built `Variable`, in the model's order.
        timesteps: T, the number of diffusion steps.
        kernels: backend of the fused noising/stepping kernels: ``auto`` | ``triton`` | ``torch``.
        device: where states are created.
        loss_weights: name -> weight of its term in the total loss (default 1 each).
        sampling_steps, eta, seed: sampling defaults (reverse steps, DDIM eta, RNG seed).
        grid: the default spacing of the sampling grid, ``uniform`` or ``quadratic``
            (`metavoxel.diffusion.grid.time_grid`).
        mixture: how training draws per-variable levels (default: the paper's one shared t).
        conditioning: the default sampling mode, ``repaint`` or ``clean``.
    """

    def __init__(self, variables: Mapping[str, Variable], timesteps: int, *, kernels: str = "auto",
                 device: torch.device | str = "cpu", loss_weights: Mapping[str, float] | None = None,
                 sampling_steps: int = 50, eta: float = 1.0, seed: int = 0, mixture: LevelMixture | None = None,
                 conditioning: str = "repaint", grid: str = "uniform"):
        self.variables = dict(variables)
        self.timesteps = int(timesteps)
        self.kernels = kernels
        self.device = torch.device(device)
        self.loss_weights = {n: 1.0 for n in self.variables} | dict(loss_weights or {})
        self.sampling_steps, self.eta, self.seed = int(sampling_steps), float(eta), int(seed)
        self.mixture = LevelMixture() if mixture is None else mixture
        self.conditioning, self.grid = conditioning, grid
        spatial = [n for n, v in self.variables.items() if isinstance(v.head, SpatialHead)]
        self.groups = ([spatial] if spatial else []) + [[n] for n in self.variables if n not in spatial]

    def gaussian_group(self) -> GaussianGroup:
        return GaussianGroup(self.variables, self.kernels, self.device)

    def categorical_group(self) -> CategoricalGroup:
        return CategoricalGroup(self.variables, self.kernels, self.device)

    # -- training -------------------------------------------------------------------------------
    def encode_batch(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Raw values of B records -> (z0, present) per variable. A variable absent from ``batch`` is missing."""
        unknown = sorted(set(batch) - set(self.variables))
        if unknown:
            raise InputError(f"unknown variable(s) {', '.join(unknown)}; this model has {', '.join(self.variables)}")
        device, z0, present, sizes = self.device, {}, {}, {}
        for name, var in self.variables.items():
            if name in batch:
                values, present[name] = var.values(batch[name], device)
                z0[name] = var.encode(values)
                sizes[name] = len(present[name])
        if not sizes or len(set(sizes.values())) != 1:
            raise InputError(f"every variable in a batch needs the same number of records, got {sizes or 'none'}")
        n = next(iter(sizes.values()))
        for name, var in self.variables.items():
            if name not in batch:  # missing for every record: any placeholder, masked from the loss
                z0[name] = var.prior(n, generator=None, device=device)
                present[name] = torch.zeros(n, dtype=torch.bool, device=device)
        return z0, present

    def corrupt(self, z0: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], *,
                t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Corrupted:
        """The forward half of the joint loss: levels per record, each variable corrupted by its kind.

        With the paper's recipe (or an explicit ``t``) every variable shares one t ~ U[1, T]; otherwise
        the levels come from the spec's mixture (`metavoxel.diffusion.mixture.draw_levels`) and the noised
        image of a record gets a random keep-mask with probability ``keep_masks``. A missing variable is
        replaced by fresh prior noise (the network sees noise where it knows nothing); outside the paper's
        recipe it is also told so, at level T — except a missing image while another image of the record is
        present: the images share the U-Net's one level, so it keeps the group's level (prior noise at that
        level, the paper's way of showing a missing value; see `shown`).
        """
        n = len(next(iter(present.values())))
        device = next(iter(present.values())).device
        paper, drawn = self.mixture.is_paper, t is None
        if t is None and not paper:
            _, levels = draw_levels(self.groups, n, self.timesteps, self.mixture, generator, device)
            t = levels[self.groups[0][0]]
        else:
            if t is None:
                t = torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=device)
            levels = {name: t for name in self.variables}
        if not paper:
            full = torch.full_like(t, self.timesteps)
            shown = self.shown(present)
            levels = {name: torch.where(shown[name], level, full) for name, level in levels.items()}
        gaussian = GaussianGroup(self.variables, self.kernels, device)
        noisy, targets = gaussian.corrupt(z0, levels, generator)  # every fused Gaussian variable in one launch
        for name, var in self.variables.items():
            if name not in gaussian:
                noisy[name], targets[name] = var.corrupt(z0[name], levels[name], generator=generator)
        z_t = {}
        for name, var in self.variables.items():
            prior = var.prior(n, generator=generator, device=device)
            z_t[name] = torch.where(_expand(present[name], noisy[name]), noisy[name], prior)
        if paper:
            return Corrupted(z_t, targets, t, dict(present))
        keep = self._keep(z0, present, levels, generator) if drawn else {}  # an explicit t: no keep-masks
        return Corrupted(z_t, targets, t, dict(present), levels, keep)

    def shown(self, present: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """name -> (B,) bool: the variable keeps its drawn level; False sends it to T (missing: known nothing).

        A present variable keeps its level; so does a missing image while another image of the record is
        present (the images share one level: a different one could not be given). Every image missing: T.
        """
        shown = dict(present)
        spatial = self.groups[0] if self.groups and len(self.groups[0]) > 1 else []
        if spatial:
            group = torch.stack([present[n] for n in spatial]).any(dim=0)  # (B,) some image present
            shown.update({n: group for n in spatial})
        return shown

    def _keep(self, z0, present, levels, generator) -> dict[str, torch.Tensor]:
        """Random keep-mask channels [mask, mask * z0] (B, 2C, *grid) for the noised, present images."""
        if self.mixture.keep_masks <= 0:
            return {}
        keep = {}
        for name, var in self.variables.items():
            if not isinstance(var.head, SpatialHead):
                continue
            x0 = z0[name]
            n = x0.shape[0]
            chosen = (torch.rand(n, generator=generator, device=x0.device) < self.mixture.keep_masks)
            chosen &= present[name] & (levels[name] > 0)
            m = keep_mask(n, x0.shape[2:], generator, x0.device) * _expand(chosen, x0).to(x0.dtype)  # (B, 1, *grid)
            m = m.expand_as(x0)  # (B, C, *grid)
            keep[name] = torch.cat([m, m * x0], dim=1)  # (B, 2C, *grid)
        return keep

    def loss(self, network: Network, batch: Corrupted) -> dict[str, torch.Tensor]:
        """The joint loss of corrupted records: per-record terms ``{"loss": (B,), "loss/<name>": (B,)}``.

        A missing variable contributes no loss, nor does one given clean (level 0: nothing to denoise); the
        total weights each term by its ``loss_weight``.
        """
        t = batch.levels if batch.levels else batch.t
        out = network(batch.z_t, t, batch.keep) if batch.keep else network(batch.z_t, t)
        n = len(batch.t)
        terms = {}
        total = torch.zeros(n, device=batch.t.device)
        for name, var in self.variables.items():
            counted = batch.present[name] & (batch.level(name) > 0) if batch.levels else batch.present[name]
            term = var.loss(out[name], batch.targets[name]) * counted.float()
            terms[f"loss/{name}"] = term
            total = total + self.loss_weights[name] * term
        return {"loss": total, **terms}

    def training_losses(self, network: Network, batch: Mapping[str, Any], *, t: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for raw values of B records: `encode_batch`, `corrupt`, `loss`."""
        z0, present = self.encode_batch(batch)
        return self.loss(network, self.corrupt(z0, present, t=t, generator=generator))

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, network: Network, fix: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None,
               *, num_subjects: int | None = None, num_samples: int = 1, steps: int | None = None,
               seed: int | None = None, eta: float | None = None, batch_size: int | None = None,
               jump_length: int = 1, jump_rounds: int = 1, precision: str = "fp32",
               progress: Callable[[int, int], None] | None = None, conditioning: str | None = None,
               guidance: float = 0.0, seeds: Sequence[int] | None = None, grid: str | None = None) -> SampleResult:
        """Draw ``num_samples`` joint samples for each of N subjects, with the ``fix``ed variables held.

        Args:
            network: ``network(z, t) -> {name: output}`` in inference mode (put EMA weights in first).
            fix: variable -> raw values for N subjects (a missing value leaves that subject's variable free).
            masks: image variable -> known-region mask (N, 1|C, *shape), 1 = keep the fixed voxel (inpainting).
            num_subjects: N when nothing is fixed (default 1).
            num_samples: samples per subject (S).
            steps: reverse steps on the strided grid (default: ``sampling_steps``).
            grid: its spacing, ``uniform`` or ``quadratic`` (default: the spec's ``diffusion.grid``;
                `metavoxel.diffusion.grid`).
            seed: RNG seed (default: ``seed``); results are reproducible for the same seed and batch_size.
            seeds: one seed per subject (N): each subject's S samples draw from their own generator, so a
                subject's samples do not depend on the other subjects in the request or on ``batch_size``
                (which is then rounded down to whole subjects, at least one); ``seed`` is ignored.
            eta: DDIM eta for Gaussian kinds (default: ``eta``).
            batch_size: rows (subjects × samples) per network call; default all N·S at once.
            jump_length, jump_rounds: RePaint resampling; ``jump_rounds = 1`` disables it.
            precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast.
            progress: called as ``progress(done, total)`` after every network call.
            conditioning: ``repaint`` (re-noise fixed values every step) or ``clean`` (feed them at level 0);
                default: the spec's ``diffusion.conditioning``. See `metavoxel.diffusion.conditioning`.
            guidance: classifier-free guidance weight w >= 0 (Ho & Salimans 2022): each prediction is
                (1 + w) out(cond) - w out(marginal), the marginal seeing the fixed variables at level T (a fixed
                image beside a free one: prior noise at their shared level, `metavoxel.diffusion.conditioning`).

        Returns:
            A `SampleResult` with values of shape (N, S, ...) per variable.

        Raises:
            InputError: a bad request (see `metavoxel.diffusion.known.known_values`), ``num_samples < 1``, a ``seed``
                outside [0, 2**63 - 1] (`metavoxel.seeds`),
                an unknown precision or grid, ``seeds`` not one per subject, or a conditioning mode or guidance
                the model was not trained for.
        """
        grid_spacing = self.grid if grid is None else grid
        steps = self.sampling_steps if steps is None else int(steps)
        eta = self.eta if eta is None else float(eta)
        seed = self.seed if seed is None else check_seed(seed)
        if num_samples < 1:
            raise InputError(f"num_samples must be >= 1, got {num_samples}")
        if precision not in ("fp32", "bf16"):
            raise InputError(f"precision must be fp32 or bf16, got {precision!r}")
        grid_levels = time_grid(self.timesteps, steps, grid_spacing)
        walk = repaint_walk(steps, jump_length, jump_rounds)
        known, n = known_values(self.variables, dict(fix or {}), dict(masks or {}), num_subjects, self.device)
        conditioning = self.check_conditioning(conditioning, guidance, known)
        rows = n * num_samples
        known = {name: k.repeat(num_samples) for name, k in known.items()}
        batch_size = rows if batch_size is None else max(1, int(batch_size))
        if seeds is not None:
            seeds = [int(x) for x in seeds]
            if len(seeds) != n:
                raise InputError(f"seeds: expected one per subject ({n}), got {len(seeds)}")
            per_chunk = max(1, batch_size // num_samples)  # whole subjects per network call
            bounds = [(i * num_samples, min(n, i + per_chunk) * num_samples) for i in range(0, n, per_chunk)]
        else:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            bounds = [(a, min(rows, a + batch_size)) for a in range(0, rows, batch_size)]
        total = sum(1 for a, b in walk if b < a) * len(bounds)
        done = 0

        def on_call() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        gaussian, categorical = self.gaussian_group(), self.categorical_group()
        chunks: list[dict[str, torch.Tensor]] = []
        for first, last in bounds:
            part = slice(first, last)
            chunk_known = {name: k.rows(part) for name, k in known.items()}
            if seeds is not None:
                streams: torch.Generator | Streams = Streams(
                    [(num_samples, torch.Generator(device=self.device).manual_seed(seeds[i]))
                     for i in range(first // num_samples, last // num_samples)])
            else:
                streams = generator
            z = reverse_chain(self.variables, network, chunk_known, grid_levels, walk, rows=last - first, eta=eta,
                              gaussian=gaussian, categorical=categorical, generator=streams, device=self.device,
                              bf16=precision == "bf16", on_call=on_call, conditioning=conditioning,
                              guidance=float(guidance), timesteps=self.timesteps)
            chunks.append(decode(self.variables, z, chunk_known))
        samples = {name: torch.cat([c[name] for c in chunks]).reshape(n, num_samples, *chunks[0][name].shape[1:])
                   for name in self.variables}
        fixed = {name: k.value_mask.reshape(n, num_samples, -1)[:, 0].any(dim=1) for name, k in known.items()}
        return SampleResult(self.variables, samples, fixed, seed=seed, steps=steps, eta=eta, conditioning=conditioning,
                            guidance=float(guidance), grid=grid_spacing)


    @torch.no_grad()
    def point_predict(self, network: Network, fix: Mapping[str, Any], targets: list[str] | str | None = None, *,
                      masks: Mapping[str, Any] | None = None, levels: tuple[int, ...] | list[int] | None = None,
                      draws: int | tuple[int, ...] | list[int] | None = None, seed: int | None = None,
                      batch_size: int | None = None, seeds: Sequence[int] | None = None,
                      precision: str = "fp32") -> PointPrediction:
        """Posterior means (Gaussian kinds) and class probabilities (D3PM kinds) of ``targets`` given ``fix``.

        Renoise-and-read (`metavoxel.diffusion.point`): the fixed variables clean at level 0; a first call
        with the free variables prior noise at level T, then at each lower level the free variables re-noised
        from the previous estimate (averaged over that level's draws) and read again, where an eps error is not
        amplified ~80x. At most 5 network calls per subject (the draws summed over the levels).

        Args:
            network: ``network(z, t[, keep])`` in inference mode.
            fix: variable -> raw values for N subjects.
            targets: variables to predict (default: every variable not fixed).
            masks: image variable -> keep-mask, as in `sample` (needs a model trained with keep-masks).
            levels: integer steps read, T first, strictly decreasing; draws: per level (an int: the same at
                every level). Default `metavoxel.diffusion.point.READ_LEVELS`: T, 0.52 T, 0.26 T with 1, 2, 2.
            seed: RNG seed (default: ``seed``).
            batch_size: rows per network call (default all N · max(draws) at once).
            seeds: one seed per subject instead of ``seed``: each subject draws from its own generator, so its
                answer does not depend on the other subjects or on ``batch_size``.
            precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast (reads stay float32).

        Returns:
            A `PointPrediction` with ``mean[name]`` (N, ...) in value space and ``probs[name]`` (N, K).

        Raises:
            InputError: a model trained without clean subsets, an unknown target, a plan over 5 network calls
                per subject (see `metavoxel.diffusion.point.point_plan`), ``seeds`` not one per subject, or an
                unknown precision.
        """
        if precision not in ("fp32", "bf16"):
            raise InputError(f"precision must be fp32 or bf16, got {precision!r}")
        if self.mixture.clean <= 0:
            raise InputError("point prediction needs a model trained with clean subsets (diffusion.training.clean "
                             "> 0), this one was not; sample instead (--method sample) or retrain")
        levels, draws = point_plan(self.timesteps, levels, draws)
        known, n = known_values(self.variables, dict(fix), dict(masks or {}), None, self.device)
        reason = self._clean_refusal(known, point=True)
        if reason is not None:
            raise InputError(reason)
        targets = [targets] if isinstance(targets, str) else targets
        free = [name for name in self.variables if name not in known or not known[name].complete]
        targets = free if targets is None else list(targets)
        unknown = [t for t in targets if t not in self.variables]
        if unknown:
            raise InputError(f"unknown target(s) {', '.join(unknown)}; this model has {', '.join(self.variables)}")
        if seeds is not None:
            if len(seeds) != n:
                raise InputError(f"seeds: expected one per subject ({n}), got {len(seeds)}")
            generator: torch.Generator | list[torch.Generator] = [
                torch.Generator(device=self.device).manual_seed(int(x)) for x in seeds]
        else:
            generator = torch.Generator(device=self.device).manual_seed(self.seed if seed is None else check_seed(seed))
        if precision == "bf16":
            network = _autocast(network, self.device)
        return point_predict(self.variables, network, known, n, targets, timesteps=self.timesteps, levels=levels,
                             draws=draws, generator=generator, device=self.device, batch_size=batch_size)

    def check_conditioning(self, conditioning: str | None, guidance: float, known: Mapping[str, Any]) -> str:
        """The conditioning mode to use, or InputError with the reason this model cannot honour the request.

        ``conditioning=None`` takes the spec's default; where that default is ``clean`` but this request is one
        clean conditioning cannot serve (an image partly known in a model trained without keep-masks, or one of
        several image variables fixed and another free: they share one level), the default falls back to
        ``repaint``. A mode asked for by name is honoured or refused, never swapped.
        """
        mode = self.conditioning if conditioning is None else conditioning
        m = self.mixture
        if mode not in CONDITIONING_MODES:
            raise InputError(f"conditioning must be one of {', '.join(CONDITIONING_MODES)}, got {mode!r}")
        if mode == "clean" and m.clean <= 0:
            raise InputError("conditioning 'clean' needs a model trained with clean subsets (diffusion.training.clean "
                             "> 0), this one was not; use --conditioning repaint or retrain")
        reason = self._clean_refusal(known) if mode == "clean" else None
        if reason is not None and conditioning is None:
            mode = "repaint"
        elif reason is not None:
            raise InputError(reason)
        if not math.isfinite(guidance) or guidance < 0:
            raise InputError(f"guidance must be a finite number >= 0 (e.g. 1), got {guidance}")
        if guidance > 0 and m.prior <= 0:
            raise InputError("guidance needs a model trained with prior subsets (diffusion.training.prior > 0) to "
                             "know the marginal, this one was not; drop --guidance or retrain")
        return mode

    def _clean_refusal(self, known: Mapping[str, Any], *, point: bool = False) -> str | None:
        """Why clean conditioning cannot serve a request with these fixed values, or None when it can.

        ``point``: the request is a point prediction, which conditions clean only (the fix offered is sampling).
        """
        if self.mixture.keep_masks <= 0:
            partial = [n for n, k in known.items() if isinstance(self.variables[n].head, SpatialHead)
                       and bool((k.z_mask.flatten(1).any(1) & ~k.z_mask.flatten(1).all(1)).any())]
            if partial:
                fix = ("point prediction conditions clean only: sample instead (--method sample), or retrain"
                       if point else "use --conditioning repaint or retrain")
                return (f"{', '.join(partial)} is partly known (a mask), which clean conditioning can only condition "
                        f"on in a model trained with keep-masks (diffusion.training.keep_masks > 0); {fix}")
        spatial = [n for n in self.groups[0] if isinstance(self.variables[n].head, SpatialHead)] if self.groups else []
        if len(spatial) < 2 or not known:
            return None
        rows = len(next(iter(known.values())).z_mask)
        none = torch.zeros(rows, dtype=torch.bool)
        held = {n: known[n].z_mask.flatten(1).all(1).cpu() if n in known else none for n in spatial}  # (N,) whole
        some = {n: known[n].z_mask.flatten(1).any(1).cpu() if n in known else none for n in spatial}  # (N,) any voxel
        mixed = torch.stack(list(held.values())).any(0) & ~torch.stack(list(held.values())).all(0)  # (N,)
        if not bool(mixed.any()):
            return None
        row = int(mixed.nonzero()[0, 0])
        whole = [n for n in spatial if held[n][row]]
        masked = [n for n in spatial if not held[n][row] and some[n][row]]
        free = [n for n in spatial if not some[n][row]]
        state = [f"{', '.join(whole)} {'is' if len(whole) == 1 else 'are'} fixed whole (held clean, level 0)"]
        if masked:
            state.append(f"{', '.join(masked)} {'is' if len(masked) == 1 else 'are'} fixed only inside a mask "
                         "(noised, conditioned through its keep-mask)")
        if free:
            state.append(f"{', '.join(free)} {'is' if len(free) == 1 else 'are'} free (sampled)")
        if point:
            fix = "point prediction conditions clean only: predict by sampling instead (--method sample)"
            fix += (f", or give every image ({', '.join(spatial)})" if free else
                    f", or fix {', '.join(whole)} inside a mask too" if self.mixture.keep_masks > 0 else "")
        else:
            fix = (f"fix every image ({', '.join(spatial)}) whole" if free else
                   f"fix {', '.join(whole)} inside a mask too" if self.mixture.keep_masks > 0 else
                   f"fix {', '.join(masked)} whole")
            fix += ", or use --conditioning repaint"
        return (f"image variables {', '.join(spatial)} share one level, so clean conditioning needs them all held "
                f"clean or all noised, but {' while '.join(state)}; {fix}")


def _autocast(network: Network, device: torch.device) -> Network:
    """``network`` run under bfloat16 autocast, its outputs returned as float32."""
    def run(*args: Any) -> dict[str, torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = network(*args)
        return {name: o.float() for name, o in out.items()}
    return run


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) or (B, ...) bool mask reshaped to broadcast against ``like`` (B, ...)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))
