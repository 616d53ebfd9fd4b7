"""`JointModel`: the user-facing bundle of a spec's variables, its process and its network.

The engine is three plain pieces — the variables (what: `metavoxel.variables`), the process (how noise
comes and goes: `metavoxel.diffusion.process.JointDiffusion`) and the network (who predicts:
`metavoxel.diffusion.network.JointNetwork`). This module builds all three from a `ModelSpec` and offers
the README's API on top (``training_losses``, ``sample``, ...); nothing in the engine reaches back into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metavoxel.diffusion.mixture import LevelMixture
from metavoxel.diffusion.network import JointNetwork
from metavoxel.diffusion.deviation import DeviationMap, deviation_map
from metavoxel.diffusion.edit import EditResult, edit
from metavoxel.diffusion.options import EditOptions, PointOptions, SamplingOptions
from metavoxel.diffusion.point import PointPrediction, predict_point
from metavoxel.diffusion.process import Corrupted, JointDiffusion
from metavoxel.diffusion.results import SampleResult
from metavoxel.diffusion.sampling import sample
from metavoxel.errors import PluginError
from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.spec import ModelSpec
from metavoxel.variables.protocol import BuildContext, Variable, missing_members

__all__ = ["Corrupted", "JointModel"]


class JointModel(nn.Module):
    """A MetaVoxel model: the variables of a `ModelSpec`, one `JointNetwork` over them, and their process.

    Spatial variables share one diffusion grid and are concatenated as U-Net input channels; each scalar
    variable enters as constant input channels and a cross-attention token, and is predicted by its own
    bottleneck head.

    Args:
        spec: a `ModelSpec`, a mapping, or the path of a YAML/JSON spec.
        registry: the plugin registry to build kinds from (default: the installed plugins).
        load_weights: let kinds load the pretrained files their specs name (False when a checkpoint
            supplies every weight, see `metavoxel.runs.load_run`).

    Attributes:
        variables: name -> `Variable`.
        net: the `JointNetwork` (the trainable weights).
        diffusion: a `JointDiffusion` over the variables, on the model's current device.
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
        self.loss_weights = {v.name: v.loss_weight for v in spec.variables}
        self.frozen = nn.ModuleDict({n: nn.ModuleDict(v.modules()) for n, v in self.variables.items() if v.modules()})
        net = spec.network
        self.net = JointNetwork(
            self.variables, spatial_dims=net.spatial_dims, channels=net.channels,
            attention_levels=net.attention_levels, num_res_blocks=net.num_res_blocks,
            num_head_channels=net.num_head_channels, norm_num_groups=net.norm_num_groups,
            cross_attention_dim=net.cross_attention_dim, attention_backend=net.attention_backend, seed=spec.seed,
            keep_channels=spec.diffusion.training.keep_masks > 0,
        )
        self.spatial, self.scalars, self.grid = self.net.spatial, self.net.scalars, self.net.grid
        d = spec.diffusion
        self.diffusion = JointDiffusion(self.variables, self.timesteps, kernels=d.kernels, device=self.device,
                                        loss_weights=self.loss_weights, sampling_steps=d.sampling_steps, eta=d.eta,
                                        seed=spec.seed, mixture=LevelMixture(**d.training.model_dump()),
                                        conditioning=d.conditioning, grid=d.grid)

    def train(self, mode: bool = True) -> JointModel:
        super().train(mode)
        self.frozen.eval()  # frozen encoders stay in inference mode
        return self

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _apply(self, fn, recurse: bool = True):
        """Moving the model (``.to``, ``.cuda``) moves where its process creates states."""
        out = super()._apply(fn, recurse)
        self.diffusion.device = self.device
        return out

    # -- the network ----------------------------------------------------------------------------
    def denoise(self, z: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
        """One network call on the states of every variable at steps t (B,); returns each variable's output."""
        return self.net(z, t)

    # -- training -------------------------------------------------------------------------------
    def encode_batch(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Raw values of B records -> (z0, present) per variable (see `JointDiffusion.encode_batch`)."""
        return self.diffusion.encode_batch(batch)

    def corrupt(self, z0: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], *,
                t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Corrupted:
        """Records at their training levels (see `JointDiffusion.corrupt`)."""
        return self.diffusion.corrupt(z0, present, t=t, generator=generator)

    def loss(self, batch: Corrupted) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms of corrupted records (see `JointDiffusion.loss`)."""
        return self.diffusion.loss(self.net, batch)

    def forward(self, batch: Corrupted) -> dict[str, torch.Tensor]:
        """`loss`, as a module call (so DistributedDataParallel can wrap the model)."""
        return self.loss(batch)

    def losses_from_z0(self, z0: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], *,
                       t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for encoded records: `corrupt`, then `loss`."""
        return self.loss(self.corrupt(z0, present, t=t, generator=generator))

    def training_losses(self, batch: Mapping[str, Any], *, t: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-record joint loss terms for raw values of B records (see `JointDiffusion.training_losses`)."""
        return self.diffusion.training_losses(self.net, batch, t=t, generator=generator)

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self, fix: Mapping[str, Any] | None = None, masks: Mapping[str, Any] | None = None,
               options: SamplingOptions | None = None, *, num_subjects: int | None = None,
               progress: Callable[[int, int], None] | None = None, **option_values: Any) -> SampleResult:
        """Sample every free variable given the fixed ones (`metavoxel.diffusion.sampling.sample`).

        Args:
            fix: variable -> raw values for N subjects; masks: image variable -> keep-mask (inpainting).
            options: a `SamplingOptions`; or give its fields as keywords (``num_samples=3, seed=0``), which
                are validated the same way (and change ``options`` when both are given).
            num_subjects: N when nothing is fixed; progress: ``progress(done, total)`` per network call.

        The network runs in inference mode and the model's training mode is restored afterwards.
        """
        options = _options(SamplingOptions, options, option_values)
        was_training = self.training
        self.eval()
        try:
            return sample(self.diffusion, self.net, fix, masks, options, num_subjects=num_subjects, progress=progress)
        finally:
            self.train(was_training)

    def point_predict(self, fix: Mapping[str, Any], targets: list[str] | str | None = None, *,
                      masks: Mapping[str, Any] | None = None, options: PointOptions | None = None,
                      **option_values: Any) -> PointPrediction:
        """Posterior means and class probabilities of ``targets`` given ``fix`` in at most 5 network calls per
        subject (renoise-and-read; `metavoxel.diffusion.point.predict_point`). ``options`` (or its fields as
        keywords): seed or per-subject seeds, batch size, precision, levels and draws. Needs a model trained
        with clean subsets.

        The network runs in inference mode and the model's training mode is restored afterwards.
        """
        options = _options(PointOptions, options, option_values)
        was_training = self.training
        self.eval()
        try:
            return predict_point(self.diffusion, self.net, fix, targets, masks=masks, options=options)
        finally:
            self.train(was_training)

    def edit(self, fix: Mapping[str, Any], changes: Mapping[str, Any], options: EditOptions | None = None, *,
             progress: Callable[[int, int], None] | None = None, **option_values: Any) -> EditResult:
        """Edit subjects' own scans: DDIM inversion under their observed values, regeneration with ``changes``
        (`metavoxel.diffusion.edit.edit`). ``options`` (or its fields as keywords): steps, grid, refine,
        guidance, output, seed, precision. Needs a model trained with clean subsets.

        The network runs in inference mode and the model's training mode is restored afterwards.
        """
        options = _options(EditOptions, options, option_values)
        was_training = self.training
        self.eval()
        try:
            return edit(self.diffusion, self.net, fix, changes, options, progress=progress)
        finally:
            self.train(was_training)

    def deviation(self, fix: Mapping[str, Any], options: SamplingOptions | None = None, *, image: str | None = None,
                  floor: float = 0.02, reference: str = "scan", progress: Callable[[int, int], None] | None = None,
                  **option_values: Any) -> DeviationMap:
        """The voxelwise z-score of scans against brains sampled for their values
        (`metavoxel.diffusion.deviation.deviation_map`); ``options`` or its fields (``num_samples=16``, ...).

        The network runs in inference mode and the model's training mode is restored afterwards.
        """
        options = _options(SamplingOptions, options if options is not None or "num_samples" in option_values
                           else SamplingOptions(num_samples=16), option_values)
        was_training = self.training
        self.eval()
        try:
            return deviation_map(self.diffusion, self.net, fix, options, image=image, floor=floor,
                                 reference=reference, progress=progress)
        finally:
            self.train(was_training)


def _options(kind: type, options: Any, values: Mapping[str, Any]) -> Any:
    """``options`` (or the default ``kind()``) with ``values`` applied; an unknown name is an OptionError."""
    import dataclasses

    from metavoxel.errors import OptionError

    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; {kind.__name__} has {', '.join(sorted(names))}")
    base = kind() if options is None else options
    return dataclasses.replace(base, **values) if values else base


def _build(registry: Registry, spec: Any, ctx: BuildContext) -> Variable:
    variable = registry.get(spec.kind).build(spec, ctx)
    missing = missing_members(variable)
    if missing:
        raise PluginError(f"kind {spec.kind!r} ({registry.origin(spec.kind)}) built {type(variable).__name__}, "
                          f"which lacks {', '.join(sorted(missing))} of the Variable protocol")
    return variable
