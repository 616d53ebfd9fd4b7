"""`train_run`: from a spec and a cohort (table or BIDS) to a run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from metavoxel.data import DataSpec, read_cohort, save_splits, split_subjects
from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import InputError
from metavoxel.spec import ModelSpec
from metavoxel.training.checkpoint import save_spec
from metavoxel.training.config import TrainConfig
from metavoxel.training.trainer import TrainResult, distributed, train, write_train_config
from metavoxel.workflows.card import write_model_card
from metavoxel.workflows.encode import encode_cohort

__all__ = ["train_run"]


def train_run(spec: ModelSpec | str | Path, data: str | Path, out: str | Path, config: TrainConfig, *,
              resume: bool = False, cache_dir: str | Path | None = None,
              progress: Callable[[str, int, int, float], None] | None = None,
              log: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Validate the cohort, split it by subject, encode it once, train, and write the run directory.

    Args:
        spec: a ModelSpec or the path of one; its ``data`` section maps columns (default: names match).
        data: a TSV/CSV table or a BIDS root.
        out: the run directory (spec.json, weights, state, metrics.jsonl, splits.json, MODEL_CARD.md).
        resume: continue the newest training state in ``out``.
        cache_dir: latent cache for image_latent variables (default: ``out/latents``).
        progress: ``progress(phase, done, total, loss)``.
        log: called with every metrics row as it is logged (e.g. a `TensorBoardLog`).
    """
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    out = Path(out)
    if not resume and (out / "state.json").exists():
        raise InputError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    model = JointModel(spec)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())  # every problem reported at once
    splits = split_subjects(cohort, (spec.data or DataSpec()).split)
    ddp = distributed()
    tick = progress or (lambda phase, done, total, loss: None)
    cache = Path(cache_dir) if cache_dir is not None else out / "latents"
    if ddp.rank == 0:  # one writer: the run files and the latent cache; the other ranks then read the cache
        out.mkdir(parents=True, exist_ok=True)
        save_splits(out / "splits.json", splits, cohort)
        save_spec(out, model)
        write_train_config(out, config, {"data": str(data)})
        if any(hasattr(v, "vae") for v in model.variables.values()):  # fill the latent cache once
            encode_cohort(model, cohort, cache_dir=cache, progress=lambda d, t: tick("encoding", d, t, float("nan")))
    ddp.barrier()
    records = encode_cohort(model, cohort.select(splits["train"]), cache_dir=cache)
    val = (encode_cohort(model, cohort.select(splits["val"]), cache_dir=cache) if splits.get("val") else None)
    result = train(model, records, config, val=val, run_dir=out, resume=resume,
                   progress=lambda d, t, loss: tick("training", d, t, loss), log=log)
    if ddp.rank == 0:
        write_model_card(out, model, cohort, splits, config, result)
    return result
