"""`BaselineNet`: a MONAI DenseNet121 or ViT that also sees a few scalar inputs as constant channels.

The paper's task-specific baselines feed the other clinical variable (sex when predicting age, age when
predicting sex) as an extra input; the simplest faithful way is to broadcast each scalar over the volume::

    x = concat([image, extras[:, e] * ones_like(image) for e in range(E)], dim=1)    # (B, 1 + E, *shape)
    y = net(x)                                                                        # (B,) or (B, K)

DenseNet121 (Huang et al. 2017) is MONAI's ``DenseNet121`` with its own global-pool + linear head; the
ViT (Dosovitskiy et al. 2021) is MONAI's ``ViT`` with ``classification=True``, read from the class token
through a plain linear head (``post_activation=None``: MONAI's default Tanh would bound regression outputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from metavoxel.baselines.config import BaselineConfig, parse_config
from metavoxel.errors import InputError

__all__ = ["BaselineNet", "build_baseline", "densenet_min_side"]


def _densenet_side(side: int) -> int:
    """Side after DenseNet121's stem and three transitions (0: the volume is too small)."""
    side = (side - 1) // 2 + 1  # conv0: kernel 7, stride 2, padding 3
    side = (side - 1) // 2 + 1  # pool0: max-pool kernel 3, stride 2, padding 1
    for _ in range(3):  # transition average pools: kernel 2, stride 2
        if side < 2:
            return 0
        side //= 2
    return side


def densenet_min_side() -> int:
    """The smallest image side DenseNet121 can downsample (its total stride is 32; the answer is 29)."""
    side = 1
    while _densenet_side(side) < 1:
        side += 1
    return side


def _check_geometry(config: BaselineConfig, spatial_dims: int, image_shape: Sequence[int]) -> tuple[int, ...]:
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}; give the number of image axes")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != spatial_dims or any(s < 1 for s in shape):
        raise InputError(f"image_shape must be {spatial_dims} positive sides (spatial_dims={spatial_dims}), got "
                         f"{tuple(image_shape)}; give the spatial shape without batch or channel axes")
    if config.arch == "densenet121":
        smallest = densenet_min_side()
        if min(shape) < smallest:
            raise InputError(f"DenseNet121 downsamples by 32 and needs every image side >= {smallest}, got image "
                             f"shape {shape}; resample or pad the images to at least {smallest} voxels per side, "
                             "or use arch 'vit'")
    else:
        p = config.patch_size
        bad = [s for s in shape if s % p]
        if bad:
            common = math.gcd(*shape)
            fits = max(d for d in range(1, min(p, common) + 1) if common % d == 0)
            raise InputError(f"ViT patch_size {p} does not divide image side {bad[0]} (image shape {shape}); "
                             f"set patch_size to a divisor of every side (e.g. {fits}) or crop/pad the images "
                             f"to a multiple of {p}")
    return shape


class BaselineNet(nn.Module):
    """Image + extra scalars -> a value (regression) or logits (classification).

    Args:
        config: the architecture (``arch``, widths, ``task``, ``num_classes``, ``extra_inputs``).
        spatial_dims: 2 or 3.
        image_shape: spatial shape of the images the network is built for.
    """

    def __init__(self, config: BaselineConfig, spatial_dims: int, image_shape: Sequence[int]):
        super().__init__()
        config = parse_config(config)
        self.config = config
        self.spatial_dims = spatial_dims
        self.image_shape = _check_geometry(config, spatial_dims, image_shape)
        if config.arch == "densenet121":
            from monai.networks.nets import DenseNet121

            self.network = DenseNet121(spatial_dims=spatial_dims, in_channels=config.in_channels,
                                       out_channels=config.out_channels, init_features=config.init_features,
                                       growth_rate=config.growth_rate, dropout_prob=config.dropout)
        else:
            from monai.networks.nets import ViT

            self.network = ViT(in_channels=config.in_channels, img_size=self.image_shape,
                               patch_size=config.patch_size, hidden_size=config.hidden_size,
                               mlp_dim=config.mlp_dim, num_layers=config.num_layers, num_heads=config.num_heads,
                               classification=True, num_classes=config.out_channels,
                               dropout_rate=config.dropout, spatial_dims=spatial_dims, post_activation=None)

    def inputs(self, images: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """The network input: the image with each extra scalar broadcast as a constant channel.

        Args:
            images: (B, 1, *image_shape).
            extras: (B, E) with E = ``config.extra_inputs`` (None when E = 0).

        Returns:
            (B, 1 + E, *image_shape).
        """
        expected = (1, *self.image_shape)
        if images.dim() != 2 + self.spatial_dims or tuple(images.shape[1:]) != expected:
            raise InputError(f"images must be (B, {', '.join(map(str, expected))}) for this baseline, got "
                             f"{tuple(images.shape)}; preprocess the images to the shape the network was built for")
        e, b = self.config.extra_inputs, images.shape[0]
        if extras is None:
            extras = images.new_zeros((b, 0))
        if extras.dim() != 2 or tuple(extras.shape) != (b, e):
            raise InputError(f"extras must be (B, E) = ({b}, {e}) (extra_inputs={e}), got {tuple(extras.shape)}; "
                             "give one row of extra scalars per image")
        if e == 0:
            return images
        planes = extras.to(images)[(...,) + (None,) * self.spatial_dims]  # (B, E, 1, ..., 1)
        return torch.cat([images, planes.expand(-1, -1, *self.image_shape)], dim=1)  # (B, 1 + E, *shape)

    def forward(self, images: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) values (regression, in the units the network was trained in) or (B, K) logits."""
        out = self.network(self.inputs(images, extras))
        if isinstance(out, tuple):  # MONAI ViT returns (class-token head output, hidden states per block)
            out = out[0]
        return out.squeeze(-1) if self.config.task == "regression" else out  # (B,) or (B, K)


def build_baseline(config: BaselineConfig, spatial_dims: int, image_shape: Sequence[int]) -> BaselineNet:
    """A fresh `BaselineNet` (random weights from the global RNG; `train_baseline` seeds it).

    Args:
        config: a `BaselineConfig` or a mapping of its fields.
        spatial_dims: 2 or 3.
        image_shape: spatial shape of the images, e.g. ``(32, 32, 32)``.

    Raises:
        SpecError: a config that does not validate.
        InputError: an image shape the architecture cannot take (a ViT patch that does not divide it, a volume
            smaller than DenseNet121's total stride), with the numbers and the fix.
    """
    return BaselineNet(parse_config(config), spatial_dims, image_shape)
