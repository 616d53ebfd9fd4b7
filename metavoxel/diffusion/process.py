"""The process piece of the engine: how noise comes (training) and goes (sampling) for every variable.

`JointDiffusion` is built from plain values — the variables, the schedule length T, the kernel backend
and the device — and takes the network as an argument wherever one is needed, the habit of
improved-diffusion's ``GaussianDiffusion`` and MONAI's inferers. Each variable corrupts, steps and
re-noises itself (its kind's methods); variables that declare the fused fast path are handled together
by `metavoxel.diffusion.fused`. Time follows `metavoxel.processes.schedules` (integer steps 0..T).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from metavoxel.diffusion.fused import CategoricalGroup, GaussianGroup
from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.diffusion.known import known_values
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampler import Network, decode, reverse_chain
from metavoxel.errors import InputError
from metavoxel.variables.protocol import Variable

__all__ = ["Corrupted", "JointDiffusion"]


@dataclass
class Corrupted:
    """Records at their training timestep: states z_t, loss targets, steps t (B,) and presence masks."""

    z_t: dict[str, torch.Tensor]
    targets: dict[str, Any]
    t: torch.Tensor
    present: dict[str, torch.Tensor]

    def rows(self, index: torch.Tensor | slice) -> Corrupted:
        """The same records restricted to ``index`` (e.g. one rank's share of a global batch)."""
        take = lambda x: x[index] if isinstance(x, torch.Tensor) else x  # noqa: E731
        return Corrupted({k: take(v) for k, v in self.z_t.items()}, {k: take(v) for k, v in self.targets.items()},
                         take(self.t), {k: take(v) for k, v in self.present.items()})


class JointDiffusion:
    """Corruption, the joint training loss and zero-shot sampling over a set of variables.

    Args:
        variables: name -> built `Variable`, in the model's order.
        timesteps: T, the number of diffusion steps.
        kernels: backend of the fused noising/stepping kernels: ``auto`` | ``triton`` | ``torch``.
        device: where states are created.
        loss_weights: name -> weight of its term in the total loss (default 1 each).
        sampling_steps, eta, seed: sampling defaults (reverse steps, DDIM eta, RNG seed).
    """

    def __init__(self, variables: Mapping[str, Variable], timesteps: int, *, kernels: str = "auto",
                 device: torch.device | str = "cpu", loss_weights: Mapping[str, float] | None = None,
                 sampling_steps: int = 50, eta: float = 1.0, seed: int = 0):
        self.variables = dict(variables)
        self.timesteps = int(timesteps)
        self.kernels = kernels
        self.device = torch.device(device)
        self.loss_weights = {n: 1.0 for n in self.variables} | dict(loss_weights or {})
        self.sampling_steps, self.eta, self.seed = int(sampling_steps), float(eta), int(seed)

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
        """The forward half of the joint loss: one t per record, each variable corrupted by its kind.

        A missing variable is replaced by fresh prior noise (the network sees noise where it knows nothing).
        """
        n = len(next(iter(present.values())))
        device = next(iter(present.values())).device
        if t is None:
            t = torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=device)
        levels = {name: t for name in self.variables}
        gaussian = GaussianGroup(self.variables, self.kernels, device)
        noisy, targets = gaussian.corrupt(z0, levels, generator)  # every fused Gaussian variable in one launch
        for name, var in self.variables.items():
            if name not in gaussian:
                noisy[name], targets[name] = var.corrupt(z0[name], levels[name], generator=generator)
        z_t = {}
        for name, var in self.variables.items():
            prior = var.prior(n, generator=generator, device=device)
            z_t[name] = torch.where(_expand(present[name], noisy[name]), noisy[name], prior)
        return Corrupted(z_t, targets, t, dict(present))

    def loss(self, network: Network, batch: Corrupted) -> dict[str, torch.Tensor]:
        """The joint loss of corrupted records: per-record terms ``{"loss": (B,), "loss/<name>": (B,)}``.

        A missing variable contributes no loss; the total weights each term by its ``loss_weight``.
        """
        out = network(batch.z_t, batch.t)
        n = len(batch.t)
        terms = {}
        total = torch.zeros(n, device=batch.t.device)
        for name, var in self.variables.items():
            term = var.loss(out[name], batch.targets[name]) * batch.present[name].float()
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
               progress: Callable[[int, int], None] | None = None) -> SampleResult:
        """Draw ``num_samples`` joint samples for each of N subjects, with the ``fix``ed variables held.

        Args:
            network: ``network(z, t) -> {name: output}`` in inference mode (put EMA weights in first).
            fix: variable -> raw values for N subjects (a missing value leaves that subject's variable free).
            masks: image variable -> known-region mask (N, 1|C, *shape), 1 = keep the fixed voxel (inpainting).
            num_subjects: N when nothing is fixed (default 1).
            num_samples: samples per subject (S).
            steps: reverse steps on the strided grid (default: ``sampling_steps``).
            seed: RNG seed (default: ``seed``); results are reproducible for the same seed and batch_size.
            eta: DDIM eta for Gaussian kinds (default: ``eta``).
            batch_size: rows (subjects × samples) per network call; default all N·S at once.
            jump_length, jump_rounds: RePaint resampling; ``jump_rounds = 1`` disables it.
            precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast.
            progress: called as ``progress(done, total)`` after every network call.

        Returns:
            A `SampleResult` with values of shape (N, S, ...) per variable.

        Raises:
            InputError: a bad request (see `metavoxel.diffusion.known.known_values`), ``num_samples < 1``
                or an unknown precision.
        """
        steps = self.sampling_steps if steps is None else int(steps)
        eta = self.eta if eta is None else float(eta)
        seed = self.seed if seed is None else int(seed)
        if num_samples < 1:
            raise InputError(f"num_samples must be >= 1, got {num_samples}")
        if precision not in ("fp32", "bf16"):
            raise InputError(f"precision must be fp32 or bf16, got {precision!r}")
        grid = time_grid(self.timesteps, steps)
        walk = repaint_walk(steps, jump_length, jump_rounds)
        known, n = known_values(self.variables, dict(fix or {}), dict(masks or {}), num_subjects, self.device)
        rows = n * num_samples
        known = {name: k.repeat(num_samples) for name, k in known.items()}
        batch_size = rows if batch_size is None else max(1, int(batch_size))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        total = sum(1 for a, b in walk if b < a) * -(-rows // batch_size)
        done = 0

        def on_call() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        gaussian, categorical = self.gaussian_group(), self.categorical_group()
        chunks: list[dict[str, torch.Tensor]] = []
        for start in range(0, rows, batch_size):
            part = slice(start, min(rows, start + batch_size))
            chunk_known = {name: k.rows(part) for name, k in known.items()}
            z = reverse_chain(self.variables, network, chunk_known, grid, walk, rows=part.stop - part.start, eta=eta,
                              gaussian=gaussian, categorical=categorical, generator=generator, device=self.device,
                              bf16=precision == "bf16", on_call=on_call)
            chunks.append(decode(self.variables, z, chunk_known))
        samples = {name: torch.cat([c[name] for c in chunks]).reshape(n, num_samples, *chunks[0][name].shape[1:])
                   for name in self.variables}
        fixed = {name: k.value_mask.reshape(n, num_samples, -1)[:, 0].any(dim=1) for name, k in known.items()}
        return SampleResult(self.variables, samples, fixed, seed=seed, steps=steps, eta=eta)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) or (B, ...) bool mask reshaped to broadcast against ``like`` (B, ...)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))
