"""Task-specific baselines: the networks the MetaVoxel paper compares its joint diffusion model against.

Each baseline is one MONAI network trained for one task on the same split — a 3D DenseNet121 or a 3D ViT
for age regression (MSE, sex as an extra input) or sex classification (cross-entropy, age as an extra
input) — with the other variables fed as constant input channels.

- `BaselineConfig` describes the network and its AdamW recipe; `build_baseline` builds a `BaselineNet`.
- `train_baseline` fits one and returns a `TrainedBaseline`; `predict_baseline` gives values in the
  targets' units (regression) or class probabilities (classification).
- `save_baseline` / `load_baseline` keep it as ``weights.safetensors`` + ``baseline.json``.

Example::

    config = BaselineConfig(arch="densenet121", task="regression", extra_inputs=1, steps=2000)
    trained = train_baseline(config, images, sex[:, None], age, val=(val_images, val_sex[:, None], val_age))
    save_baseline("runs/age-densenet", trained)
    age_hat = predict_baseline(load_baseline("runs/age-densenet"), test_images, test_sex[:, None])
"""

from metavoxel.baselines.checkpoint import load_baseline, save_baseline
from metavoxel.baselines.config import BaselineConfig, parse_config
from metavoxel.baselines.networks import BaselineNet, build_baseline, densenet_min_side
from metavoxel.baselines.train import TrainedBaseline, predict_baseline, train_baseline

__all__ = [
    "BaselineConfig", "BaselineNet", "TrainedBaseline", "build_baseline", "densenet_min_side", "load_baseline",
    "parse_config", "predict_baseline", "save_baseline", "train_baseline",
]
