"""What a trained KL-VAE is measured by: reconstruction quality on held-out images (L1, PSNR, SSIM) and
the latent scale factor that gives the diffusion model unit-variance latents.

The scale factor follows latent diffusion (Rombach et al. 2022, sec. 3 and app. G):
``scale_factor = 1 / std(mu)``, the unbiased standard deviation over every element of the posterior means
``mu(x)`` of all training images, so that ``z0 = scale_factor * mu(x)`` (the ``image_latent`` convention)
has unit variance.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from metavoxel.errors import InputError
from metavoxel.vae.volumes import VolumeSet

__all__ = ["latent_scale_factor", "reconstruct", "reconstruction_metrics", "ssim_window"]


def ssim_window(spatial_shape: tuple[int, ...], largest: int = 11) -> list[int]:
    """The SSIM window per axis: ``largest`` (11, the usual Gaussian window) or the largest odd size that fits."""
    return [max(1, min(largest, s) - (1 - min(largest, s) % 2)) for s in spatial_shape]


@torch.no_grad()
def reconstruction_metrics(vae: torch.nn.Module, volumes: VolumeSet, *, batch_size: int, device: str | torch.device,
                           autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                           ) -> dict[str, float]:
    """Mean L1, PSNR and SSIM of ``x_hat = decode(mu(x))`` against ``x`` over every image of ``volumes``.

    The posterior mean is decoded (no sampling), so the numbers are deterministic. PSNR is MONAI's
    ``PSNRMetric(max_val=1)``; SSIM is ``SSIMMetric(data_range=1)`` with a Gaussian window of 11 (smaller
    on axes shorter than 11 voxels), both averaged over images.

    Args:
        vae: a MONAI ``AutoencoderKL``; put in eval mode here.
        volumes: images (C, *shape) in [0, 1].

    Returns:
        ``{"l1": ..., "psnr": ..., "ssim": ...}``.
    """
    from monai.metrics import PSNRMetric, SSIMMetric

    if len(volumes) == 0:
        raise InputError(f"{volumes.name}: no images to validate on; give at least one validation image")
    spatial = volumes.spatial_shape
    psnr = PSNRMetric(max_val=1.0)
    ssim = SSIMMetric(spatial_dims=len(spatial), data_range=1.0, win_size=ssim_window(spatial))
    vae.eval()
    l1_sum, count, psnr_values, ssim_values = 0.0, 0, [], []
    for x in volumes.batches(batch_size):
        x = x.to(device)
        with autocast():
            mu, _sigma = vae.encode(x)
            x_hat = vae.decode(mu)
        x_hat = x_hat.float().clamp(0, 1)
        l1_sum += (x_hat - x).abs().mean(dim=tuple(range(1, x.ndim))).sum().item()
        count += x.shape[0]
        psnr_values.append(psnr(x_hat, x).reshape(-1).cpu())  # (B,)
        ssim_values.append(ssim(x_hat, x).reshape(-1).cpu())  # (B,)
    return {"l1": l1_sum / count, "psnr": torch.cat(psnr_values).double().mean().item(),
            "ssim": torch.cat(ssim_values).double().mean().item()}


@torch.no_grad()
def reconstruct(vae: torch.nn.Module, volumes: VolumeSet, *, batch_size: int, device: str | torch.device,
                autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> torch.Tensor:
    """``decode(mu(x))`` clamped to [0, 1] for every image of ``volumes``: (N, C, *shape) float32 on the CPU."""
    vae.eval()
    out = []
    for x in volumes.batches(batch_size):
        with autocast():
            x_hat = vae.decode(vae.encode(x.to(device))[0])
        out.append(x_hat.float().clamp(0, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def latent_scale_factor(vae: torch.nn.Module, volumes: VolumeSet, *, batch_size: int, device: str | torch.device,
                        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                        ) -> tuple[float, float]:
    """``(1 / std, std)`` of the posterior means of every image (see the module docstring).

    The moments are combined in float64 batch by batch, so the whole latent set is never held at once.

    Raises:
        InputError: no images, or latents with zero spread (a collapsed encoder).
    """
    if len(volumes) == 0:
        raise InputError(f"{volumes.name}: no images to compute the latent scale factor from")
    vae.eval()
    n, mean, m2 = 0, 0.0, 0.0  # running count, mean and sum of squared deviations (Chan et al. 1979)
    for x in volumes.batches(batch_size):
        with autocast():
            mu, _sigma = vae.encode(x.to(device))
        mu = mu.double()
        n_b, mean_b = mu.numel(), mu.mean().item()
        m2_b = ((mu - mean_b) ** 2).sum().item()
        delta = mean_b - mean
        mean += delta * n_b / (n + n_b)
        m2 += m2_b + delta * delta * n * n_b / (n + n_b)
        n += n_b
    std = math.sqrt(m2 / max(1, n - 1))
    if not math.isfinite(std) or std == 0.0:
        raise InputError(f"the latent posterior means have standard deviation {std} over {len(volumes)} images; "
                         "expected a positive spread — the encoder has collapsed or the images are constant; "
                         "check the images and lower kl_weight")
    return 1.0 / std, std
