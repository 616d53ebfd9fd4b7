"""Zero-shot sampling as a function over (process, network, request, options): every free variable drawn
given the fixed ones, RePaint or clean (`metavoxel.diffusion.conditioning`), in chunks of rows with their
own random streams. The per-step maths lives in `metavoxel.diffusion.sampler`; this module plans the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from metavoxel.diffusion.conditioning import conditioning_mode
from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.imputation import completed, to_impute
from metavoxel.diffusion.known import known_values
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import Network, Streams, decode, reverse_chain
from metavoxel.errors import OptionError

if TYPE_CHECKING:
    from metavoxel.diffusion.process import JointDiffusion

__all__ = ["sample"]


@torch.no_grad()
def sample(diffusion: JointDiffusion, network: Network, fix: Mapping[str, Any] | None = None,
           masks: Mapping[str, Any] | None = None, options: SamplingOptions | None = None, *,
           num_subjects: int | None = None, progress: Callable[[int, int], None] | None = None) -> SampleResult:
    """Draw ``options.num_samples`` joint samples for each of N subjects, with the ``fix``ed variables held.

    Args:
        diffusion: the process (variables, schedules and the spec's sampling defaults).
        network: ``network(z, t[, keep]) -> {name: output}`` in inference mode (put EMA weights in first).
        fix: variable -> raw values for N subjects (a missing value leaves that subject's variable free).
        masks: image variable -> known-region mask (N, 1|C, *shape), 1 = keep the fixed voxel (inpainting).
        options: how to sample (`SamplingOptions`; ``None`` fields take the spec's defaults).
        num_subjects: N when nothing is fixed (default 1).
        progress: called as ``progress(done, total)`` after every network call.

    Returns:
        A `SampleResult` with values of shape (N, S, ...) per variable.

    Raises:
        InputError: a bad request (`metavoxel.diffusion.known.known_values`).
        OptionError: ``seeds`` not one per subject, or a conditioning mode or guidance the model was not
            trained for (`metavoxel.diffusion.conditioning.conditioning_mode`).
    """
    options = SamplingOptions() if options is None else options
    grid_spacing = diffusion.grid if options.grid is None else options.grid
    steps = diffusion.sampling_steps if options.steps is None else options.steps
    eta = diffusion.eta if options.eta is None else float(options.eta)
    seed = diffusion.seed if options.seed is None else options.seed
    num_samples = options.num_samples
    grid_levels = time_grid(diffusion.timesteps, steps, grid_spacing)
    walk = repaint_walk(steps, options.jump_length, options.jump_rounds)
    known, n = known_values(diffusion.variables, dict(fix or {}), dict(masks or {}), num_subjects, diffusion.device)
    conditioning = conditioning_mode(diffusion, options.conditioning, options.guidance, known)
    rows = n * num_samples
    known = {name: k.repeat(num_samples) for name, k in known.items()}
    batch_size = rows if options.batch_size is None else options.batch_size
    device = diffusion.device
    if options.seeds is not None:
        if len(options.seeds) != n:
            raise OptionError(f"{{seeds}}: expected one per subject ({n}), got {len(options.seeds)}", "seeds")
        per_chunk = max(1, batch_size // num_samples)  # whole subjects per network call
        bounds = [(i * num_samples, min(n, i + per_chunk) * num_samples) for i in range(0, n, per_chunk)]
    else:
        generator = torch.Generator(device=device).manual_seed(seed)
        bounds = [(a, min(rows, a + batch_size)) for a in range(0, rows, batch_size)]
    stages = 2 if options.impute and to_impute(diffusion.variables, known) else 1
    total = sum(1 for a, b in walk if b < a) * len(bounds) * stages
    done = 0

    def on_call() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    gaussian, categorical = diffusion.gaussian_group(), diffusion.categorical_group()
    chunks: list[dict[str, torch.Tensor]] = []
    for first, last in bounds:
        part = slice(first, last)
        chunk_known = {name: k.rows(part) for name, k in known.items()}
        if options.seeds is not None:
            streams: torch.Generator | Streams = Streams(
                [(num_samples, torch.Generator(device=device).manual_seed(options.seeds[i]))
                 for i in range(first // num_samples, last // num_samples)])
        else:
            streams = generator
        chain = dict(gaussian=gaussian, categorical=categorical, generator=streams, device=device,
                     bf16=options.precision == "bf16", on_call=on_call, guidance=float(options.guidance),
                     timesteps=diffusion.timesteps, eta=eta, rows=last - first)
        z = reverse_chain(diffusion.variables, network, chunk_known, grid_levels, walk, conditioning=conditioning,
                          **chain)
        values = decode(diffusion.variables, z, chunk_known)
        second = completed(diffusion.variables, chunk_known, values) if options.impute else None
        if second is not None:  # imputation: the rest sampled again given each completed image held whole
            imputed = torch.stack(list(to_impute(diffusion.variables, chunk_known).values())).any(dim=0).cpu()  # (B,)
            mode = conditioning_mode(diffusion, options.conditioning, options.guidance, second)
            z = reverse_chain(diffusion.variables, network, second, grid_levels, walk, conditioning=mode, **chain)
            again = decode(diffusion.variables, z, second)
            values = {name: torch.where(imputed.reshape(-1, *([1] * (v.dim() - 1))), again[name], v)
                      for name, v in values.items()}  # rows without a partly known image keep their one chain
        chunks.append(values)
    samples = {name: torch.cat([c[name] for c in chunks]).reshape(n, num_samples, *chunks[0][name].shape[1:])
               for name in diffusion.variables}
    fixed = {name: k.value_mask.reshape(n, num_samples, -1)[:, 0].any(dim=1) for name, k in known.items()}
    return SampleResult(diffusion.variables, samples, fixed, seed=seed, steps=steps, eta=eta,
                        conditioning=conditioning, guidance=float(options.guidance), grid=grid_spacing)
