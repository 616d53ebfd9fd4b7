"""`train_baseline` / `predict_baseline`: fit one task-specific network and read its predictions.

Regression minimises MSE on standardised targets ``(y - mean) / sd`` (mean and SD of the training targets,
kept on the result); predictions are mapped back to the original units. Classification minimises
cross-entropy over ``num_classes`` logits and predicts softmax probabilities. Both use AdamW with the
learning rate

    lr_i = lr * min(1, (i + 1) / warmup) * 0.5 * (1 + cos(pi * i / (steps - 1)))        i = 0 .. steps-1

gradient-norm clipping at 1.0, and keep the weights of the lowest validation loss (MSE in standardised units
or CE, evaluated every ``val_every`` steps and at the last step). Everything random — initial weights,
batch order, dropout, augmentation — follows ``config.seed`` without touching the caller's RNG state.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from metavoxel.baselines.config import BaselineConfig, parse_config
from metavoxel.baselines.networks import BaselineNet, build_baseline
from metavoxel.errors import InputError, MetavoxelError
from metavoxel.vae.train import IndexStream

__all__ = ["Progress", "TrainedBaseline", "predict_baseline", "train_baseline"]

Progress = Callable[[int, int, float], None]
_JITTER = 0.05  # intensity scale jitter: x * U(1 - 0.05, 1 + 0.05) per image


@dataclass
class TrainedBaseline:
    """A trained baseline and how it was trained.

    Attributes:
        net: the network, in eval mode, holding the best-validation weights (the last ones without validation).
        config: its `BaselineConfig`.
        target_mean, target_sd: training-target statistics (regression; None for classification).
        history: one dict per step: ``step`` (1-based), ``loss`` (training loss of that step) and ``val_loss``
            (None except on validation steps).
        best_step: the step whose weights ``net`` holds.
        seconds: wall-clock training time.
        class_names: optional names of the classes, index order (classification), saved with the weights.
    """

    net: BaselineNet
    config: BaselineConfig
    target_mean: float | None = None
    target_sd: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_step: int = 0
    seconds: float = 0.0
    class_names: list[str] | None = None


def _check_data(config: BaselineConfig, images: Any, extras: Any, targets: Any, name: str) -> tuple[int, ...]:
    """Validate one (images, extras, targets) triple; returns the spatial shape."""
    if not isinstance(images, torch.Tensor) or images.dim() not in (4, 5) or images.shape[1] != 1:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"{name} images must be a (N, 1, *shape) tensor with 2 or 3 spatial axes, got {got}; "
                         "stack the preprocessed single-channel images")
    n = images.shape[0]
    if n == 0 or not images.is_floating_point() or not torch.isfinite(images).all():
        raise InputError(f"{name} images must be a non-empty float tensor of finite values, got {n} image(s) of "
                         f"dtype {images.dtype}; drop or fix the failing images")
    e = config.extra_inputs
    if not isinstance(extras, torch.Tensor) or tuple(extras.shape) != (n, e) or not torch.isfinite(extras).all():
        got = tuple(extras.shape) if isinstance(extras, torch.Tensor) else type(extras).__name__
        raise InputError(f"{name} extras must be a finite (N, E) = ({n}, {e}) float tensor (extra_inputs={e}), "
                         f"got {got}; give one row of scaled extra inputs per image")
    if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != (n,):
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise InputError(f"{name} targets must be a (N,) = ({n},) tensor, got {got}; give one target per image")
    if config.task == "regression":
        if not targets.is_floating_point() or not torch.isfinite(targets).all():
            raise InputError(f"{name} targets of a regression must be finite floats, got dtype {targets.dtype}; "
                             "give the values in their original units, e.g. age in years")
    else:
        k = config.num_classes
        if targets.dtype != torch.long or targets.min() < 0 or targets.max() >= k:
            raise InputError(f"{name} targets of a classification must be long class indices in [0, {k}), got "
                             f"dtype {targets.dtype} in [{targets.min().item()}, {targets.max().item()}]; encode "
                             "the classes as 0..num_classes-1")
    return tuple(images.shape[2:])


def _lr_factor(step: int, config: BaselineConfig) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at the last step."""
    warm = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
    progress = min(1.0, step / max(1, config.steps - 1))
    return warm * 0.5 * (1 + math.cos(math.pi * progress))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image along the first spatial axis (left-right on a RAS grid) with p = 0.5; scale its
    intensity by U(0.95, 1.05). ``x``: (B, 1, *shape)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    scale = 1 + _JITTER * (2 * torch.rand(b, generator=generator) - 1)
    x = torch.where(flip.view(b, *(1,) * (x.dim() - 1)).to(x.device), x.flip(2), x)
    return x * scale.view(b, *(1,) * (x.dim() - 1)).to(x)


