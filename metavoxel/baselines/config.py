"""`BaselineConfig`: the architecture and training knobs of one task-specific baseline, validated strictly.

The MetaVoxel paper compares its single joint diffusion model against networks trained for one task each on
the same split: a 3D DenseNet121 (Huang et al. 2017) and a 3D ViT (Dosovitskiy et al. 2021), both from MONAI,
for age regression (MSE; sex as an extra input) and sex classification (cross-entropy; age as an extra
input). One `BaselineConfig` describes one such network and how it is trained.

Checks that need the image shape (a ViT patch that must divide it, the smallest volume a DenseNet121 can
downsample) happen in `build_baseline`, which knows the shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metavoxel.errors import SpecError

__all__ = ["ARCHITECTURES", "TASKS", "BaselineConfig", "parse_config"]

ARCHITECTURES = ("densenet121", "vit")
TASKS = ("regression", "classification")


class BaselineConfig(BaseModel):
    """One task-specific baseline: which network, which task, and the AdamW recipe that trains it.

    The network sees ``1 + extra_inputs`` channels: the image and each extra scalar broadcast as a constant
    channel. Training minimises MSE on standardised targets (regression) or cross-entropy over
    ``num_classes`` (classification), with AdamW, a linear warm-up over ``warmup`` steps then cosine decay
    to 0, gradient-norm clipping at 1.0, and the weights of the best validation loss kept.
    """

    model_config = ConfigDict(extra="forbid")

    arch: Literal["densenet121", "vit"] = Field("densenet121", description="MONAI DenseNet121 or ViT.")
    task: Literal["regression", "classification"] = Field(
        "regression", description="regression: one value per image (MSE); classification: num_classes logits (CE).")
    num_classes: int = Field(2, ge=2, description="Classes of a classification task (ignored for regression).")
    extra_inputs: int = Field(0, ge=0, description="Extra scalar inputs per image, fed as constant channels.")

    steps: int = Field(2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(16, ge=1, description="Images per step.")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW decoupled weight decay.")
    warmup: int = Field(100, ge=0, description="Steps of linear learning-rate warm-up before the cosine decay.")
    seed: int = Field(0, description="Seed of the initial weights, batch order, dropout and augmentation.")
    val_every: int = Field(100, ge=1, description="Validate every this many steps (and at the last step).")
    augment: bool = Field(False, description="Random left-right flips (first spatial axis, RAS grid) and an "
                                             "intensity scale jitter of +-5%, drawn from the seeded generator.")

    init_features: int = Field(64, ge=1, description="DenseNet121 stem channels (MONAI default 64).")
    growth_rate: int = Field(32, ge=1, description="DenseNet121 growth rate (MONAI default 32); with "
                                                   "init_features, smaller values give a narrow DenseNet121.")

    patch_size: int = Field(16, ge=1, description="ViT cubic patch side; must divide every image side.")
    hidden_size: int = Field(768, ge=1, description="ViT token width; divisible by num_heads.")
    mlp_dim: int = Field(3072, ge=1, description="ViT MLP hidden width.")
    num_layers: int = Field(12, ge=1, description="ViT transformer blocks.")
    num_heads: int = Field(12, ge=1, description="ViT attention heads.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout rate (ViT dropout_rate, DenseNet dropout_prob).")

    @model_validator(mode="after")
    def _consistent(self) -> BaselineConfig:
        if self.arch == "vit" and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}; "
                             f"e.g. hidden_size {self.num_heads * max(1, round(self.hidden_size / self.num_heads))}")
        return self

    @property
    def in_channels(self) -> int:
        """Channels the network sees: the image plus one constant channel per extra input."""
        return 1 + self.extra_inputs

    @property
    def out_channels(self) -> int:
        """Outputs per image: 1 for regression, ``num_classes`` logits for classification."""
        return 1 if self.task == "regression" else self.num_classes


def parse_config(config: BaselineConfig | Mapping[str, Any], *, source: str = "baseline config") -> BaselineConfig:
    """A validated `BaselineConfig` from itself or a plain mapping.

    Raises:
        SpecError: an unknown field, a wrong value or inconsistent fields; the message carries the field path.
    """
    if isinstance(config, BaselineConfig):
        return config
    if not isinstance(config, Mapping):
        raise SpecError(f"{source} must be a BaselineConfig or a mapping of its fields, got "
                        f"{type(config).__name__}; build it with BaselineConfig(arch=..., task=...)")
    from metavoxel.spec import format_errors

    try:
        return BaselineConfig.model_validate(dict(config))
    except ValidationError as err:
        raise SpecError(f"{source} is not a valid BaselineConfig: {format_errors(err)}") from None
