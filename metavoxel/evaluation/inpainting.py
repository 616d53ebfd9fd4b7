"""How well an inpainted image fills its generated region: error against the truth, and the seam.

An inpainting keeps the voxels of a keep-mask and generates the rest. Two questions, per image:

- **Region error**: root-mean-square difference between the generated voxels and the true ones. Alone it
  rewards blur; compare it with the same error of an unconditional sample (which knows nothing of the
  kept part) — a conditioned fill should be clearly closer (the conditioning issue asks for <= 0.7x).
- **Seam ratio**: the mean gradient magnitude on the generated voxels that touch the kept region (the
  border layer) over that on the generated voxels further in. A fill that continues the kept part has a
  ratio near that of the true image (1 for any linear ramp, whatever the mask); a visible seam — an edge
  along the mask border — raises it. Gradients are central differences (`torch.gradient`), so a border
  voxel's gradient spans the border.

What the numbers cannot show: the region error of a single sample mixes bias and the sample's own
spread (two perfect samples of a broad posterior differ from the truth too), so read it against the
unconditional figure, not against 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["border_layer", "region_error", "seam_ratio"]


def _spatial(images: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, *S) images and a (N|1, 1|C, *S) keep-mask as float64 and bool, broadcast to (N, C, *S)."""
    if images.dim() not in (4, 5):
        raise ValueError(f"images must be (N, C, X, Y) or (N, C, X, Y, Z), got shape {tuple(images.shape)}")
    keep = torch.as_tensor(keep).bool()
    if keep.dim() != images.dim():
        raise ValueError(f"keep-mask of shape {tuple(keep.shape)} does not match images of shape {tuple(images.shape)}")
    return images.double(), keep.expand_as(images)


def border_layer(keep: torch.Tensor) -> torch.Tensor:
    """Generated voxels with a kept voxel among their face neighbours: (N, C, *S) bool, from a keep-mask of
    the same shape (True = kept)."""
    d = keep.dim() - 2
    kept = keep.double()
    touched = torch.zeros_like(kept, dtype=torch.bool)
    for axis in range(d):
        size = [1] * d
        size[axis] = 3
        pad = [p for a in reversed(range(d)) for p in ((1, 1) if a == axis else (0, 0))]
        window = F.pad(kept, pad)
        pooled = (F.max_pool3d if d == 3 else F.max_pool2d)(window.flatten(0, 1).unsqueeze(1), size, stride=1)
        touched |= pooled.reshape(kept.shape) > 0
    return touched & ~keep


def region_error(images: torch.Tensor, truth: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """RMS of ``images - truth`` over the generated voxels (``~keep``): (N,) float64.

    Args:
        images, truth: (N, C, *S) on one grid, in one intensity unit.
        keep: (N|1, 1|C, *S) keep-mask, True (non-zero) = kept.

    Raises:
        ValueError: shapes that do not match, or an image with no generated voxel.
    """
    images, keep = _spatial(images, keep)
    generated = (~keep).flatten(1)
    if not bool(generated.any(dim=1).all()):
        raise ValueError("every voxel of some image is kept: there is no generated region to score")
    sq = ((images - truth.double()) ** 2).flatten(1)
    return ((sq * generated).sum(1) / generated.sum(1)).sqrt()


def seam_ratio(images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude on the border layer over that inside the generated region: (N,) float64.

    Args:
        images: (N, C, *S) inpainted images (the kept voxels in place).
        keep: (N|1, 1|C, *S) keep-mask, True (non-zero) = kept.

    Returns:
        One ratio per image (NaN where the generated region has no voxel off the border, or is flat inside).

    Raises:
        ValueError: shapes that do not match.
    """
    images, keep = _spatial(images, keep)
    d = images.dim() - 2
    grads = torch.gradient(images, dim=tuple(range(2, 2 + d)))
    magnitude = torch.sqrt(sum(g ** 2 for g in grads)).flatten(1)  # (N, C·S)
    border = border_layer(keep).flatten(1)
    inside = (~keep).flatten(1) & ~border
    mean = lambda m: (magnitude * m).sum(1) / m.sum(1)  # noqa: E731 - NaN on an empty set, as documented
    return mean(border) / mean(inside)
