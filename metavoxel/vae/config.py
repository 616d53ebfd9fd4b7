"""`VAETrainConfig`: the knobs of `train_vae`, validated strictly (pydantic, ``extra="forbid"``).

The defaults follow the MAISI / MONAI-generative recipe for 3D KL-VAEs (Guo et al. 2024, "MAISI"):
L1 reconstruction, a light KL term, a least-squares patch adversarial loss switched on after a warm-up,
and a perceptual term only when the user supplies pretrained feature-network weights — metavoxel never
downloads anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PERCEPTUAL_NETWORKS", "VAETrainConfig", "learning_rate_factor"]

# MONAI ResNets shaped like MedicalNet (Chen et al. 2019), whose 3D weights a user may convert and supply.
PERCEPTUAL_NETWORKS = ("resnet10", "resnet18", "resnet34", "resnet50")


class VAETrainConfig(BaseModel):
    """How to train a KL-VAE (MONAI ``AutoencoderKL``) with the MAISI-style objective.

    The generator loss at step ``i`` (0-based) is::

        L1(x_hat, x) + kl_weight * KL(q(z|x) || N(0, I)) + perceptual_weight * P(x_hat, x)
            + [i >= adv_start] * adv_weight * LSGAN_G(D(x_hat))

    and, from ``adv_start`` on, the patch discriminator ``D`` takes one least-squares step per generator
    step (alternating). ``P`` is on only when ``perceptual_weights`` is given. Both optimisers follow the
    same learning-rate schedule (`learning_rate_factor`).
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1, description="Optimiser steps of the autoencoder.")
    batch_size: int = Field(2, ge=1, description="Volumes (or patches) per step.")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate of the autoencoder and the discriminator.")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant: lr throughout; cosine: lr * 0.5 (1 + cos(pi i / steps)) at step i, "
                                "from lr down to 0 (Loshchilov & Hutter 2017, one cycle), after the warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up from lr / warmup_steps to lr.")
    initial_log_var: float | None = Field(None, le=0, description=(
        "Start the posterior log-variance at this value (the bias of the log-variance convolution, its weights "
        "zeroed) on a fresh training; None keeps the network's own start (log-variance about 0, sigma about 1). "
        "A light KL term lets sigma shrink only slowly from 1, so the decoder spends its first thousands of steps "
        "on latents whose noise exceeds their spread; from -10 (sigma 0.007) it sees them near noise-free from the "
        "first step and learns faster (benchmarks/RESULTS.md, 'The shipped phantom VAE')."))
    kl_weight: float = Field(1e-6, ge=0, description="Weight of the KL term (kept light: a near-deterministic "
                                                      "latent with a roughly unit scale).")
    adv_weight: float = Field(0.01, ge=0, description="Weight of the generator's adversarial term.")
    adv_start: int = Field(500, ge=0, description="Step (0-based) from which the adversarial loss is on and the "
                                                  "discriminator trains; before it, a pure reconstruction warm-up.")
    disc_channels: int = Field(32, ge=1, description="Channels of the first PatchDiscriminator layer.")
    disc_layers: int = Field(3, ge=1, description="Strided layers of the PatchDiscriminator; the training volumes "
                                                  "(or patches) need every side >= 3 * 2**disc_layers.")
    perceptual_weight: float = Field(0.3, ge=0, description="Weight of the perceptual term (when weights are given).")
    perceptual_weights: Path | None = Field(
        None, description="User-supplied .safetensors weights of the 3D feature network (e.g. MedicalNet "
                          "converted to safetensors). None: the perceptual term is off; nothing is downloaded.")
    perceptual_network: Literal["resnet10", "resnet18", "resnet34", "resnet50"] = Field(
        "resnet10", description="MONAI ResNet (MedicalNet layout, feed_forward=False) the weights belong to.")
    patch_size: list[int] | None = Field(
        None, min_length=2, max_length=3,
        description="Train on random crops of this size (MAISI trains on patches); None: whole volumes. "
                    "Validation and the scale factor always use whole volumes.")
    latent_noise: float = Field(0.0, ge=0, description=(
        "Decoder robustness to latent errors: before decoding, the sampled latent gets Gaussian noise of SD "
        "u * latent_noise * s, s the image's posterior-mean SD (no gradient) and u ~ U(0, 1) per image, so the "
        "decoder learns to map latents near the encoder's to the brain. A latent diffusion model's samples are such "
        "latents, but on the demo's samples it did not bring generated brains closer to real ones (benchmarks/"
        "RESULTS.md, 'The demo against its constants'). 0: off (plain reconstruction)."))
    train_encoder: bool = Field(True, description=(
        "False: the encoder and the posterior convolutions stay frozen and only the decoder trains, so the "
        "latent space, its scale factor and every diffusion model already trained in it stay valid."))
    val_every: int = Field(500, ge=1, description="Validate (PSNR/SSIM) every this many steps, and at the end.")
    checkpoint_every: int = Field(500, ge=1, description="Write the resumable training state every this many steps "
                                                          "(and at the end) when training keeps one.")
    scale_images: int | None = Field(None, ge=1, description="Measure the latent scale factor on the first this many "
                                                             "training images (None: all of them).")
    seed: int = Field(0, description="Seed of batch order, crops and the reparameterisation noise.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast; needs a CUDA device or a CPU with "
                                                                     "bf16 instructions (AVX512-BF16 or AMX).")

    @classmethod
    def build(cls, **values) -> VAETrainConfig:
        """Validate keyword values; `InputError` naming every bad field on one line when they do not."""
        from pydantic import ValidationError

        from metavoxel.errors import InputError
        from metavoxel.spec import format_errors

        try:
            return cls(**values)
        except ValidationError as err:
            raise InputError(f"invalid VAE training settings: {format_errors(err)}; fix the value(s) named") from None

    @model_validator(mode="after")
    def _consistent(self) -> VAETrainConfig:
        if self.perceptual_weights is not None and self.perceptual_weight == 0:
            raise ValueError("perceptual_weights is given but perceptual_weight is 0; set perceptual_weight > 0 "
                             "or drop perceptual_weights")
        if self.patch_size is not None and any(s < 1 for s in self.patch_size):
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")
        return self


def learning_rate_factor(config: VAETrainConfig, step: int) -> float:
    """The multiplier of ``config.lr`` at optimiser step ``step`` (0-based).

    ``(step + 1) / warmup_steps`` during the warm-up; then 1 (``constant``) or, with ``s`` the steps after the
    warm-up and ``S`` their total, ``0.5 (1 + cos(pi s / S))`` (``cosine``), which decays from 1 towards 0.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - config.warmup_steps, span) / span))
