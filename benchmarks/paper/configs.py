"""The configurations of the paper benchmark: ``small`` (2 CPU cores, about 90 min), ``paper`` (a GPU), ``tiny`` (smoke)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metavoxel.workflows.study import StudyRecipe

__all__ = ["CONFIGS", "PAPER_SPEC", "BenchConfig"]

#: The paper's model on the paper's recipe (`metavoxel.presets.PAPER`): the ``paper`` configuration trains its
#: network with its diffusion settings (the study's defaults: shared t, RePaint, uniform grid, eps), at its grid.
PAPER_SPEC = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "t1w_age_sex_latent_paper.yaml"


@dataclass(frozen=True)
class BenchConfig:
    """A study recipe plus what the benchmark spends on baselines and evaluation."""

    recipe: StudyRecipe
    baseline_steps: int
    baseline_batch_size: int
    densenet: dict[str, Any]
    vit: dict[str, Any]
    num_samples: int = 3
    sample_ablation: tuple[int, ...] = (1, 3, 10)
    step_ablation: tuple[int, ...] = (10, 20, 50, 100)
    likelihood_timesteps: int = 25
    calibration_samples: int = 20  # age samples per subject for the conditioning comparison's spread scores
    eval_batch_size: int = 96
    precision: str = "fp32"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


SMALL = BenchConfig(
    recipe=StudyRecipe(name="small", subjects=600, size=32, pretrained_vae="phantom-32-sharp", vae_channels=(8, 16, 32),
                       vae_latent_channels=8, vae_steps=600, vae_batch_size=8, vae_lr=2e-3, train_steps=1200,
                       batch_size=32, lr=1e-3, ema_decay=0.99, val_fraction=0.1, test_fraction=0.16),
    baseline_steps=300, baseline_batch_size=16,
    densenet={"init_features": 64, "growth_rate": 32},  # MONAI's DenseNet121 as published
    vit={"patch_size": 8, "hidden_size": 192, "mlp_dim": 768, "num_layers": 6, "num_heads": 6},
    notes="32³ phantom at 5.5 mm, the shipped phantom VAE phantom-32-sharp (x4 to an 8×8×8×8 latent; --train-vae: a ×4 KL-VAE "
          "8/16/32 trained on the cohort), U-Net channels 32/64/64; 2 CPU cores.",
)

PAPER = BenchConfig(
    recipe=StudyRecipe(name="paper", subjects=3000, size=(96, 112, 96), voxel_mm=1.5, vae_channels=(64, 128, 256),
                       vae_steps=20_000, vae_batch_size=2, vae_lr=1e-4, train_steps=100_000, batch_size=16,
                       lr=1e-4, ema_decay=0.999, network=yaml.safe_load(PAPER_SPEC.read_text())["network"]),
    baseline_steps=20_000, baseline_batch_size=8,
    densenet={"init_features": 64, "growth_rate": 32},
    vit={"patch_size": 16, "hidden_size": 768, "mlp_dim": 3072, "num_layers": 12, "num_heads": 12},
    precision="bf16",
    sample_ablation=(1, 3, 10, 20),  # 20: the first count whose interval coverage is of a 90% interval (90.5%)
    notes="96×112×96 phantom at 1.5 mm (the paper's grid), ×4 KL-VAE to a 4×24×28×24 latent, the paper's U-Net (128/256/512); one GPU. "
          "Not run: its expected work is counted by cost.py (about 7.8 EFLOP of training); its time is unmeasured.",
)

#: A smoke run of every stage in about a minute (the test suite runs it); its figures mean nothing.
TINY = BenchConfig(
    recipe=StudyRecipe(name="tiny", subjects=40, size=32, vae_channels=(8, 16, 32), vae_steps=2, vae_batch_size=2,
                       train_steps=2, batch_size=4, sampling_steps=3, val_fraction=0.2, test_fraction=0.2,
                       network={"spatial_dims": 3, "channels": [16, 16, 16], "attention_levels": [False, False, True],
                                "num_res_blocks": 1, "num_head_channels": 16, "norm_num_groups": 8,
                                "cross_attention_dim": 16}),
    baseline_steps=2, baseline_batch_size=4,
    densenet={"init_features": 8, "growth_rate": 4},
    vit={"patch_size": 16, "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2},
    num_samples=2, sample_ablation=(1, 2), step_ablation=(2, 3), likelihood_timesteps=2, eval_batch_size=32,
    calibration_samples=4,
    notes="Smoke configuration: every stage on a minimal budget; the figures mean nothing.",
)

CONFIGS = {"small": SMALL, "paper": PAPER, "tiny": TINY}
