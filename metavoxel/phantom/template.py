"""A user-supplied T1 template as the anatomy: resampled once onto the phantom grid, then warped per subject.

Loading (once per file, grid and field of view; cached):

1. read the NIfTI (any orientation, any voxel size; one channel). Foreground = voxels above 10 % of the
   99th percentile of the positive voxels; the template must be **skull-stripped** (all of the
   foreground is treated as brain).
2. shift it so the centre of the foreground's bounding box is the world origin, Gaussian-blur it when the
   phantom voxels are coarser (σ = ½ √(r² − 1) source voxels for a size ratio r: no aliasing), and
   resample it (trilinear, through world coordinates) onto the phantom grid — the canonical space.
3. divide by the WM level (the histogram mode of the foreground's upper half), so WM ≈ 1; the GM level
   ``g`` is the histogram mode within [0.35, 0.9] (0.6 when that band is nearly empty); the ventricle
   centre ``c_v`` is the centroid of the dark (< g / 2) voxels within 35 mm of the centre (the centre
   itself when they make less than 0.5 mL) — all three measured on the native voxels, before blurring
   mixes the tissues.

Per subject, at canonical points ``p`` (`metavoxel.phantom.cohort.anatomy_coords`: sex and global scale,
aspect, deformation and misregistration already applied) the template is read at

    p_1 = p / b,   b = 1 - 0.03 x                                    (global brain shrinkage)
    p_2 = c_v + (p_1 - c_v) / (1 + α exp(-|p_1 - c_v|² / (2 · 25²))),   α = V - 1   (central expansion)

with ``V`` the ventricle scale of the age laws, so the region around the ventricles is magnified by ``V``
and fades back to identity ~50 mm out (the map is monotone for every α > -0.7). Intensities then go
through the piecewise-linear map with knots (0, 0), (g/2, g/2), (g, g'), (1, 1) (identity above 1),
``g' = g + 0.375 x (1 - g)``: GM moves toward WM, CSF and WM stay. The mask is sampled > 0.05.

What it cannot model: cortical thinning and sulcal widening as such (only the global shrinkage and the
contrast change reach the cortex), new folding patterns (every subject is one anatomy, deformed), and
tissue-specific atrophy; intensity bands assume T1 contrast (CSF < GM < WM), and partial-volume voxels
between CSF and WM whose value falls in the GM band brighten with age like GM does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metavoxel.errors import InputError
from metavoxel.phantom.config import PhantomConfig, grid_affine
from metavoxel.phantom.model import Draws, age_laws

__all__ = ["Template", "load_template", "template_brain"]

EXPANSION_RADIUS_MM, MASK_LEVEL, CENTRE_SEARCH_MM = 25.0, 0.05, 35.0


@dataclass(frozen=True)
class Template:
    """A template on the canonical grid: ``volume`` (1, 1, X, Y, Z), WM ≈ 1, brain centre at the origin."""

    volume: torch.Tensor
    half_extent_mm: tuple[float, float, float]  # grid centre to the outermost voxel centre, per axis
    grid_centre_mm: tuple[float, float, float]  # world mm of the grid centre (size - 1) / 2: 0 or -voxel / 2
    wm_raw: float
    gm_level: float
    ventricle_centre_mm: tuple[float, float, float]
    brain_centre_world_mm: tuple[float, float, float]  # in the template file's own world


def load_template(path: str | Path, config: PhantomConfig) -> Template:
    """The template at ``path`` on ``config``'s grid (module docstring), cached per file version and grid."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"template: file {str(path)!r} does not exist; give a skull-stripped T1 NIfTI "
                         "(e.g. MNI152_T1_1mm_brain.nii.gz) or leave the template out for the procedural brain")
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size, tuple(config.size), tuple(config.fov_mm))


