"""A tiny training run in its own process, for the SIGKILL-resume and DDP tests (not a test module).

    python train_worker.py RUN_DIR STEPS [--resume] [--pause-after K] [--out WEIGHTS]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_specs import tiny_spec_2d  # noqa: E402

import metavoxel as mv  # noqa: E402
from metavoxel.training import TrainConfig, encode_records, train  # noqa: E402
from metavoxel.training.checkpoint import save_weights  # noqa: E402


def records(model: mv.JointModel):
    g = torch.Generator().manual_seed(0)
    data = {"image": torch.rand(16, 1, 8, 8, generator=g), "age": (40 + 55 * torch.rand(16, generator=g)).tolist(),
            "group": ["A", "B", "C", "A"] * 4}
    return encode_records(model, data)


def config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, ema_decay=0.9, log_every=1,
                       val_every=3, checkpoint_every=2, seed=7, precision="fp32")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("steps", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--pause-after", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args()
    torch.manual_seed(0)
    model = mv.JointModel(tiny_spec_2d())
    data = records(model)
    marker = Path(args.run_dir) / "progress.txt"

    def progress(step: int, steps: int, loss: float) -> None:
        marker.write_text(str(step))
        if args.pause_after and step == args.pause_after:
            time.sleep(120)  # the test kills us here

    Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    train(model, data, config(args.steps), val=data, run_dir=args.run_dir, resume=args.resume, progress=progress)
    if args.out:
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_rank() == 0:
            save_weights(Path(args.out), model.state_dict())


if __name__ == "__main__":
    main()
