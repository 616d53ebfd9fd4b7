"""The joint model: one network denoising every variable of a record at one shared timestep."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metavoxel.diffusion.fused import GaussianGroup
from metavoxel.errors import InputError, PluginError, SpecError
from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.spec import ModelSpec
from metavoxel.variables.protocol import BuildContext, ScalarHead, SpatialHead, Variable, missing_members

__all__ = ["Corrupted", "JointModel"]


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


class JointModel(nn.Module):
    """A MetaVoxel model: the variables of a `ModelSpec` and one `JointUNet` over all of them.

    Spatial variables share one diffusion grid and are concatenated as U-Net input channels; each scalar
    variable enters as constant input channels and a cross-attention token, and is predicted by its own
    bottleneck head.

    Args:
        spec: a `ModelSpec`, a mapping, or the path of a YAML/JSON spec.
        registry: the plugin registry to build kinds from (default: the installed plugins).
        load_weights: let kinds load the pretrained files their specs name (False when a checkpoint
            supplies every weight, see `metavoxel.training.checkpoint.load_run`).
    """

    def __init__(self, spec: ModelSpec | Mapping[str, Any] | str | Path, *, registry: Registry | None = None,
                 load_weights: bool = True):
        super().__init__()
        registry = default_registry() if registry is None else registry
        if isinstance(spec, (str, Path)):
            spec = ModelSpec.from_file(spec, registry=registry)
        elif not isinstance(spec, ModelSpec):
            spec = ModelSpec.from_dict(dict(spec), registry=registry)
        self.spec = spec
        self.timesteps = spec.diffusion.timesteps
        ctx = BuildContext(self.timesteps, spec.diffusion.schedules(), spec.network.spatial_dims, spec.seed,
                           load_weights=load_weights)
        self.variables: dict[str, Variable] = {v.name: _build(registry, v, ctx) for v in spec.variables}
        self.spatial = [n for n, v in self.variables.items() if isinstance(v.head, SpatialHead)]
        self.scalars = [n for n, v in self.variables.items() if isinstance(v.head, ScalarHead)]
        self.grid = self._common_grid()
        self.loss_weights = {v.name: v.loss_weight for v in spec.variables}
        self.frozen = nn.ModuleDict({n: nn.ModuleDict(v.modules()) for n, v in self.variables.items() if v.modules()})

        from metavoxel.nn import JointUNet  # the network is heavy; import it with the model

        net = spec.network
        in_channels = (sum(self.variables[n].head.channels for n in self.spatial)
                       + sum(self.variables[n].head.channel_features for n in self.scalars))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            self.net = JointUNet(
                spatial_dims=net.spatial_dims, in_channels=in_channels,
                out_channels=sum(self.variables[n].head.channels for n in self.spatial),
                token_features=[self.variables[n].head.token_features for n in self.scalars],
                head_features=[self.variables[n].head.out_features for n in self.scalars],
                channels=net.channels, attention_levels=net.attention_levels, num_res_blocks=net.num_res_blocks,
                num_head_channels=net.num_head_channels, norm_num_groups=net.norm_num_groups,
                cross_attention_dim=net.cross_attention_dim, attention_backend=net.kernels,
            )

    def _common_grid(self) -> tuple[int, ...]:
        if not self.spatial:
            raise SpecError("a joint model needs at least one image variable (kind image or image_latent); "
                            f"this spec has only scalars: {', '.join(self.scalars)}")
        grids = {n: tuple(self.variables[n].head.shape) for n in self.spatial}
        if len(set(grids.values())) > 1:
            raise SpecError(f"all image variables must share one diffusion grid, got {grids}; "
                            "give them the same shape (and VAE downsampling)")
        grid = next(iter(grids.values()))
        factor = self.spec.network.downsample_factor
        if len(grid) != self.spec.network.spatial_dims or any(s % factor for s in grid):
            raise SpecError(f"the diffusion grid {grid} must be {self.spec.network.spatial_dims}D and divisible by "
                            f"{factor} (2 ** (len(network.channels) - 1)); change the image shape or network.channels")
        return grid

    def train(self, mode: bool = True) -> JointModel:
        super().train(mode)
        self.frozen.eval()  # frozen encoders stay in inference mode
        return self

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    # -- the network ----------------------------------------------------------------------------
    def denoise(self, z: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
        """One network call on the states of every variable at steps t (B,); returns each variable's output."""
        fields = [self.variables[n].channel_input(z[n]) for n in self.spatial]  # each (B, C, *grid)
        batch = fields[0].shape[0]
        for n in self.scalars:
            c = self.variables[n].channel_input(z[n]).to(fields[0].dtype)  # (B, F)
            fields.append(c.reshape(batch, -1, *([1] * len(self.grid))).expand(-1, -1, *self.grid))
        tokens = [self.variables[n].token_input(z[n]) for n in self.scalars]
        spatial_out, heads = self.net(torch.cat(fields, dim=1), t, tokens)
        sizes = [self.variables[n].head.channels for n in self.spatial]
        out = dict(zip(self.spatial, torch.split(spatial_out, sizes, dim=1)))
        out.update(zip(self.scalars, heads))
        return out

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
        """The forward half of the joint loss: one t per record, each kind corrupts its own variable.

        A missing variable is replaced by fresh prior noise (the network sees noise where it knows nothing).
        """
        n = len(next(iter(present.values())))
        device = self.device
        if t is None:
            t = torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=device)
        gaussian = GaussianGroup(self)
        noisy, targets = gaussian.corrupt(z0, t, generator)  # every Gaussian variable in one launch
        for name, var in self.variables.items():
            if name not in gaussian:
                noisy[name], targets[name] = var.corrupt(z0[name], t, generator=generator)
        z_t = {}
        for name, var in self.variables.items():
            prior = var.prior(n, generator=generator, device=device)
            z_t[name] = torch.where(_expand(present[name], noisy[name]), noisy[name], prior)
        return Corrupted(z_t, targets, t, dict(present))

    def loss(self, batch: Corrupted) -> dict[str, torch.Tensor]:
        """The joint loss of corrupted records: per-record terms ``{"loss": (B,), "loss/<name>": (B,)}``.

        A missing variable contributes no loss; the total weights each term by its ``loss_weight``.
        """
        out = self.denoise(batch.z_t, batch.t)
        n = len(batch.t)
        terms = {}
        total = torch.zeros(n, device=batch.t.device)
        for name, var in self.variables.items():
            term = var.loss(out[name], batch.targets[name]) * batch.present[name].float()
            terms[f"loss/{name}"] = term
            total = total + self.loss_weights[name] * term
        return {"loss": total, **terms}

    def forward(self, batch: Corrupted) -> dict[str, torch.Tensor]:
        """`loss`, as a module call (so DistributedDataParallel can wrap the model)."""
        return self.loss(batch)

    def losses_from_z0(self, z0: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], *,
                       t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for encoded records: `corrupt`, then `loss`."""
        return self.loss(self.corrupt(z0, present, t=t, generator=generator))

    def training_losses(self, batch: Mapping[str, Any], *, t: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for raw values of B records (see `losses_from_z0`)."""
        z0, present = self.encode_batch(batch)
        return self.losses_from_z0(z0, present, t=t, generator=generator)

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, fix: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None, *,
               num_subjects: int | None = None, num_samples: int = 1, steps: int | None = None,
               seed: int | None = None, eta: float | None = None, batch_size: int | None = None,
               jump_length: int = 1, jump_rounds: int = 1, precision: str = "fp32",
               progress: Callable[[int, int], None] | None = None):
        """Sample every free variable given the fixed ones (RePaint); see `metavoxel.diffusion.sampler.sample`."""
        from metavoxel.diffusion.sampler import sample

        return sample(self, fix, masks, num_subjects=num_subjects, num_samples=num_samples, steps=steps, seed=seed,
                      eta=eta, batch_size=batch_size, jump_length=jump_length, jump_rounds=jump_rounds,
                      precision=precision, progress=progress)


def _build(registry: Registry, spec: Any, ctx: BuildContext) -> Variable:
    variable = registry.get(spec.kind).build(spec, ctx)
    missing = missing_members(variable)
    if missing:
        raise PluginError(f"kind {spec.kind!r} ({registry.origin(spec.kind)}) built {type(variable).__name__}, "
                          f"which lacks {', '.join(sorted(missing))} of the Variable protocol")
    return variable


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) or (B, ...) bool mask reshaped to broadcast against ``like`` (B, ...)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))
