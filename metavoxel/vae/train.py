"""`train_vae`: train a KL-VAE (MONAI ``AutoencoderKL``, the LDM autoencoder of Rombach et al. 2022) with
the MAISI objective (Guo et al. 2024): L1 reconstruction + light KL + least-squares patch adversarial loss
after a warm-up + an offline perceptual term when the user supplies feature-network weights.

Per step ``i`` (0-based), with ``x`` a minibatch (or random patches), ``mu, sigma = encode(x)``,
``z = mu + sigma eps`` and ``x_hat = decode(z + u latent_noise SD(mu) eps')`` (``u ~ U(0, 1)`` per image;
``latent_noise`` 0 by default, making this MONAI's ``x_hat, mu, sigma = vae(x)``)::

    KL   = 1/B sum_b 0.5 * sum (mu^2 + sigma^2 - log sigma^2 - 1)           (MONAI generative convention)
    L_G  = L1(x_hat, x) + kl_weight KL + perceptual_weight P(x_hat, x) + [i >= adv_start] adv_weight (D(x_hat) - 1)^2
    L_D  = 0.5 ((D(x) - 1)^2 + D(sg(x_hat))^2)                                 only when i >= adv_start

with ``D`` a MONAI ``PatchDiscriminator`` and the squares averaged over its patch logits (MONAI
``PatchAdversarialLoss(criterion="least_squares")``). The generator and the discriminator alternate:
one Adam step each, both at the learning rate of ``VAETrainConfig.lr_schedule`` (constant, or a cosine
decay) after an optional linear warm-up. After training the latent scale factor is measured on the whole
training set.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import InputError, MetavoxelError
from metavoxel.precision import check_bf16
from metavoxel.vae.config import VAETrainConfig, learning_rate_factor
from metavoxel.vae.evaluation import latent_scale_factor, reconstruction_metrics
from metavoxel.vae.perceptual import FeaturePerceptualLoss
from metavoxel.vae.report import VAEReport
from metavoxel.vae.state import TrainingState, load_training_state, save_training_state
from metavoxel.vae.volumes import VolumeSet, random_crop

__all__ = ["PERCEPTUAL_OFF_MESSAGE", "IndexStream", "kl_divergence", "train_vae"]

_log = logging.getLogger("metavoxel.vae")

PERCEPTUAL_OFF_MESSAGE = ("perceptual loss off: no pretrained weights given (metavoxel never downloads); "
                          "pass --perceptual-weights FILE.safetensors")

Progress = Callable[[int, int, dict[str, float]], None]


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent elements, averaged over the batch.

    Args:
        mu, sigma: (B, latent_C, *grid) posterior mean and standard deviation.
    """
    per_element = mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2)) - 1  # (B, latent_C, *grid)
    return 0.5 * per_element.flatten(1).sum(dim=1).mean()


