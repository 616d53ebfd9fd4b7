"""The KL-VAE behind the ``image_latent`` kind: training (MAISI objective), checkpoints, and the latent cache.

- `train_vae` trains a MONAI ``AutoencoderKL`` and reports PSNR/SSIM and the latent scale factor.
- `save_vae` / `load_vae` keep it as ``vae.safetensors`` + ``vae.json``; `weights_hash` identifies it.
- `LatentCache` encodes a cohort's image files once, keyed by file content and `weights_hash`.
"""

from metavoxel.vae.cache import LatentCache, content_hash
from metavoxel.vae.checkpoint import load_vae, save_vae, weights_hash
from metavoxel.vae.config import VAETrainConfig
from metavoxel.vae.perceptual import FeaturePerceptualLoss, build_feature_network
from metavoxel.vae.report import VAEReport
from metavoxel.vae.train import PERCEPTUAL_OFF_MESSAGE, train_vae

__all__ = [
    "FeaturePerceptualLoss", "LatentCache", "PERCEPTUAL_OFF_MESSAGE", "VAEReport", "VAETrainConfig",
    "build_feature_network", "content_hash", "load_vae", "save_vae", "train_vae", "weights_hash",
]
