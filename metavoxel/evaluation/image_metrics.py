"""Realism and diversity of generated volumes: three-plane FID and MMD on slice features, and MS-SSIM.

FID (Heusel et al. 2017) between real features ``x`` and generated features ``y``, Gaussians fitted by the
sample mean and the unbiased covariance::

    FID = |mu_x - mu_y|^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2))

This is MONAI's ``FIDMetric`` formula with the same estimators; the trace of the matrix square root is taken
as ``sum_i sqrt(lambda_i)``, ``lambda_i`` the eigenvalues of the symmetric PSD ``S_x^(1/2) S_y S_x^(1/2)``
(similar to ``S_x S_y``), with ``torch.linalg.eigh`` in float64. That is exact, never complex, and needs no
SciPy (which MONAI's ``FIDMetric`` imports for ``sqrtm`` and metavoxel does not depend on). With fewer
feature vectors than features the covariances are rank-deficient: FID is still defined, but biased upward
and noisy, and the report carries a ``"warning"``.

MMD is MONAI's ``MMDMetric``: the unbiased MMD^2 of Gretton et al. 2012 (eq. 3) with the kernel
``phi(x) . phi(y)`` of its ``y_mapping``. A plain identity mapping would give a linear kernel, which only
compares means; here ``phi`` are 1024 random Fourier features (Rahimi & Recht 2007) of a Gaussian kernel
``exp(-|x - y|^2 / (2 sigma^2))`` whose bandwidth ``sigma`` is the median distance between real feature
vectors, so the kernel is fixed by the real set and models scored against it share it. ``MMDMetric`` needs
as many generated as real vectors: the larger set is subsampled (seeded) to the size of the smaller.
"""

from __future__ import annotations

import itertools
import math

import torch

from metavoxel.errors import InputError
from metavoxel.evaluation.features import AXIS_PLANE, FeatureNetwork

__all__ = ["fid_mmd_3plane", "frechet_distance", "gaussian_mmd", "ms_ssim_config", "ms_ssim_diversity"]