class IndexStream:
    """Minibatch indices from successive random permutations (every image once per epoch).

    ``pending`` holds the current epoch's indices not yet drawn; with the generator's state it is all a
    resumed training needs to draw the same batches as one that never stopped.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator,
                 pending: torch.Tensor | None = None):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.pending = torch.empty(0, dtype=torch.long) if pending is None else pending

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        while len(self.pending) < self.batch_size:
            self.pending = torch.cat([self.pending, torch.randperm(self.n, generator=self.generator)])
        batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
        return batch


def _check_geometry(vae: torch.nn.Module, train: VolumeSet, val: VolumeSet | None, config: VAETrainConfig,
                    adversarial: bool) -> tuple[int, ...]:
    """Check that the images fit the VAE (and the discriminator); returns the training crop shape."""
    encoder = getattr(vae, "encoder", None)
    in_channels = getattr(encoder, "in_channels", train.channels)
    spatial_dims = getattr(encoder, "spatial_dims", len(train.spatial_shape))
    factor = 2 ** (len(getattr(encoder, "channels", (0,))) - 1)
    for volumes in (train, val):
        if volumes is None or len(volumes) == 0:
            continue
        if volumes.channels != in_channels or len(volumes.spatial_shape) != spatial_dims:
            raise InputError(f"{volumes.name}: images (C, *shape) = {volumes.item_shape} do not fit a "
                             f"{spatial_dims}D VAE with {in_channels} input channel(s); give matching images")
        if any(s % factor for s in volumes.spatial_shape):
            raise InputError(f"{volumes.name}: image shape {volumes.spatial_shape} must be divisible by the VAE "
                             f"downsampling factor {factor}; crop or pad the images")
    shape = train.spatial_shape
    if config.patch_size is not None:
        patch = tuple(config.patch_size)
        if len(patch) != len(shape) or any(p > s or p % factor for p, s in zip(patch, shape)):
            raise InputError(f"patch_size {list(patch)} must have one entry per axis of the images {list(shape)}, "
                             f"each no larger than the image and divisible by {factor}; fix patch_size")
        shape = patch
    smallest = 3 * 2 ** config.disc_layers
    if adversarial and min(shape) < smallest:
        raise InputError(f"a PatchDiscriminator with disc_layers={config.disc_layers} needs training volumes of at "
                         f"least {smallest} voxels per side, got {list(shape)}; lower disc_layers or enlarge "
                         "patch_size")
    return shape


def _autocast(config: VAETrainConfig, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """bf16 autocast on CUDA, or on a CPU whose oneDNN has bf16 kernels (AVX512-BF16 or AMX), else refused."""
    if config.precision == "fp32":
        return contextlib.nullcontext
    if device.type not in ("cuda", "cpu"):
        raise InputError(f"precision 'bf16' runs on CUDA or the CPU, got device {str(device)!r}; use precision "
                         "'fp32' on this device")
    check_bf16(device, "use precision 'fp32'")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def _start_log_var(vae: torch.nn.Module, value: float) -> None:
    """Set the posterior log-variance of every input to ``value``: the bias of the convolution that produces it
    (MONAI's ``quant_conv_log_sigma``), its weights zeroed."""
    conv = getattr(vae, "quant_conv_log_sigma", None)
    conv = getattr(conv, "conv", conv)
    if not isinstance(conv, torch.nn.modules.conv._ConvNd) or conv.bias is None:
        raise InputError(f"initial_log_var needs a MONAI autoencoder with a biased quant_conv_log_sigma convolution, "
                         f"got {type(vae).__name__}; leave initial_log_var unset")
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(value)


def _perceptual(config: VAETrainConfig, spatial_dims: int, device: torch.device) -> FeaturePerceptualLoss | None:
    if config.perceptual_weights is None:
        if config.perceptual_weight > 0:
            _log.warning(PERCEPTUAL_OFF_MESSAGE)
        return None
    if spatial_dims != 3:
        raise InputError(f"perceptual weights were given but the images are {spatial_dims}D; the perceptual "
                         "feature network is 3D, drop perceptual_weights")
    return FeaturePerceptualLoss.from_file(config.perceptual_weights, config.perceptual_network).to(device)


def _encoder_parts(vae: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of a MONAI ``AutoencoderKL`` that make the latent: the encoder and the posterior convolutions."""
    names = ("encoder", "quant_conv_mu", "quant_conv_log_sigma")
    missing = [n for n in names if not isinstance(getattr(vae, n, None), torch.nn.Module)]
    if missing:
        raise InputError(f"train_encoder=False needs a MONAI AutoencoderKL (it lacks {', '.join(missing)}); train the "
                         "whole autoencoder instead")
    return [getattr(vae, n) for n in names]


def _reconstruct(vae: torch.nn.Module, x: torch.Tensor,
                 config: VAETrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_hat, mu, sigma`` for one training step: MONAI's forward, with `VAETrainConfig.latent_noise` added to the
    sampled latent before decoding and no encoder graph when the encoder is frozen."""
    if config.latent_noise == 0 and config.train_encoder:
        return vae(x)
    with contextlib.nullcontext() if config.train_encoder else torch.no_grad():
        mu, sigma = vae.encode(x)
        z = vae.sampling(mu, sigma)
    if config.latent_noise > 0:
        dims = tuple(range(1, mu.dim()))
        spread = mu.detach().float().std(dim=dims, keepdim=True)
        u = torch.rand((mu.shape[0],) + (1,) * (mu.dim() - 1), device=mu.device)
        z = z + (u * config.latent_noise * spread * torch.randn_like(z, dtype=torch.float32)).to(z.dtype)
    return vae.decode(z), mu, sigma


def train_vae(vae: torch.nn.Module, train_images: Any, val_images: Any, config: VAETrainConfig, *,
              progress: Progress | None = None, device: str | torch.device = "cpu",
              discriminator: torch.nn.Module | None = None, state_dir: str | Path | None = None,
              resume: bool = False) -> VAEReport:
    """Train ``vae`` in place with the MAISI objective (module docstring) and measure it.

    Args:
        vae: a MONAI ``AutoencoderKL`` (e.g. from ``build_vae``); trained in place, left in eval mode (with
            ``train_encoder=False``, its encoder and posterior convolutions left with ``requires_grad`` False).
        train_images: (N, C, *shape) tensor in [0, 1], or an indexable dataset of (C, *shape) tensors.
        val_images: the same for validation (PSNR/SSIM every ``val_every`` steps and at the end), or None.
        config: the training knobs.
        progress: called as ``progress(step, steps, record)`` after every step; ``record`` is that step's
            history dict (loss terms, and ``val_*`` on validation steps).
        device: where to train; ``precision="bf16"`` needs CUDA or a CPU with bf16 instructions.
        discriminator: a MONAI ``PatchDiscriminator`` to train; default: a new one with
            ``disc_layers``/``disc_channels`` and instance norm (MAISI's). Trained in place.
        state_dir: where the resumable training state is written every ``checkpoint_every`` steps and at the
            end (`metavoxel.vae.state`); None keeps none.
        resume: continue the training whose state is in ``state_dir`` (weights, both optimisers, the batch
            order and the random streams), so that it ends as one run that never stopped would; ``config``
            must equal the saved one but for `metavoxel.vae.state.RESUMABLE_CHANGES`.

    Returns:
        a `VAEReport`; ``scale_factor = 1 / std`` of the training latents' posterior means.

    Raises:
        InputError: images of the wrong shape/range, an impossible patch or discriminator size, bf16 where it
            cannot run, a missing perceptual weights file, resume without ``state_dir`` or with other settings.
        CheckpointError: unreadable or unfitting perceptual weights; no training state to resume.
        MetavoxelError: the loss became non-finite.
    """
    from monai.losses import PatchAdversarialLoss
    from monai.networks.nets import PatchDiscriminator

    config = VAETrainConfig.model_validate(config)
    device = torch.device(device)
    autocast = _autocast(config, device)
    train = VolumeSet(train_images, "train_images")
    val = VolumeSet(val_images, "val_images") if val_images is not None else None
    if len(train) == 0:
        raise InputError("train_images: no images; give at least one training image")
    adversarial_ever = config.adv_start < config.steps and config.adv_weight > 0
    _check_geometry(vae, train, val, config, adversarial_ever)
    spatial_dims = len(train.spatial_shape)
    perceptual = _perceptual(config, spatial_dims, device)
    if discriminator is None:
        discriminator = PatchDiscriminator(spatial_dims=spatial_dims, num_layers_d=config.disc_layers,
                                           channels=config.disc_channels, in_channels=train.channels,
                                           out_channels=1, norm="INSTANCE")
    vae.to(device)
    discriminator.to(device)
    adv_loss = PatchAdversarialLoss(criterion="least_squares")
    trained = vae.parameters()
    if not config.train_encoder:
        for part in _encoder_parts(vae):
            part.requires_grad_(False)
        trained = [p for p in vae.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(trained, lr=config.lr)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    batches = IndexStream(len(train), config.batch_size, generator)
    state = TrainingState()
    if resume and state_dir is None:
        raise InputError("resume needs the folder of the training state (state_dir); give it, or train afresh")
    state_dir = None if state_dir is None else Path(state_dir)
    start = time.perf_counter()

    # The reparameterisation noise comes from the global RNG (MONAI's sampling); seed it without leaking.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        if resume:
            state, batches.pending = load_training_state(state_dir, config, vae=vae, discriminator=discriminator,
                                                         opt_g=opt_g, opt_d=opt_d, order=generator)
        elif config.initial_log_var is not None:
            _start_log_var(vae, config.initial_log_var)
        seconds_before = state.seconds
        for step in range(state.step, config.steps):
            x = train.batch(next(batches))
            if config.patch_size is not None:
                x = random_crop(x, config.patch_size, generator)
            x = x.to(device)
            adversarial = step >= config.adv_start and config.adv_weight > 0
            lr = config.lr * learning_rate_factor(config, step)
            for group in (*opt_g.param_groups, *opt_d.param_groups):
                group["lr"] = lr
            vae.train()
            discriminator.train()
            with autocast():
                x_hat, mu, sigma = _reconstruct(vae, x, config)
            x_hat, mu, sigma = x_hat.float(), mu.float(), sigma.float()
            terms = {"l1": (x_hat - x).abs().mean(), "kl": kl_divergence(mu, sigma)}
            terms["perceptual"] = perceptual(x_hat, x) if perceptual is not None else x_hat.new_zeros(())
            if adversarial:
                with autocast():
                    fake = discriminator(x_hat.contiguous())[-1]
                terms["adv_g"] = adv_loss(fake.float(), target_is_real=True, for_discriminator=False)
            else:
                terms["adv_g"] = x_hat.new_zeros(())
            loss = (terms["l1"] + config.kl_weight * terms["kl"] + config.perceptual_weight * terms["perceptual"]
                    + config.adv_weight * terms["adv_g"])
            if not torch.isfinite(loss):
                raise MetavoxelError(f"the VAE loss became {loss.item()} at step {step + 1} "
                                     f"({ {k: v.item() for k, v in terms.items()} }); expected a finite loss — "
                                     "lower lr, or train in fp32")
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()

            terms["adv_d"] = x_hat.new_zeros(())
            if adversarial:
                with autocast():
                    fake = discriminator(x_hat.detach().contiguous())[-1]
                    real = discriminator(x.contiguous())[-1]
                loss_d = 0.5 * (adv_loss(fake.float(), target_is_real=False, for_discriminator=True)
                                + adv_loss(real.float(), target_is_real=True, for_discriminator=True))
                opt_d.zero_grad(set_to_none=True)  # also drops the grads the generator step left here
                loss_d.backward()
                opt_d.step()
                terms["adv_d"] = loss_d.detach()

            record = {"step": float(step + 1), "loss": loss.item(), "lr": lr,
                      **{k: v.item() for k, v in terms.items()}}
            last = step + 1 == config.steps
            if val is not None and len(val) and ((step + 1) % config.val_every == 0 or last):
                state.val = reconstruction_metrics(vae, val, batch_size=config.batch_size, device=device,
                                                   autocast=autocast)
                record.update({f"val_{k}": v for k, v in state.val.items()})
            state.history.append(record)
            state.step = step + 1
            state.seconds = seconds_before + time.perf_counter() - start
            if state_dir is not None and ((step + 1) % config.checkpoint_every == 0 or last):
                save_training_state(state_dir, state, config, vae=vae, discriminator=discriminator, opt_g=opt_g,
                                    opt_d=opt_d, order=generator, pending=batches.pending)
            if progress is not None:
                progress(step + 1, config.steps, record)

    scale_set = train if config.scale_images is None else train.head(config.scale_images)
    scale, std = latent_scale_factor(vae, scale_set, batch_size=config.batch_size, device=device, autocast=autocast)
    vae.eval()
    history = state.history
    final = {k: v for k, v in history[-1].items() if k not in ("step", "lr") and not k.startswith("val_")} \
        if history else {}
    return VAEReport(steps=state.step, final=final, val=state.val, scale_factor=scale, latent_std=std,
                     perceptual=perceptual is not None, history=history, seconds=state.seconds)
