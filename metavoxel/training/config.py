"""Training hyper-parameters (pydantic; stored in the run directory as train.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metavoxel.seeds import SEED_MAX

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """How a joint model is trained. ``batch_size`` is the global batch over all processes."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(10_000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(8, ge=1, description="Records per step, over all processes together.")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(500, ge=0, description="Linear warm-up, then cosine decay to 10% of lr.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the weights used for sampling; 0 disables.")
    val_every: int = Field(500, ge=1, description="Validation loss every N steps (and at the end).")
    checkpoint_every: int = Field(500, ge=1, description="Resumable state every N steps (and at the end).")
    log_every: int = Field(10, ge=1, description="A metrics.jsonl line every N steps.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Data order, timesteps and noise.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; bf16: autocast on CUDA or on a CPU with bf16 "
                            "instructions (AVX512-BF16 or AMX), refused elsewhere.")
