"""Resampling between voxel grids in world coordinates, and writing model-grid results back onto a scan's grid.

Conventions (shared with `metavoxel.io.preprocess`):

* World space is nibabel's RAS+ millimetres: +x to the subject's Right, +y Anterior, +z Superior.
* An affine maps integer voxel indices, taken at voxel *centres*, to world: ``(x, y, z, 1) = A @ (i, j, k, 1)``.
  Affines are stored 4×4 as in NIfTI; a 2D image lives in the world x–y plane and uses the in-plane part
  (rows and columns 0, 1 and the translation column), which `spatial_affine` extracts.
* Volumes are channel-first: (C, *spatial).

Resampling a volume from grid S onto grid D evaluates, for every voxel ``v`` of D, the source at voxel
coordinate ``inv(A_S) @ A_D @ v`` (trilinear/bilinear or nearest). Points outside S read 0: the volume is
taken as 0 beyond its outermost voxel centres, so linear interpolation fades to 0 within one voxel of the
edge (``torch.nn.functional.grid_sample`` with ``align_corners=True`` and zero padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from metavoxel.errors import InputError

if TYPE_CHECKING:
    from metavoxel.io.preprocess import PreparedImage

__all__ = ["cover_mask", "embed_affine", "inside_grid", "resample_to_grid", "restore_intensity", "spatial_affine", "to_source_grid", "voxel_sizes"]

_CHUNK_VOXELS = 1 << 21  # destination voxels per grid_sample call: bounds the coordinate buffers (~50 MB)
_MODES = {"linear": "bilinear", "nearest": "nearest"}  # grid_sample's "bilinear" is trilinear on 5D inputs


def spatial_affine(affine: np.ndarray | torch.Tensor, spatial_dims: int) -> np.ndarray:
    """The (d+1)×(d+1) voxel-to-world affine of a d-dimensional grid from a 4×4 (or already (d+1)×(d+1)) one.

    For d = 2 the in-plane part is kept: rows/columns 0 and 1 plus the translation column.
    """
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if a.shape == (spatial_dims + 1, spatial_dims + 1):
        return a.copy()
    if a.shape != (4, 4):
        raise ValueError(f"expected a 4×4 or {spatial_dims + 1}×{spatial_dims + 1} affine, got shape {a.shape}")
    keep = [*range(spatial_dims), 3]
    return a[np.ix_(keep, keep)]


def embed_affine(affine: np.ndarray) -> np.ndarray:
    """A (d+1)×(d+1) affine (d = 2 or 3) as the 4×4 NIfTI affine; a 2D grid sits in the plane z = 0."""
    a = np.asarray(affine, dtype=np.float64)
    d = a.shape[0] - 1
    out = np.eye(4)
    out[:d, :d] = a[:d, :d]
    out[:d, 3] = a[:d, d]
    return out


def voxel_sizes(affine: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Voxel size in mm along each voxel axis: the norms of the affine's columns, shape (d,)."""
    a = spatial_affine(affine, spatial_dims)
    return np.linalg.norm(a[:spatial_dims, :spatial_dims], axis=0)


