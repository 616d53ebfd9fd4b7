"""The KL-VAE behind the ``image_latent`` kind: training (MAISI objective), import, checkpoints, the latent cache.

- `train_vae` trains a MONAI ``AutoencoderKL`` and reports PSNR/SSIM and the latent scale factor.
- `import_vae` brings a pretrained autoencoder from a MONAI bundle or a MAISI config into a VAE folder.
- `save_vae` / `load_vae` keep it as ``vae.safetensors`` + ``vae.json``; `weights_hash` identifies it;
  `record_scale_factor` records a factor computed later (an imported VAE's).
- `LatentCache` encodes a cohort's image files once, keyed by file content and `weights_hash`.
"""

from metavoxel.vae.cache import LatentCache, content_hash
from metavoxel.vae.checkpoint import load_vae, read_vae_record, record_scale_factor, save_vae, weights_hash
from metavoxel.vae.importer import ImportedVAE, import_vae
from metavoxel.vae.config import VAETrainConfig
from metavoxel.vae.perceptual import FeaturePerceptualLoss, build_feature_network
from metavoxel.vae.report import VAEReport
from metavoxel.vae.train import PERCEPTUAL_OFF_MESSAGE, train_vae

__all__ = [
    "FeaturePerceptualLoss", "ImportedVAE", "LatentCache", "PERCEPTUAL_OFF_MESSAGE", "VAEReport", "VAETrainConfig",
    "build_feature_network", "content_hash", "import_vae", "load_vae", "read_vae_record", "record_scale_factor",
    "save_vae", "train_vae", "weights_hash",
]