@functools.lru_cache(maxsize=4)
def _load(path: str, _mtime: int, _bytes: int, size: tuple[int, int, int], fov: tuple[float, ...]) -> Template:
    from monai.transforms import GaussianSmooth

    from metavoxel.io.nifti import read_nifti
    from metavoxel.io.resample import resample_to_grid, voxel_sizes

    config = PhantomConfig(size=size, fov_mm=fov, subjects=1)
    data, affine = read_nifti(path, what="template")  # (C, X, Y, Z)
    if data.shape[0] != 1:
        raise InputError(f"template: {path!r} has {data.shape[0]} channels; give a single 3D T1 image")
    positive = data[data > 0]
    if positive.size < 1000:
        raise InputError(f"template: {path!r} has only {positive.size} positive voxels; give a skull-stripped T1 "
                         "brain with intensities > 0 inside the brain and 0 outside")
    threshold = 0.1 * float(np.percentile(positive, 99))
    index = np.argwhere(data[0] > threshold)
    middle = (index.min(axis=0) + index.max(axis=0)) / 2
    centre = (affine @ np.r_[middle, 1.0])[:3]
    shifted = affine.copy()
    shifted[:3, 3] -= centre

    # intensity levels from the native voxels, before blurring mixes the tissues
    values = data[0][data[0] > threshold]
    median = float(np.median(values))
    wm_raw = _mode(values[values >= median], median, float(np.percentile(values, 99.5)))
    normalised = values / wm_raw
    band = normalised[(normalised > 0.35) & (normalised < 0.9)]
    gm = _mode(band, 0.35, 0.9) if band.size > 0.01 * normalised.size else 0.6

    ratio = min(config.voxel_mm) / voxel_sizes(affine, 3)
    sigma = 0.5 * np.sqrt(np.clip(ratio ** 2 - 1, 0, None))
    volume = torch.from_numpy(data)
    if (sigma > 0).any():
        volume = torch.as_tensor(GaussianSmooth(sigma=sigma.tolist())(volume)).float()
    volume = resample_to_grid(volume, shifted, grid_affine(config), config.size)  # (1, X, Y, Z)
    if int((volume > threshold).sum()) < 100:
        raise InputError(f"template: {path!r} lands almost entirely outside the {list(config.fov_mm)} mm field of "
                         "view; check its affine (voxel sizes in mm) or widen fov_mm")
    volume /= wm_raw
    half = tuple(float((n - 1) / 2 * v) for n, v in zip(config.size, config.voxel_mm))
    grid_centre = tuple(float(((n - 1) / 2 - n // 2) * v) for n, v in zip(config.size, config.voxel_mm))
    ventricles = _ventricle_centre(data[0], affine, centre, gm * wm_raw / 2)
    return Template(volume=volume[None].contiguous(), half_extent_mm=half, grid_centre_mm=grid_centre,
                    wm_raw=float(wm_raw), gm_level=float(gm), ventricle_centre_mm=tuple(float(c) for c in ventricles),
                    brain_centre_world_mm=tuple(float(c) for c in centre))


def _mode(values: np.ndarray, lo: float, hi: float, bins: int = 50) -> float:
    """Centre of the fullest of ``bins`` equal bins over [lo, hi]."""
    lo, hi = float(lo), float(hi)
    if hi - lo <= 1e-3 * max(abs(hi), 1e-12):  # (nearly) one value: its median is its mode
        return float(np.median(values))
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    k = int(np.argmax(counts))
    return float((edges[k] + edges[k + 1]) / 2)


def _ventricle_centre(data: np.ndarray, affine: np.ndarray, centre: np.ndarray, dark: float) -> np.ndarray:
    """Centroid (mm from the brain centre) of the native voxels darker than ``dark`` within 35 mm of it.

    Args:
        data: (X, Y, Z) native template; affine: its (4, 4); centre: the brain centre in its world (3,).
    """
    from metavoxel.io.resample import voxel_sizes

    middle = np.linalg.solve(affine, np.r_[centre, 1.0])[:3]
    reach = CENTRE_SEARCH_MM / voxel_sizes(affine, 3).min()
    lo = np.clip(np.floor(middle - reach), 0, None).astype(int)
    hi = np.minimum(np.ceil(middle + reach).astype(int) + 1, data.shape)
    index = np.argwhere(data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] < dark) + lo  # (K, 3)
    offset = index @ affine[:3, :3].T + affine[:3, 3] - centre  # (K, 3) mm from the centre
    offset = offset[(offset ** 2).sum(axis=1) < CENTRE_SEARCH_MM ** 2]
    if len(offset) * abs(np.linalg.det(affine[:3, :3])) < 500.0:
        return np.zeros(3)
    return offset.mean(axis=0)


def template_brain(template: Template, coords: list[np.ndarray],
                   draws: Draws) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The template warped by the subject's age laws (module docstring).

    Returns:
        clean (X, Y, Z) intensities, the bool brain mask (X, Y, Z), and the template-specific truth.
    """
    laws = age_laws(draws.x, draws.jitter, gm_base=template.gm_level)
    shrink, alpha = laws.brain_shrink, laws.ventricle_scale - 1.0
    centre = template.ventricle_centre_mm
    q = [c / shrink - m for c, m in zip(coords, centre)]
    r2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
    factor = 1.0 / (1.0 + alpha * np.exp(r2 / (-2.0 * EXPANSION_RADIUS_MM ** 2)))
    source = [(m + qi * factor - o) / h for qi, m, o, h in zip(q, centre, template.grid_centre_mm,
                                                                template.half_extent_mm)]  # in [-1, 1]
    grid = torch.from_numpy(np.stack(source[::-1], axis=-1))[None]  # (1, X, Y, Z, 3); reads (last axis, ..., first)
    sampled = F.grid_sample(template.volume, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)[0, 0].numpy()
    g, g_new = template.gm_level, laws.gm_intensity
    knee = g / 2
    clean = np.where(sampled < knee, sampled,
                     np.where(sampled < g, knee + (sampled - knee) * ((g_new - knee) / (g - knee)),
                              np.where(sampled < 1.0, g_new + (sampled - g) * ((1.0 - g_new) / (1.0 - g)), sampled)))
    truth = {"brain_shrink": round(shrink, 4), "gm_intensity": round(g_new, 4), "template_gm_level": round(g, 4),
             "template_wm_raw": round(template.wm_raw, 4), "ventricle_centre_mm": [round(c, 2) for c in centre],
             "expansion_radius_mm": EXPANSION_RADIUS_MM}
    return clean, sampled > MASK_LEVEL, truth
