"""`VAEReport`: what `train_vae` hands back — the last step's losses, validation PSNR/SSIM, the latent
scale factor, the per-step history, and (filled by `metavoxel.workflows.train_vae_run`, which knows the
cohort's metadata) the signal probe of `metavoxel.vae.probe`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["VAEReport"]


@dataclass
class VAEReport:
    """The outcome of one `train_vae` run.

    Attributes:
        steps: optimiser steps taken.
        final: the last step's loss terms: ``loss`` (the generator total), ``l1``, ``kl``, ``perceptual``,
            ``adv_g`` (generator adversarial term, 0 before ``adv_start``) and ``adv_d`` (discriminator loss).
        val: the last validation ``{"l1", "psnr", "ssim"}`` over the whole validation set, or ``{}`` when
            no validation images were given.
        scale_factor: ``1 / latent_std``; the ``image_latent`` kind encodes ``z0 = scale_factor * mu(x)``.
        latent_std: unbiased std of the posterior means of every training image after training.
        perceptual: whether the perceptual term was on (only with user-supplied weights).
        history: one dict per step (the ``final`` keys plus ``step`` and ``lr``; ``val_l1``/``val_psnr``/
            ``val_ssim`` on validation steps).
        probe: variable -> `metavoxel.vae.probe.ProbeResult.to_dict` of the validation images, raw vs
            reconstructed (``{}`` when not measured); ``ratio`` is the reconstruction's MAE (or error rate)
            over the raw images'.
        seconds: wall time of training (validation included, the probe excluded).
    """

    steps: int
    final: dict[str, float]
    val: dict[str, float]
    scale_factor: float
    latent_std: float
    perceptual: bool
    history: list[dict[str, float]] = field(default_factory=list)
    probe: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = float("nan")

    @property
    def val_psnr(self) -> float | None:
        return self.val.get("psnr")

    @property
    def val_ssim(self) -> float | None:
        return self.val.get("ssim")

    def summary(self) -> dict[str, Any]:
        """Everything but the history, JSON-ready (non-finite numbers become None)."""
        def clean(d: dict[str, float]) -> dict[str, float | None]:
            return {k: (float(v) if math.isfinite(v) else None) for k, v in d.items()}

        return {"steps": self.steps, "final": clean(self.final), "val": clean(self.val),
                "scale_factor": self.scale_factor, "latent_std": self.latent_std, "perceptual": self.perceptual,
                "probe": self.probe, "seconds": self.seconds if math.isfinite(self.seconds) else None}

    def to_dict(self) -> dict[str, Any]:
        """The whole report as plain data, history included."""
        return asdict(self)
