"""`train_run`: from a spec and a cohort (table or BIDS) to a run directory."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from metavoxel.data import Cohort, DataSpec, read_cohort, save_splits, split_subjects
from metavoxel.data.identity import cohort_files
from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import InputError
from metavoxel.io.lock import writer_lock
from metavoxel.io.outputs import check_outputs
from metavoxel.runs import RUN_FILES, SPEC_FILE, save_spec
from metavoxel.spec import ModelSpec
from metavoxel.training.config import TrainConfig
from metavoxel.training.trainer import TrainResult, distributed, train, write_train_config
from metavoxel.variables.capabilities import HasValueRange, OwnsFrozenEncoder
from metavoxel.workflows.card import write_model_card
from metavoxel.workflows.encode import encode_cohort
from metavoxel.workflows.latent_scale import fill_scale_factors
from metavoxel.workflows.resume import check_resume

__all__ = ["train_run"]


def train_run(spec: ModelSpec | str | Path, data: str | Path, out: str | Path, config: TrainConfig, *,
              resume: bool = False, cache_dir: str | Path | None = None,
              progress: Callable[[str, int, int, float], None] | None = None,
              report: Callable[[str], None] | None = None,
              log: Callable[[dict[str, float]], None] | None = None, calibrate: bool = True) -> TrainResult:
    """Validate the cohort, split it by subject, encode it once, train, and write the run directory.

    Nothing is written until the whole cohort — every cell and every image's voxels — has passed
    validation; the run files (spec.json, splits.json, train.json) are written once encoding has
    succeeded and training starts. A failure before the first training state is saved removes everything
    this call added to ``out`` (the whole folder if it created it), so no partial run is left behind; once
    a state is saved the run is kept for ``--resume``.

    One process writes a run directory at a time: the call holds ``out``'s writer lock (`metavoxel.io.lock`)
    throughout, and a second call on the same ``out`` is refused before it writes anything. A resume
    continues exactly the run it finds or is refused before writing anything, naming what differs
    (`metavoxel.workflows.resume.check_resume`); it rewrites none of spec.json, splits.json and train.json.

    Args:
        spec: a ModelSpec or the path of one; its ``data`` section maps columns (default: names match).
        data: a TSV/CSV table or a BIDS root.
        out: the run directory (spec.json, weights, state, metrics.jsonl, splits.json, train.json, MODEL_CARD.md).
        resume: continue the newest training state in ``out``.
        cache_dir: latent cache for image_latent variables (default: ``out/latents``).
        progress: ``progress(phase, done, total, loss)``.
        report: receives one-line messages for the user before training: a latent scale factor computed for
            an imported VAE (`fill_scale_factors`), the cohort's summary (records, subjects, how many have no
            image).
        log: called with every metrics row as it is logged (e.g. a `TensorBoardLog`, which creates its event
            file on the first row; files it adds under ``out`` go with the rest of a run that fails before its
            first saved state).
        calibrate: after training, write calibration.json from the validation split (typicality reference and
            bias corrections, `metavoxel.workflows.calibrate`); off, `metavoxel calibrate` writes it later.

    Raises:
        CohortError: the cohort's problems, all at once (nothing written).
        InputError: ``out`` already holds a run and ``resume`` is off, another process is writing it, a resume
            that differs from the run, a spec or table that is one of the run's files; and what encoding or
            training raise (a scan that preprocessing refuses is named by its row and column).
        CheckpointError: ``resume`` on a damaged run (state.json naming a missing state, an unreadable spec).
    """
    spec_file = None if isinstance(spec, ModelSpec) else Path(spec)
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    out = Path(out)
    ddp = distributed()
    if ddp.rank != 0:  # rank 0 is the one writer of the run directory and holds its lock
        return _train_run(spec, spec_file, data, out, config, resume, cache_dir, progress, report, log, ddp,
                          calibrate)
    before, fresh = _entries(out), not (out / "state.json").exists()
    with writer_lock(out, what=f"the run directory {str(out)!r}"):
        try:
            result = _train_run(spec, spec_file, data, out, config, resume, cache_dir, progress, report, log, ddp,
                                calibrate)
        except BaseException:
            if fresh and not (out / "state.json").exists():  # nothing to resume: remove what this call added
                _remove_added(out, before)
            raise
    return result


def _train_run(spec: ModelSpec, spec_file: Path | None, data: str | Path, out: Path, config: TrainConfig,
               resume: bool, cache_dir, progress, report, log, ddp, calibrate: bool = True) -> TrainResult:
    kept = (SPEC_FILE, "splits.json", "train.json") if resume else ()  # a resume keeps the run's own
    writes = [(f"--out ({name})", out / name) for name in RUN_FILES if name not in kept]
    check_outputs([("--spec", spec_file), ("--data", data)], files=writes)
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not resume and present:
        raise InputError(f"{out} already holds a training run ({', '.join(present[:3])}); pass --resume to continue "
                         "it or choose another --out")
    if ddp.rank == 0:  # an imported VAE's scale factor, computed once and recorded in its folder
        spec = fill_scale_factors(spec, data, report=report)
    ddp.barrier()
    spec = fill_scale_factors(spec, data, compute=False)  # the other ranks read what rank 0 recorded
    model = JointModel(spec)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())  # every problem reported at once
    if report is not None:
        report(cohort.summary())
    splits = split_subjects(cohort, (spec.data or DataSpec()).split)
    if resume:  # before anything is written: the same run, or refused naming what differs
        check_resume(out, spec, config, cohort, splits, model)
    check_outputs(cohort_files(cohort), files=writes)  # nor over an image the cohort names
    tick = progress or (lambda phase, done, total, loss: None)
    cache = Path(cache_dir) if cache_dir is not None else out / "latents"
    try:
        if ddp.rank == 0 and any(isinstance(v, OwnsFrozenEncoder) for v in model.variables.values()):  # fill the cache once
            encode_cohort(model, cohort, cache_dir=cache, progress=lambda d, t: tick("encoding", d, t, float("nan")))
        ddp.barrier()
        records = encode_cohort(model, cohort.select(splits["train"]), cache_dir=cache)
        val = (encode_cohort(model, cohort.select(splits["val"]), cache_dir=cache) if splits.get("val") else None)
    except InputError as exc:  # a scan that passed validation but not preprocessing: say which row it is
        raise _placed(exc, cohort, (spec.data or DataSpec()).columns) from None
    if ddp.rank == 0 and not resume:  # one writer of the run files; a resume keeps the run's own
        out.mkdir(parents=True, exist_ok=True)
        save_splits(out / "splits.json", splits, cohort)
        save_spec(out, model)
        write_train_config(out, config, {"data": str(data), "train_means": _train_means(model, cohort, splits)})
    result = train(model, records, config, val=val, run_dir=out, resume=resume,
                   progress=lambda d, t, loss: tick("training", d, t, loss), log=log)
    if ddp.rank == 0:
        write_model_card(out, model, cohort, splits, config, result)
        if calibrate and splits.get("val"):  # what sample, predict and evaluate compare each answer with
            _calibrate(out, cohort, splits["val"], tick, report)
    return result


def _calibrate(out: Path, cohort: Cohort, val: list[int], tick, report) -> None:
    """calibration.json from the validation split, with the run's saved (EMA) weights
    (`metavoxel.workflows.calibrate`); a calibration that cannot be computed is reported, not fatal."""
    from metavoxel.runs import load_run
    from metavoxel.workflows.calibrate import calibrate_cohort, write_calibration

    try:
        calibration = calibrate_cohort(load_run(out), cohort, val, report=report,
                                       progress=lambda phase, d, t: tick("calibrating", d, t, float("nan")))
        write_calibration(out, calibration)
    except InputError as exc:
        if report is not None:
            report(f"no calibration.json ({exc}); typicality and bias correction are off until "
                   f"`metavoxel calibrate --model {out}` succeeds")


def _train_means(model: JointModel, cohort: Cohort, splits: Mapping[str, list[int]]) -> dict[str, float]:
    """The training split's mean of every variable with a declared range: Table 2's trivial predictor, recorded so
    `evaluate` on another cohort compares with the run's own (`metavoxel.workflows.evaluate.population_mean`)."""
    batch = cohort.select(splits["train"]).batch()
    means = {}
    for name, var in model.variables.items():
        if not isinstance(var, HasValueRange):
            continue
        values = [float(v) for v in batch.get(name, []) if v is not None and math.isfinite(float(v))]
        if values:
            means[name] = sum(values) / len(values)
    return means


def _placed(exc: InputError, cohort: Cohort, columns: Mapping[str, str]) -> InputError:
    """``exc`` led by the place (row and column, or BIDS file) of the record whose image it names, if any."""
    message = str(exc)
    for record in cohort:
        for name in cohort.images:
            path = record.values.get(name)
            if path and path in message:
                column = f", column {columns.get(name, name)!r}" if " row " in record.source else ""
                return InputError(f"{record.source}{column}: {message}")
    return exc


def _entries(folder: Path) -> set[str] | None:
    """The names in ``folder`` now; None when it does not exist (then all of it is this run's)."""
    return {p.name for p in folder.iterdir()} if folder.is_dir() else None


def _remove_added(out: Path, before: set[str] | None) -> None:
    """Remove what a failed run added: ``out`` itself if it did not exist, else the entries it added (its lock
    file too: the lock is held by the open file, which this process closes right after)."""
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in out.iterdir() if out.is_dir() else []:
        if entry.name not in before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
