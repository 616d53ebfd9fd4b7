"""Joint training: AdamW, EMA, clipping, bf16 autocast, validation, checkpoints, resume and DDP.

Multi-process training runs under ``torchrun`` (NCCL on GPUs, gloo on CPU). Every process draws the same
global batch, timesteps and noise from generators seeded alike, and computes the loss on its own slice
of the rows, so N processes give the result of one process with the same global batch.

Resuming restores weights, EMA, optimiser, scheduler, generator states, data position and step, so an
interrupted run continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import CheckpointError, InputError, MetavoxelError
from metavoxel.io.atomic import write_json, write_text
from metavoxel.precision import check_bf16
from metavoxel.runs import SEAL_KEY, spec_digest
from metavoxel.training.checkpoint import load_state, save_state, save_weights
from metavoxel.training.config import TrainConfig

__all__ = ["EncodedRecords", "TrainingDiverged", "TrainResult", "distributed", "train"]


class TrainingDiverged(MetavoxelError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class EncodedRecords:
    """Records in diffusion space: z0 and presence per variable, all with the same number of rows."""

    z0: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(next(iter(self.present.values())))

    def rows(self, index: torch.Tensor) -> EncodedRecords:
        return EncodedRecords({k: v[index] for k, v in self.z0.items()}, {k: v[index] for k, v in self.present.items()})

    def to(self, device: torch.device) -> EncodedRecords:
        return EncodedRecords({k: v.to(device) for k, v in self.z0.items()},
                              {k: v.to(device) for k, v in self.present.items()})


@dataclass
class TrainResult:
    steps: int
    last_loss: float
    best_val: float | None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0

    @classmethod
    def from_env(cls) -> _Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(world, dist.get_rank() if world > 1 else 0)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def distributed() -> _Dist:
    """This process's place in a torchrun job (world size 1 outside one); initialises the process group."""
    return _Dist.from_env()