MMD_FEATURES = 1024
DEFAULT_PAIRS = 200
# Wang et al. 2003, the five-scale MS-SSIM exponents, finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_features(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"{what}: expected (M, F) features with M >= 2 vectors, got {tuple(x.shape)}; "
                         "give more volumes, or keep empty slices (skip_empty=False)")
    return x.double()


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (see the module docstring); rounding below 0 is reported as 0.

    Args:
        real: (M, F) features of real images.
        fake: (M', F) features of generated images.
    """
    x, y = _check_features(real, "FID real features"), _check_features(fake, "FID generated features")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"FID: real features have {x.shape[1]} dims, generated {y.shape[1]}; use one network")
    sx, sy = torch.cov(x.T), torch.cov(y.T)  # (F, F) unbiased
    root = _psd_sqrt(sx)
    eig = torch.linalg.eigvalsh(root @ sy @ root).clamp_min(0)  # spectrum of S_x S_y
    fid = (x.mean(0) - y.mean(0)).square().sum() + sx.trace() + sy.trace() - 2 * eig.sqrt().sum()
    return max(float(fid), 0.0)


def gaussian_mmd(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0,
                 num_features: int = MMD_FEATURES) -> tuple[float, float]:
    """Unbiased MMD^2 with a median-bandwidth Gaussian kernel via MONAI ``MMDMetric`` (module docstring).

    Args:
        real: (M, F) features of real images; they fix the bandwidth.
        fake: (M', F) features of generated images.
        seed: seeds the subsampling and the random Fourier features.
        num_features: random Fourier features D.

    Returns:
        (MMD^2, sigma). The unbiased estimate can be slightly negative when the sets match.
    """
    from monai.metrics import MMDMetric

    x, y = _check_features(real, "MMD real features"), _check_features(fake, "MMD generated features")
    generator = torch.Generator().manual_seed(seed)
    probe = x[torch.randperm(x.shape[0], generator=generator)[:512]]
    distances = torch.cdist(probe, probe)
    off_diagonal = distances[~torch.eye(probe.shape[0], dtype=torch.bool)]
    sigma = float(off_diagonal.median())
    sigma = sigma if sigma > 0 else 1.0
    w = torch.randn(x.shape[1], num_features, generator=generator, dtype=torch.float64) / sigma  # (F, D)
    b = torch.rand(num_features, generator=generator, dtype=torch.float64) * 2 * math.pi

    def phi(v: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2.0 / num_features) * torch.cos(v @ w + b)  # (M, D); phi(a).phi(b) ~ k(a, b)

    k = min(x.shape[0], y.shape[0])
    x = x[torch.randperm(x.shape[0], generator=generator)[:k]]
    y = y[torch.randperm(y.shape[0], generator=generator)[:k]]
    return float(MMDMetric(y_mapping=phi)(x, y)), sigma


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    for what, v in (("real", real), ("generated", fake)):
        if not torch.is_tensor(v) or v.ndim != 5 or v.shape[1] != 1 or v.shape[0] < 1:
            shape = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
            raise InputError(f"{what} volumes: expected (N, 1, D, H, W) with N >= 1, got {shape}")
    if real.shape[2:] != fake.shape[2:]:
        raise InputError(f"real volumes are {tuple(real.shape[2:])} but generated ones {tuple(fake.shape[2:])}; "
                         "resample both to the model grid before scoring")


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    kept = [p for p in parts if p.shape[0]]  # a batch of only empty slices may come back as (0, 0)
    return torch.cat(kept) if kept else torch.zeros(0, 0)


def fid_mmd_3plane(real: torch.Tensor, fake: torch.Tensor, network: FeatureNetwork, *, batch_size: int = 16,
                   seed: int = 0) -> dict:
    """FID and MMD^2 of slice features in the axial, coronal and sagittal planes, and their means.

    Args:
        real: (N, 1, D, H, W) real volumes.
        fake: (M, 1, D, H, W) generated volumes, same grid and intensity range.
        network: a `FeatureNetwork` (see `metavoxel.evaluation.feature_network`).
        batch_size: volumes per feature pass.
        seed: seeds the MMD subsampling and kernel features.

    Returns:
        ``{"network", "comparable", "planes": {plane: {"fid", "mmd", "mmd_sigma", "n_real", "n_fake"}},
        "fid", "mmd", "n_real", "n_fake"}`` with per-plane feature-vector counts and the volume counts at the
        top; ``"warning"`` when a plane has no more feature vectors than features.
    """
    _check_pair(real, fake)
    if not isinstance(network, FeatureNetwork):
        raise InputError(f"expected a FeatureNetwork (name, comparable, plane_features), got "
                         f"{type(network).__name__}; build one with metavoxel.evaluation.feature_network")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    features: dict[str, dict[int, list[torch.Tensor]]] = {"real": {}, "fake": {}}
    for which, volumes in (("real", real), ("fake", fake)):
        for start in range(0, volumes.shape[0], batch_size):
            batch = volumes[start:start + batch_size]
            for axis in AXIS_PLANE:  # consecutive axes of one batch share an encoder pass
                features[which].setdefault(axis, []).append(network.plane_features(batch, axis))
    planes, short = {}, []
    for axis, plane in sorted(AXIS_PLANE.items(), key=lambda item: -item[0]):  # axial, coronal, sagittal
        x, y = _stack(features["real"][axis]), _stack(features["fake"][axis])
        if min(x.shape[0], y.shape[0]) <= x.shape[-1]:
            short.append(f"{plane} {x.shape[0]} real / {y.shape[0]} generated")
        mmd, sigma = gaussian_mmd(x, y, seed=seed)
        planes[plane] = {"fid": frechet_distance(x, y), "mmd": mmd, "mmd_sigma": sigma,
                         "n_real": int(x.shape[0]), "n_fake": int(y.shape[0])}
    out = {"network": network.name, "comparable": bool(network.comparable), "planes": planes,
           "fid": sum(p["fid"] for p in planes.values()) / 3, "mmd": sum(p["mmd"] for p in planes.values()) / 3,
           "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0])}
    if short:
        out["warning"] = (f"no more feature vectors than the {x.shape[-1]} features ({', '.join(short)}): the "
                          "covariances are rank-deficient, so FID is biased upward and noisy; score more volumes")
    return out


def ms_ssim_config(spatial_shape: tuple[int, ...], *, largest: int = 11, smallest: int = 7
                   ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """MS-SSIM kernel size and scale weights that fit a volume.

    MONAI's MS-SSIM uses an unpadded Gaussian window (sigma 1.5) at every scale and halves the volume
    between scales, and requires ``side // max(1, L - 1)^2 >= kernel`` for L scales. The standard
    setting (L = 5, kernel 11) needs 176 voxels per side. So: the most scales L <= 5 at which one odd
    kernel size in [``smallest``, ``largest``] fits every axis (``side // 2^(L-1)`` and MONAI's bound),
    with the largest such kernel; the weights are the first L standard exponents renormalised to sum 1.
    32^3 gives 3 scales with kernel 7, 64^3 4 scales with 7, 96^3 4 with 9, 128^3 5 with 7.

    Returns:
        (kernel size per axis, weights).
    """
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        room = min(min(s // 2 ** (scales - 1), s // max(1, scales - 1) ** 2) for s in spatial_shape)
        kernel = min(largest, room if room % 2 else room - 1)
        if kernel >= smallest or (scales == 1 and kernel >= 3):
            weights = MS_SSIM_WEIGHTS[:scales]
            return (kernel,) * len(spatial_shape), tuple(w / sum(weights) for w in weights)
    raise InputError(f"volumes of shape {tuple(spatial_shape)} are too small for MS-SSIM; every axis needs at "
                     "least 3 voxels")


@torch.no_grad()
def ms_ssim_diversity(volumes: torch.Tensor, *, pairs: int | None = None, seed: int = 0,
                      value_range: tuple[float, float] = (0.0, 1.0), batch_size: int = 4) -> float:
    """Mean MS-SSIM (Wang et al. 2003) over pairs of distinct generated volumes: 1 for identical volumes,
    lower for more diverse ones. MONAI ``MultiScaleSSIMMetric`` (3D, data range 1 after mapping
    ``value_range`` to [0, 1]) with the kernel and scales of `ms_ssim_config`.

    Args:
        volumes: (N, 1, D, H, W) generated volumes, N >= 2.
        pairs: how many pairs (i < j) to score, drawn at random without replacement (seeded). None: all
            N (N - 1) / 2 pairs, or `DEFAULT_PAIRS` random ones when there are more.
        seed: seeds the choice of pairs.
        value_range: intensity range of the volumes.
        batch_size: pairs per MS-SSIM call.
    """
    from monai.metrics import MultiScaleSSIMMetric

    if not torch.is_tensor(volumes) or volumes.ndim != 5 or volumes.shape[1] != 1 or volumes.shape[0] < 2:
        shape = tuple(volumes.shape) if torch.is_tensor(volumes) else type(volumes).__name__
        raise InputError(f"MS-SSIM diversity: expected (N, 1, D, H, W) volumes with N >= 2, got {shape}; "
                         "generate at least two volumes")
    if pairs is not None and pairs < 1:
        raise InputError(f"MS-SSIM diversity: pairs must be >= 1 or None (all), got {pairs}")
    every = list(itertools.combinations(range(volumes.shape[0]), 2))
    count = min(len(every), DEFAULT_PAIRS if pairs is None else pairs)
    if count < len(every):
        chosen = torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))[:count]
        every = [every[int(i)] for i in chosen.sort().values]
    lo, hi = value_range
    x = ((volumes.float() - lo) / (hi - lo)).clamp(0, 1)
    kernel, weights = ms_ssim_config(tuple(x.shape[2:]))
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=kernel, weights=weights)
    for start in range(0, len(every), batch_size):
        first, second = zip(*every[start:start + batch_size])
        metric(x[list(first)], x[list(second)])  # (B, 1) per call, kept in the metric's buffer
    return float(metric.aggregate())