def resample_to_grid(data: np.ndarray | torch.Tensor, src_affine: np.ndarray, dst_affine: np.ndarray,
                     dst_shape: Sequence[int], *,
                     interpolation: Literal["linear", "nearest"] = "linear") -> torch.Tensor:
    """Resample a volume from its grid onto another grid through world coordinates.

    Args:
        data: (C, *src_shape) volume on the source grid.
        src_affine: 4×4 (or (d+1)×(d+1)) voxel-to-world affine of ``data``.
        dst_affine: 4×4 (or (d+1)×(d+1)) voxel-to-world affine of the destination grid.
        dst_shape: destination spatial shape (d values).
        interpolation: "linear" (bi/trilinear) or "nearest".

    Returns:
        (C, *dst_shape) float32 tensor on the CPU; destination voxels outside the source grid are 0.
    """
    volume = torch.as_tensor(data).detach().to("cpu", torch.float32)
    d = volume.dim() - 1
    dst_shape = tuple(int(s) for s in dst_shape)
    if d not in (2, 3) or len(dst_shape) != d:
        raise ValueError(f"expected data (C, *spatial) with 2 or 3 spatial dims matching dst_shape {dst_shape}, "
                         f"got {tuple(volume.shape)}")
    xform = np.linalg.solve(spatial_affine(src_affine, d), spatial_affine(dst_affine, d))  # dst voxel -> src voxel
    src_shape = np.asarray(volume.shape[1:], dtype=np.float64)
    normalise = np.diag([*(2.0 / np.maximum(src_shape - 1, 1)), 1.0])  # align_corners=True: u -> 2u/(n-1) - 1
    normalise[:d, d] = -1.0
    to_grid = torch.as_tensor((normalise @ xform)[:d].T, dtype=torch.float64)  # (d+1, d): dst voxel -> grid coords
    axes = [torch.arange(n, dtype=torch.float64) for n in dst_shape]
    out = torch.empty((volume.shape[0], *dst_shape), dtype=torch.float32)
    rows = max(1, _CHUNK_VOXELS // max(1, math.prod(dst_shape[1:])))
    for start in range(0, dst_shape[0], rows):
        index = torch.meshgrid(axes[0][start:start + rows], *axes[1:], indexing="ij")
        voxels = torch.stack([*index, torch.ones_like(index[0])], dim=-1)  # (r, *rest, d+1)
        grid = (voxels @ to_grid).flip(-1).float()  # (r, *rest, d); grid_sample reads (x=last axis, ..., first)
        out[:, start:start + rows] = F.grid_sample(volume[None], grid[None], mode=_MODES[interpolation],
                                                   padding_mode="zeros", align_corners=True)[0]
    return out


def cover_mask(mask: np.ndarray | torch.Tensor, src_affine: np.ndarray, dst_affine: np.ndarray,
               dst_shape: Sequence[int]) -> np.ndarray:
    """A keep-mask moved to another grid so that nothing kept is lost: a destination voxel is kept when any kept
    source voxel overlaps it (a voxel partly kept is kept).

    Voxels are boxes around their centres. Each kept source voxel is probed at points spanning its box at most one
    destination voxel apart (along the shortest destination axis), just inside its faces (1e-4 of a source voxel)
    so that boxes that only touch do not count, and every destination voxel a probe falls in is kept. This is exact when the two grids'
    axes are parallel (any flips, permutations, spacings and shifts) and misses at most slivers narrower than
    the probe spacing for oblique grids. Nearest-neighbour resampling, by contrast, drops every kept voxel whose
    centre maps outside the destination's voxel centres (half a voxel shift loses a slab).

    Args:
        mask: (*src_shape) or (1, *src_shape) keep-mask on the source grid; non-zero = kept.
        src_affine: 4×4 (or (d+1)×(d+1)) voxel-to-world affine of ``mask``.
        dst_affine: 4×4 (or (d+1)×(d+1)) voxel-to-world affine of the destination grid.
        dst_shape: destination spatial shape (d values, d = 2 or 3).

    Returns:
        bool array (*dst_shape); kept source voxels outside the destination grid mark nothing.
    """
    dst_shape = tuple(int(s) for s in dst_shape)
    d = len(dst_shape)
    keep = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if keep.ndim == d + 1 and keep.shape[0] == 1:
        keep = keep[0]
    if d not in (2, 3) or keep.ndim != d:
        raise ValueError(f"expected a {d}D mask (*shape) or (1, *shape) for a {d}D grid, got {keep.shape}")
    xform = np.linalg.solve(spatial_affine(dst_affine, d), spatial_affine(src_affine, d))  # src voxel -> dst voxel
    step = np.linalg.norm(xform[:d, :d], axis=0)  # destination voxels per source voxel, along each source axis
    counts = [int(math.ceil(s)) + 1 for s in step]
    inset = 0.5 - 1e-4  # just inside the box: neighbours sharing a face do not overlap
    offsets = np.stack(np.meshgrid(*[np.linspace(-inset, inset, n) for n in counts], indexing="ij"), -1)
    offsets = offsets.reshape(-1, d) @ xform[:d, :d].T  # (P, d) probe offsets in destination voxels
    out = np.zeros(dst_shape, dtype=bool)
    kept = np.argwhere(keep != 0).astype(np.float64)  # (K, d) source voxel indices
    centres = kept @ xform[:d, :d].T + xform[:d, d]  # (K, d) in destination voxels
    per_chunk = max(1, _CHUNK_VOXELS // len(offsets))
    for start in range(0, len(centres), per_chunk):
        probes = np.rint(centres[start:start + per_chunk, None, :] + offsets[None]).reshape(-1, d).astype(np.int64)
        inside = ((probes >= 0) & (probes < np.asarray(dst_shape))).all(axis=1)
        out[tuple(probes[inside].T)] = True
    return out


def inside_grid(src_affine: np.ndarray, src_shape: Sequence[int], grid_affine: np.ndarray,
                grid_shape: Sequence[int]) -> np.ndarray:
    """Which voxels of a source grid have their centre within another grid's outermost voxel centres.

    There linear interpolation from that grid reads only its own voxels (no fading into the zero padding), so a
    value resampled from it is complete. Returns a bool array (*src_shape).
    """
    src_shape, grid_shape = tuple(int(s) for s in src_shape), tuple(int(s) for s in grid_shape)
    d = len(src_shape)
    xform = np.linalg.solve(spatial_affine(grid_affine, d), spatial_affine(src_affine, d))  # src voxel -> grid voxel
    upper, tol = np.asarray(grid_shape, dtype=np.float64) - 1, 1e-4
    out = np.empty(src_shape, dtype=bool)
    rows = max(1, _CHUNK_VOXELS // max(1, math.prod(src_shape[1:])))
    for start in range(0, src_shape[0], rows):  # slabs of the first axis bound the coordinate buffers
        index = np.indices((min(rows, src_shape[0] - start), *src_shape[1:]), dtype=np.float64)
        index[0] += start
        voxel = np.tensordot(xform[:d, :d], index, axes=1) + xform[:d, d].reshape(d, *[1] * d)  # (d, r, *rest)
        upper_b = upper.reshape(d, *[1] * d)
        out[start:start + rows] = ((voxel >= -tol) & (voxel <= upper_b + tol)).all(axis=0)
    return out


def to_source_grid(volume: np.ndarray | torch.Tensor, prepared: PreparedImage, *,
                   interpolation: Literal["linear", "nearest"] | None = None,
                   invert_intensity: bool = False) -> np.ndarray:
    """Map a volume on a prepared scan's model grid back onto the scan's own voxel grid.

    For every voxel ``ijk`` of the original file: ``world = source.affine @ ijk``, model voxel
    ``= inv(prepared.affine) @ world``, value interpolated there. Original voxels outside the model grid
    get 0 (the model never saw them; write the original scan's values there yourself if you want them).

    Args:
        volume: (C, *shape) or (*shape) on the model grid of ``prepared`` (e.g. an inpainted sample).
        prepared: the `PreparedImage` the volume belongs to.
        interpolation: "linear" or "nearest"; default: the interpolation the scan was prepared with.
        invert_intensity: map [0, 1] back to the scan's intensities with the recorded percentile values
            (``lo + v * (hi - lo)``, per channel) before resampling, so voxels outside the model grid stay 0
            in the scan's units. Off by default: the result stays in the model's [0, 1] scale.

    Returns:
        float32 array (C, *source.shape), or (*source.shape) if ``volume`` had no channel axis.
    """
    grid = tuple(prepared.tensor.shape[1:])
    values = torch.as_tensor(volume).detach().to("cpu", torch.float32)
    squeeze = values.dim() == len(grid)
    if squeeze:
        values = values[None]
    if tuple(values.shape[1:]) != grid:
        raise InputError(f"to_source_grid: expected a volume (C, {', '.join(map(str, grid))}) on the model grid of "
                         f"{str(prepared.source.path)!r}, got {tuple(values.shape)}; pass the image the model produced")
    if invert_intensity:
        values = restore_intensity(values, prepared)
    out = resample_to_grid(values, prepared.affine, prepared.source.affine, prepared.source.shape,
                           interpolation=interpolation or prepared.interpolation)
    return (out[0] if squeeze else out).numpy()


def restore_intensity(values: torch.Tensor, prepared: PreparedImage) -> torch.Tensor:
    """Undo the percentile scaling: ``lo + v * (hi - lo)`` per channel, for (C, *spatial) values.

    Values the scaling clipped (below percentile ``lo`` or above ``hi``) come back as ``lo`` or ``hi``.

    Raises:
        InputError: the scan was prepared without scaling, or the channel counts differ.
    """
    where = str(prepared.source.path)
    if prepared.intensity_range is None:
        raise InputError(f"{where!r} was prepared without percentile scaling, so there is no intensity range to "
                         "invert; leave invert_intensity off")
    ranges = torch.as_tensor(prepared.intensity_range, dtype=torch.float32)  # (C, 2)
    if ranges.shape[0] != values.shape[0]:
        raise InputError(f"the volume has {values.shape[0]} channel(s) but {where!r} was scaled per channel with "
                         f"{ranges.shape[0]}; pass a volume with the scan's channels")
    lo, hi = (ranges[:, k].reshape(-1, *[1] * (values.dim() - 1)) for k in (0, 1))  # (C, 1, ..., 1)
    return lo + values * (hi - lo)