def _lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at the last step."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps)) if config.warmup_steps else 1.0
    progress = min(1.0, step / max(1, config.steps - 1))
    return warm * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train(model: JointModel, records: EncodedRecords, config: TrainConfig, *, val: EncodedRecords | None = None,
          run_dir: str | Path | None = None, resume: bool = False,
          progress: Callable[[int, int, float], None] | None = None,
          log: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``model`` on encoded records; returns with the EMA weights loaded into ``model``.

    Args:
        records: the training records (see `EncodedRecords`; `metavoxel.training.encode_records` makes them).
        val: validation records; their mean loss (fixed timesteps and noise) is logged every ``val_every``.
        run_dir: where checkpoints and metrics go (None: keep nothing on disk).
        resume: continue from the newest state in ``run_dir``.
        progress: ``progress(step, steps, loss)`` after every step (rank 0 only).
        log: ``log(row)`` with every metrics row as it is written to ``metrics.jsonl`` (rank 0 only), e.g.
            `metavoxel.training.tensorboard.TensorBoardLog`.

    Raises:
        TrainingDiverged: a non-finite loss; the message names the step and the kept checkpoint.
        InputError: a batch size the processes do not divide; precision 'bf16' on a CPU without bf16 instructions
            (`metavoxel.precision.check_bf16`).
    """
    ddp = _Dist.from_env()
    if config.batch_size % ddp.world:
        raise InputError(f"batch_size {config.batch_size} must be divisible by the {ddp.world} processes")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() else torch.device("cpu")
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if bf16:  # refused before anything moves or is written
        check_bf16(device, "use precision 'fp32' or 'auto'")
    model.to(device)
    records = records.to(device)
    val = val.to(device) if val is not None else None
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: _lr_factor(i, config))
    ema = [p.detach().clone() for p in params] if config.ema_decay > 0 else None
    noise = torch.Generator(device=device).manual_seed(config.seed)
    order = _Order(len(records), config.seed, config.batch_size)
    step, best_val, history = 0, None, []
    if resume:
        step, best_val = _restore(run_dir, model, params, ema, optimiser, schedule, noise, order)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if ddp.world > 1 else model
    share = config.batch_size // ddp.world
    model.train()
    start, last = time.perf_counter(), math.nan
    while step < config.steps:
        batch = model.corrupt(*_fields(records.rows(order.next().to(device))), generator=noise)  # same on every rank
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = wrapped(batch.rows(slice(ddp.rank * share, (ddp.rank + 1) * share)))
        loss = terms["loss"].mean()
        if not bool(ddp.mean(torch.isfinite(loss).float().reshape(1)) == 1):
            hint = ("; bf16 autocast on the CPU can turn convolution gradients non-finite: try precision 'fp32'"
                    if bf16 and device.type == "cpu" else "")
            raise TrainingDiverged(f"the loss is not finite at step {step + 1}; "
                                   f"{_kept(run_dir)}; lower --lr or check the data for extreme values{hint}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimiser.step()
        schedule.step()
        step += 1
        if ema is not None:
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        last = loss.item()
        if step % config.log_every == 0 or step == config.steps:
            row = {"step": step, "lr": schedule.get_last_lr()[0],
                   "records_per_s": step * config.batch_size / max(1e-9, time.perf_counter() - start)}
            row.update({k: float(ddp.mean(v.detach().float().mean().reshape(1))) for k, v in terms.items()})
            if val is not None and (step % config.val_every == 0 or step == config.steps):
                row["val_loss"] = _validate(model, params, ema, val, config.seed, bf16)
                if best_val is None or row["val_loss"] < best_val:
                    best_val = row["val_loss"]
                    if run_dir is not None and ddp.rank == 0:
                        save_weights(run_dir / "best.safetensors", _ema_state(model, params, ema), spec=model.spec)
            history.append(row)
            if run_dir is not None and ddp.rank == 0:
                with (run_dir / "metrics.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            if log is not None and ddp.rank == 0:
                log(row)
        if run_dir is not None and (step % config.checkpoint_every == 0 or step == config.steps):
            if ddp.rank == 0:
                _checkpoint(run_dir, step, best_val, model, params, ema, optimiser, schedule, noise, order, config)
            ddp.barrier()
        if progress is not None and ddp.rank == 0:
            progress(step, config.steps, last)
    _load_ema(params, ema)
    model.eval()
    return TrainResult(step, last, best_val, history)


def _fields(records: EncodedRecords) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return records.z0, records.present


class _Order:
    """Seeded epoch permutations cut into global batches (the last partial batch of an epoch is dropped)."""

    def __init__(self, n: int, seed: int, batch: int):
        if n < batch:
            raise InputError(f"only {n} training records for a batch of {batch}; lower --batch-size")
        self.n, self.seed, self.batch, self.epoch, self.pos = n, seed, batch, 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        index = self._perm[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return index

    def seek(self, epoch: int, pos: int) -> None:
        self.epoch, self.pos = epoch, pos
        self._perm = self._permutation()


@torch.no_grad()
def _validate(model: JointModel, params, ema, val: EncodedRecords, seed: int, bf16: bool) -> float:
    """Mean validation loss with the EMA weights, fixed timesteps and noise (comparable across steps)."""
    saved = [p.detach().clone() for p in params]
    _load_ema(params, ema)
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed + 1)
    total, n = 0.0, len(val)
    for start in range(0, n, 64):
        part = val.rows(torch.arange(start, min(n, start + 64), device=model.device))
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            total += float(model.losses_from_z0(part.z0, part.present, generator=generator)["loss"].float().sum())
    for p, s in zip(params, saved):
        p.data.copy_(s)
    model.train()
    return total / n


def _load_ema(params, ema) -> None:
    if ema is not None:
        for p, e in zip(params, ema):
            p.data.copy_(e)


def _ema_state(model: JointModel, params, ema) -> dict[str, torch.Tensor]:
    """The model's state dict with the network's trainable weights replaced by their EMA."""
    state = dict(model.state_dict())
    if ema is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for p, e in zip(params, ema):
            state[names[id(p)]] = e
    return state


def _kept(run_dir: Path | None) -> str:
    if run_dir is None or not (run_dir / "state.json").is_file():
        return "no checkpoint was written yet"
    return f"the last good checkpoint (step {json.loads((run_dir / 'state.json').read_text())['step']}) is kept"


def _checkpoint(run_dir, step, best_val, model, params, ema, optimiser, schedule, noise, order, config) -> None:
    tensors: dict[str, torch.Tensor] = {f"param.{i}": p for i, p in enumerate(params)}
    if ema is not None:
        tensors.update({f"ema.{i}": e for i, e in enumerate(ema)})
    opt = optimiser.state_dict()
    for i, slot in opt["state"].items():
        for key, value in slot.items():
            tensors[f"optim.{i}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    tensors["rng.noise"] = noise.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"best_val": best_val, "epoch": order.epoch, "pos": order.pos, "param_groups": opt["param_groups"],
            "schedule": schedule.state_dict(), "config": config.model_dump()}
    save_state(run_dir, step, tensors, meta, spec=model.spec)
    save_weights(run_dir / "model.safetensors", _ema_state(model, params, ema), spec=model.spec)


def _restore(run_dir, model, params, ema, optimiser, schedule, noise, order) -> tuple[int, float | None]:
    if run_dir is None:
        raise InputError("resume needs a run directory")
    tensors, meta = load_state(run_dir)
    seal = meta.get(SEAL_KEY)
    if seal is not None and seal != spec_digest(model.spec):
        raise CheckpointError(f"the training state in {run_dir} was trained with another spec than this model's; "
                              f"resume with the run's own spec ({run_dir / 'spec.json'}), or train a new run")
    try:
        for i, p in enumerate(params):
            p.data.copy_(tensors[f"param.{i}"])
        if ema is not None:
            for i, e in enumerate(ema):
                e.copy_(tensors[f"ema.{i}"])
        slots: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = value
        optimiser.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
        schedule.load_state_dict(meta["schedule"])
        noise.set_state(tensors["rng.noise"].to(torch.uint8))
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
        order.seek(meta["epoch"], meta["pos"])
        step = int(meta["step"])
    except (KeyError, ValueError, RuntimeError) as exc:  # missing entries, other shapes or counts
        what = f"no entry {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:160]
        raise CheckpointError(f"the training state in {run_dir} does not fit this model ({what}); the run is damaged or "
                              "was trained with another spec: restore it from a backup, or train a new run into "
                              "another --out") from None
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():  # drop lines logged after the checkpoint we resume from
        kept = [line for line in metrics.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        write_text(metrics, "".join(line + "\n" for line in kept))
    return step, meta["best_val"]


def write_train_config(run_dir: Path, config: TrainConfig, extra: Mapping[str, Any] | None = None) -> None:
    write_json(run_dir / "train.json", {**config.model_dump(), **(extra or {})})
