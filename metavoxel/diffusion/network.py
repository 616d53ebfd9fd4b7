"""The network piece of the engine: noisy states and their levels in, one output per variable out.

`JointNetwork` lays the variables out for `metavoxel.nn.JointUNet` — spatial variables as input
channels, each scalar variable as constant input channels and one cross-attention token — and splits the
U-Net's outputs back per variable. It knows the variables' input layout (their ``head`` and
``channel_input``/``token_input``) and nothing of noise, losses or sampling: those belong to the process
(`metavoxel.diffusion.process.JointDiffusion`), which takes this network as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from metavoxel.errors import InputError, SpecError
from metavoxel.variables.protocol import ScalarHead, SpatialHead, Variable

__all__ = ["JointNetwork"]



class JointNetwork(nn.Module):
    """``forward(z, t) -> {name: output}``: one network call on the states of every variable.

    Args:
        variables: the model's variables (their heads fix the layout; kept for their input features only).
        spatial_dims: 2 or 3.
        channels, attention_levels, num_res_blocks, num_head_channels, norm_num_groups, cross_attention_dim:
            the U-Net's architecture (see `metavoxel.nn.JointUNet`).
        attention_backend: ``auto`` | ``triton`` | ``torch`` for the attention kernels.
        seed: initialisation seed (the global RNG is left as it was).
        keep_channels: give every spatial variable 2C extra input channels [keep-mask, keep-mask * z0]: the
            voxels known clean (a model trained with keep-masks; CSDI's conditional mask, Tashiro et al. 2021).

    Raises:
        SpecError: no image variable, image variables on different grids, or a grid the U-Net cannot halve.
    """

    def __init__(self, variables: Mapping[str, Variable], *, spatial_dims: int, channels: list[int],
                 attention_levels: list[bool], num_res_blocks: int, num_head_channels: int, norm_num_groups: int,
                 cross_attention_dim: int, attention_backend: str = "auto", seed: int = 0,
                 keep_channels: bool = False):
        super().__init__()
        from metavoxel.nn import JointUNet  # the network is heavy; import it only when one is built

        self._variables = dict(variables)  # not modules of this network: their frozen parts live in the model
        self.spatial = [n for n, v in variables.items() if isinstance(v.head, SpatialHead)]
        self.scalars = [n for n, v in variables.items() if isinstance(v.head, ScalarHead)]
        self.grid = _common_grid(variables, self.spatial, self.scalars, spatial_dims, 2 ** (len(channels) - 1))
        self.keep_channels = bool(keep_channels)
        in_channels = (sum(variables[n].head.channels for n in self.spatial) * (3 if keep_channels else 1)
                       + sum(variables[n].head.channel_features for n in self.scalars))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.unet = JointUNet(
                spatial_dims=spatial_dims, in_channels=in_channels,
                out_channels=sum(variables[n].head.channels for n in self.spatial),
                token_features=[variables[n].head.token_features for n in self.scalars],
                head_features=[variables[n].head.out_features for n in self.scalars],
                channels=channels, attention_levels=attention_levels, num_res_blocks=num_res_blocks,
                num_head_channels=num_head_channels, norm_num_groups=norm_num_groups,
                cross_attention_dim=cross_attention_dim, attention_backend=attention_backend,
            )

    def forward(self, z: Mapping[str, torch.Tensor], t: torch.Tensor | Mapping[str, torch.Tensor],
                keep: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Each variable's output for the states ``z[name]`` (B, *z) at steps ``t``.

        Args:
            z: every variable's state.
            t: (B,) one step shared by every variable, or name -> (B,) each variable's own step. The
                spatial variables share the U-Net's level (they must agree); each scalar token and head
                is told its own.
            keep: spatial variable -> (B, 2C, *grid) [keep-mask, keep-mask * z0] of its known clean voxels;
                a variable not named gets zeros (nothing kept). Only for a network built with ``keep_channels``.

        Returns:
            name -> the network output for that variable: spatial (B, C, *grid), scalar (B, out_features).
        """
        variables = self._variables
        fields = [variables[n].channel_input(z[n]) for n in self.spatial]  # each (B, C, *grid)
        batch = fields[0].shape[0]
        if keep and not self.keep_channels:
            raise InputError(f"keep-mask channels given for {', '.join(keep)} but this network has none (its model "
                             "was trained without keep-masks); condition on partly known images with repaint")
        if self.keep_channels:
            keep = keep or {}
            for n, f in zip(self.spatial, list(fields)):
                k = keep.get(n)
                fields.append(torch.zeros(batch, 2 * f.shape[1], *f.shape[2:], dtype=f.dtype, device=f.device)
                              if k is None else k.to(f.dtype))  # (B, 2C, *grid)
        for n in self.scalars:
            c = variables[n].channel_input(z[n]).to(fields[0].dtype)  # (B, F)
            fields.append(c.reshape(batch, -1, *([1] * len(self.grid))).expand(-1, -1, *self.grid))
        tokens = [variables[n].token_input(z[n]) for n in self.scalars]
        grid_t, token_levels = self._levels(t)
        spatial_out, heads = self.unet(torch.cat(fields, dim=1), grid_t, tokens, token_levels)
        sizes = [variables[n].head.channels for n in self.spatial]
        out = dict(zip(self.spatial, torch.split(spatial_out, sizes, dim=1)))
        out.update(zip(self.scalars, heads))
        return out

    def _levels(self, t: torch.Tensor | Mapping[str, torch.Tensor]):
        """(the grid's (B,) step, each scalar's (B,) step or None when every variable shares one)."""
        if isinstance(t, torch.Tensor):
            return t, None
        missing = [n for n in (*self.spatial, *self.scalars) if n not in t]
        if missing:
            raise InputError(f"no noise level for {', '.join(missing)}; give every variable its (B,) step")
        grid_t = t[self.spatial[0]]
        for n in self.spatial[1:]:
            if not torch.equal(t[n], grid_t):
                raise InputError(f"image variables share one grid and one level; {n!r} and {self.spatial[0]!r} "
                                 "were given different steps")
        token_levels = [t[n] for n in self.scalars]
        if all(torch.equal(level, grid_t) for level in token_levels):
            return grid_t, None
        return grid_t, token_levels


def _common_grid(variables: Mapping[str, Variable], spatial: list[str], scalars: list[str], spatial_dims: int,
                 factor: int) -> tuple[int, ...]:
    if not spatial:
        raise SpecError("a joint model needs at least one image variable (kind image or image_latent); "
                        f"this spec has only scalars: {', '.join(scalars)}")
    grids = {n: tuple(variables[n].head.shape) for n in spatial}
    if len(set(grids.values())) > 1:
        raise SpecError(f"all image variables must share one diffusion grid, got {grids}; "
                        "give them the same shape (and VAE downsampling)")
    grid = next(iter(grids.values()))
    if len(grid) != spatial_dims or any(s % factor for s in grid):
        raise SpecError(f"the diffusion grid {grid} must be {spatial_dims}D and divisible by "
                        f"{factor} (2 ** (len(network.channels) - 1)); change the image shape or network.channels")
    return grid
