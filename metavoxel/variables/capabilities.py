"""Optional capabilities: what a `Variable` may declare beyond the protocol, and what the engine then does.

The `Variable` protocol is what every kind must implement. Some commands need more from some variables
(a continuous value's declared range, a categorical variable's labels, a scan reader, a frozen encoder);
a kind *declares* such a capability by having the members of one of the small runtime-checkable protocols
below, and the engine asks ``isinstance(variable, HasValueRange)`` — never ``getattr(variable, "range", ...)``.
A kind that declares none of them still trains, samples and predicts; it only skips what needs them.

Each capability is documented for plugin authors in docs/plugins.md ("Optional capabilities"), and the
meta-test ``tests/variables/test_declared_members.py`` fails when the engine reads a variable attribute
that is neither a protocol member nor listed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from metavoxel.variables.protocol import SpatialHead, Variable

if TYPE_CHECKING:
    from metavoxel.io import PreparedImage, Preprocessor

from metavoxel.variables.fast_path import FusedDiscrete, FusedGaussian

__all__ = ["CAPABILITIES", "ClipsDenoised", "DeclaresRoundTrip", "FusedDiscrete", "FusedGaussian", "HasCategories",
           "HasLossMap", "HasValueRange", "HasVoxelGrid", "OwnsFrozenEncoder", "PreparesScans", "capability_members", "is_lossless", "voxel_grid"]


@runtime_checkable
class HasValueRange(Protocol):
    """A scalar whose values are real numbers in a declared closed interval, in the variable's own units.

    Used by: data loading (values outside are refused or clipped, ``data.out_of_range``), ``sample --fix``
    (a value outside is refused), evaluation (a continuous variable used as a class is thresholded at the
    midpoint), the model card, and the conformance suite (sampled values stay inside).
    """

    value_range: tuple[float, float]  # (lo, hi), lo < hi


@runtime_checkable
class HasCategories(Protocol):
    """A scalar whose values are class indices ``0..K-1`` (long) into ``categories``, its K labels.

    Used by: ``predict`` (one probability column per label), the ``sample`` table, evaluation and the
    likelihood classifier (both need the labels), the model card, and the conformance suite (sampled
    indices are in ``0..K-1``).
    """

    categories: Sequence[str]


@runtime_checkable
class HasVoxelGrid(Protocol):
    """An image whose values are voxels ``(B, channels, *shape)`` — which may differ from its diffusion grid
    (``head.shape``), e.g. for a latent kind. Used by data checks (NIfTI dimensionality), masks and writers.
    Without it, an image variable's value grid is taken to be its head's grid."""

    channels: int
    shape: tuple[int, ...]


@runtime_checkable
class PreparesScans(Protocol):
    """An image that reads arbitrary scans: ``prepare(path)`` brings a NIfTI onto the model grid.

    ``preprocessor`` is the `metavoxel.Preprocessor` doing it, or None when the spec has no preprocessing
    (then inputs must already be on the grid and ``prepare`` raises `metavoxel.InputError`). Used by
    ``sample --fix image=scan.nii.gz`` (results are written back into the scan's own grid) and by the latent
    cache key.
    """

    preprocessor: Preprocessor | None

    def prepare(self, text: str) -> PreparedImage:
        """A NIfTI file on the model grid, with the affine that writing results back needs."""


@runtime_checkable
class OwnsFrozenEncoder(Protocol):
    """A variable diffused in the latent space of a frozen autoencoder ``vae`` (encode/decode go through it).

    ``vae`` is a `torch.nn.Module` with ``encode(x) -> (mu, sigma)``; ``z_shape`` is the per-record latent
    shape; ``scale_factor`` multiplies the encoder's mean into z0. Used by ``train-vae`` (trains ``vae``),
    ``encode`` and ``train --cache`` (latents are cached, keyed by the encoder's weights, architecture and
    scale factor) and ``evaluate --features vae`` (the encoder's features for FID/MMD).
    """

    vae: torch.nn.Module
    z_shape: tuple[int, ...]
    scale_factor: float


@runtime_checkable
class DeclaresRoundTrip(Protocol):
    """``lossless = False`` says ``decode(encode(v))`` only approximates ``v`` (a VAE); the conformance
    suite then skips the exact round-trip check. Without it, the round trip must be exact."""

    lossless: bool


@runtime_checkable
class ClipsDenoised(Protocol):
    """``x0_range = (lo, hi)``: where clean z lies. The engine clips each reverse step's estimate of z0 to
    it (also on the fused kernel path), so samples stay in the data's domain; None: no clipping.
    `metavoxel.GaussianVariable` declares it (None by default)."""

    x0_range: tuple[float, float] | None


@runtime_checkable
class HasLossMap(Protocol):
    """A spatial variable whose loss can be read per location: ``loss_map(out, target) -> (B, *head.shape)``, whose
    mean over the locations equals ``loss(out, target)``. Used by typicality (`metavoxel.diffusion.typicality`):
    its local image statistic and the score of a masked image need where on the grid a record denoises badly.
    Without it, an image is scored by its global loss only. `mv.GaussianVariable` declares it."""

    def loss_map(self, out: torch.Tensor, target: object) -> torch.Tensor:
        """Per-location loss (B, *head.shape)."""


# The fused fast path is a capability too; it lives beside the dataclasses it returns (fast_path.py).
CAPABILITIES: tuple[type, ...] = (HasValueRange, HasCategories, HasVoxelGrid, PreparesScans, OwnsFrozenEncoder,
                                  DeclaresRoundTrip, ClipsDenoised, HasLossMap, FusedGaussian, FusedDiscrete)


def capability_members() -> dict[str, type]:
    """Every member a capability declares -> the capability declaring it."""
    members: dict[str, type] = {}
    for cap in CAPABILITIES:
        names = set(getattr(cap, "__annotations__", {})) | {n for n, v in vars(cap).items()
                                                            if callable(v) and not n.startswith("_")}
        members.update({name: cap for name in names})
    return members


def voxel_grid(variable: Variable) -> tuple[int, tuple[int, ...]]:
    """(channels, shape) of an image variable's values: its `HasVoxelGrid` members, else its head's grid.

    Raises:
        TypeError: the variable has no spatial head.
    """
    if isinstance(variable, HasVoxelGrid):
        return int(variable.channels), tuple(variable.shape)
    if not isinstance(variable.head, SpatialHead):
        raise TypeError(f"{variable.name} is not an image variable (its head is {type(variable.head).__name__})")
    return int(variable.head.channels), tuple(variable.head.shape)


def is_lossless(variable: Variable) -> bool:
    """True unless the variable declares ``lossless = False`` (`DeclaresRoundTrip`)."""
    return not isinstance(variable, DeclaresRoundTrip) or bool(variable.lossless)