def _loss(net: BaselineNet, x: torch.Tensor, extras: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = net(x, extras)
    return F.mse_loss(out, y) if net.config.task == "regression" else F.cross_entropy(out, y)


@torch.no_grad()
def _val_loss(net: BaselineNet, val: tuple[torch.Tensor, ...], batch_size: int, device: torch.device) -> float:
    net.eval()
    images, extras, y = val
    total = 0.0
    for i in range(0, len(images), batch_size):
        sl = slice(i, i + batch_size)
        loss = _loss(net, images[sl].to(device), extras[sl].to(device), y[sl].to(device))
        total += loss.item() * len(images[sl])
    net.train()
    return total / len(images)


def train_baseline(config: BaselineConfig | Mapping[str, Any], images: torch.Tensor, extras: torch.Tensor,
                   targets: torch.Tensor, *, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                   progress: Progress | None = None, device: str | torch.device = "cpu") -> TrainedBaseline:
    """Build a baseline from ``config`` and train it (module docstring for the objective and schedule).

    Args:
        config: a `BaselineConfig` or a mapping of its fields.
        images: (N, 1, *shape) preprocessed float images.
        extras: (N, E) extra scalar inputs, already scaled by the caller (e.g. to [-1, 1]); E may be 0.
        targets: (N,) float values in original units (regression) or long class indices (classification).
        val: optional ``(images, extras, targets)`` shaped likewise; enables best-validation weights.
        progress: called as ``progress(step, steps, loss)`` after every step (1-based step).
        device: where to train; the data stays where it is and moves one batch at a time.

    Returns:
        a `TrainedBaseline` whose ``net`` is in eval mode on ``device``.

    Raises:
        SpecError: a config that does not validate.
        InputError: data of the wrong shape, dtype or range, or an image shape the architecture cannot take.
        MetavoxelError: the loss became non-finite.
    """
    config = parse_config(config)
    device = torch.device(device)
    shape = _check_data(config, images, extras, targets, "training")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 3:
            raise InputError("val must be a tuple (images, extras, targets) or None; give the validation split")
        val_shape = _check_data(config, *val, "validation")
        if val_shape != shape:
            raise InputError(f"validation images have shape {val_shape}, training images {shape}; preprocess both "
                             "splits to the same grid")
    mean = sd = None
    if config.task == "regression":
        mean = targets.double().mean().item()
        sd = targets.double().std().item() if len(targets) > 1 else 0.0
        sd = sd if sd > 1e-12 else 1.0  # constant targets: only centre them
        targets = ((targets.double() - mean) / sd).float()
        if val is not None:
            val = (val[0], val[1], ((val[2].double() - mean) / sd).float())

    started = time.perf_counter()
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # seeded init and dropout without touching the caller's RNG
        torch.manual_seed(config.seed)
        net = build_baseline(config, len(shape), shape).to(device)
        optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: _lr_factor(i, config))
        order = torch.Generator().manual_seed(config.seed)
        jitter = torch.Generator().manual_seed(config.seed + 1)  # separate, so augment leaves batch order alone
        batches = IndexStream(len(images), config.batch_size, order)
        history: list[dict[str, Any]] = []
        best_loss, best_step, best_state = math.inf, config.steps, None
        net.train()
        for step in range(1, config.steps + 1):
            index = next(batches)
            x = images[index].to(device, torch.float32)
            if config.augment:
                x = _augment(x, jitter)
            loss = _loss(net, x, extras[index].to(device, torch.float32), targets[index].to(device))
            if not torch.isfinite(loss):
                raise MetavoxelError(f"the baseline loss became {loss.item()} at step {step}; expected a finite "
                                     "loss — lower lr, or check the images and targets for extreme values")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            record: dict[str, Any] = {"step": step, "loss": loss.item(), "val_loss": None}
            if val is not None and (step % config.val_every == 0 or step == config.steps):
                record["val_loss"] = _val_loss(net, val, config.batch_size, device)
                if record["val_loss"] < best_loss:
                    best_loss, best_step = record["val_loss"], step
                    best_state = copy.deepcopy(net.state_dict())
            history.append(record)
            if progress is not None:
                progress(step, config.steps, record["loss"])
    if best_state is not None:
        net.load_state_dict(best_state)
    return TrainedBaseline(net=net.eval(), config=config, target_mean=mean, target_sd=sd, history=history,
                           best_step=best_step, seconds=time.perf_counter() - started)


@torch.no_grad()
def predict_baseline(trained: TrainedBaseline, images: torch.Tensor, extras: torch.Tensor, *,
                     batch_size: int = 32) -> torch.Tensor:
    """Predictions of a trained baseline, in eval mode without gradients.

    Args:
        trained: from `train_baseline` or `load_baseline`.
        images: (N, 1, *shape) preprocessed like the training images.
        extras: (N, E) scaled like the training extras.
        batch_size: images per forward pass.

    Returns:
        (N,) values in the targets' original units (regression) or (N, K) class probabilities, on the CPU.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}; give a positive batch size")
    net = trained.net.eval()
    if not isinstance(images, torch.Tensor) or images.dim() < 1 or not isinstance(extras, torch.Tensor) \
            or len(extras) != len(images):
        raise InputError("images (N, 1, *shape) and extras (N, E) must be tensors with the same N; give one row "
                         "of extras per image")
    device = next(net.parameters()).device
    outs = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device, torch.float32)
        outs.append(net(x, extras[i:i + batch_size].to(device, torch.float32)).float().cpu())
    out = torch.cat(outs) if outs else torch.empty((0,) if trained.config.task == "regression"
                                                    else (0, trained.config.num_classes))
    if trained.config.task == "regression":
        return out * (trained.target_sd or 1.0) + (trained.target_mean or 0.0)  # (N,)
    return out.softmax(dim=-1)  # (N, K)
