"""Commands over run directories and cohorts: train-vae, encode, train, sample, predict, evaluate, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from metavoxel.cli.display import console, phase_progress, progress_bar, result_table

Spec = Annotated[Path, typer.Option("--spec", help="Model spec (YAML or JSON).")]
Data = Annotated[Path, typer.Option("--data", help="Cohort: a TSV/CSV table or a BIDS root.")]
Model = Annotated[Path, typer.Option("--model", help="Run directory written by `metavoxel train`.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output directory or file.")]
OutTable = Annotated[str, typer.Option("--out", "-o", help="Output TSV file, or a folder (existing, or written "
                                       "with a trailing /) to write predictions.tsv in.")]
OutChecks = Annotated[str, typer.Option("--out", "-o", help="Output TSV file, or a folder (existing, or written "
                                        "with a trailing /) to write checks.tsv in.")]
Steps = Annotated[int | None, typer.Option("--steps", help="Reverse steps (default: the model's).", min=1)]
Grid = Annotated[str | None, typer.Option("--grid", help="Spacing of the reverse steps' levels: quadratic (fine near "
                                          "t = 0, which keeps a scalar's sample spread) or uniform (the paper's). "
                                          "Default: the model's.")]


def seed_option(value: int | None) -> int | None:
    """``--seed`` checked as it is parsed (`metavoxel.seeds.check_seed`): an out-of-range seed is one line with exit
    code 2 before any work, not an overflow traceback from the random generator."""
    from metavoxel.seeds import check_seed

    return None if value is None else check_seed(value, "--seed")


Seed = Annotated[int | None, typer.Option("--seed", help="Random seed (default: the model's).", callback=seed_option)]
Samples = Annotated[int, typer.Option("--num-samples", "-n", help="Samples per subject.", min=1)]
Precision = Annotated[str, typer.Option("--precision", help="fp32, or bf16 network autocast.")]
Conditioning = Annotated[str | None, typer.Option("--conditioning", help="How fixed variables are held: repaint "
                                                   "(re-noised every step, the paper) or clean (fed at level 0; a "
                                                   "model trained with clean subsets). Default: the model's.")]
Guidance = Annotated[float, typer.Option("--guidance", help="Classifier-free guidance weight w >= 0 towards the "
                                         "fixed variables (a model trained with prior subsets).", min=0.0)]


TypicalityFlag = Annotated[bool, typer.Option("--typicality/--no-typicality", help="Score how typical each record's "
                                              "given values are (<= 10 network calls per record; never changes the "
                                              "answer) and warn for each atypical one.")]
def threshold_option(value: float) -> float:
    """``--typicality-threshold`` checked as it is parsed: strictly between 0 and 100, one line before any work."""
    from metavoxel.evaluation.typicality import check_threshold

    return check_threshold(value, "--typicality-threshold")


TypicalityThreshold = Annotated[float, typer.Option("--typicality-threshold", help="Warn above this percentile of "
                                                    "the validation split's typicality (strictly between 0 and "
                                                    "100).", callback=threshold_option)]


def train_vae(spec: Spec, data: Data, out: Out = Path("runs/vae"),
              steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 2000,
              batch_size: Annotated[int, typer.Option(help="Volumes per step.", min=1)] = 2,
              lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
              lr_schedule: Annotated[str, typer.Option(help="constant, or cosine (decays to 0 by the last step).")]
              = "constant",
              adv_start: Annotated[int, typer.Option(help="Step the adversarial loss switches on.")] = 500,
              perceptual_weights: Annotated[Path | None, typer.Option(
                  help="Pretrained feature-network weights (.safetensors) for the perceptual loss; off without.")] = None,
              disc_layers: Annotated[int, typer.Option(help="Strided layers of the patch discriminator.", min=1)] = 3,
              variable: Annotated[str | None, typer.Option(help="The image_latent variable to train.")] = None,
              precision: Annotated[str, typer.Option("--precision", help="fp32, or bf16 autocast (CUDA, or a CPU "
                                                     "with bf16 instructions).")] = "fp32",
              resume: Annotated[bool, typer.Option("--resume", help="Continue the VAE training in --out (its "
                                                   "state is saved every 500 steps).")] = False) -> None:
    """Train the spec's 3D KL-VAE (L1 + KL + patch adversarial [+ perceptual]) and report PSNR/SSIM."""
    from metavoxel.vae import VAETrainConfig
    from metavoxel.workflows.vae import train_vae_run

    config = VAETrainConfig.build(steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                                  adv_start=min(adv_start, steps), precision=precision,
                                  perceptual_weights=perceptual_weights, disc_layers=disc_layers)
    with progress_bar() as bar:
        task = bar.add_task("training VAE", total=steps)
        report = train_vae_run(spec, data, out, config, variable=variable, resume=resume,
                               progress=lambda step, total, record: bar.update(task, completed=step))
    console().print(f"validation PSNR {report.val_psnr:.2f} dB, SSIM {report.val_ssim:.3f}; latent scale factor "
                    f"{report.scale_factor:.4f}; saved {escape(str(out))}/vae.safetensors")
    for name, probe in report.probe.items():
        console().print(probe_line(name, probe))
    console().print(f"next: set weights: {escape(str(out))}/vae.safetensors on the image variable of your spec (its scale factor "
                    f"{report.scale_factor:.4f} is read from {escape(str(out))}/vae.json), then `metavoxel encode` and "
                    "`metavoxel train`")


def probe_line(name: str, probe: dict) -> str:
    """One line of the signal probe: raw vs reconstructed validation images, and the constant guess."""
    metric = "MAE" if probe["kind"] == "continuous" else "accuracy"
    key = metric.lower()
    ratio = "n/a" if probe["ratio"] is None else f"{probe['ratio']:.2f}x"
    line = (f"{name} probe ({probe['features']} features, {probe['test']} validation images): {metric} raw "
            f"{probe[f'{key}_raw']:.3g}, reconstructed {probe[f'{key}_recon']:.3g} ({ratio}; keeps the signal at "
            f"<= 1.2x), constant guess {probe[f'{key}_baseline']:.3g}")
    if probe.get(f"{key}_refit") is not None:
        refit = "n/a" if probe.get("refit_ratio") is None else f"{probe['refit_ratio']:.2f}x"
        line += f"; refitted on reconstructions {probe[f'{key}_refit']:.3g} ({refit})"
    return line


def encode(spec: Spec, data: Data, cache: Annotated[Path, typer.Option("--cache", help="Latent cache directory.")]
           = Path("runs/latents")) -> None:
    """Encode every image of the cohort once into the latent cache (unchanged files are skipped)."""
    from metavoxel.workflows.vae import encode_run

    with progress_bar() as bar:
        task = bar.add_task("encoding", total=None)
        counts = encode_run(spec, data, cache, progress=lambda d, t: bar.update(task, completed=d, total=t),
                            report=lambda line: console().print(line, markup=False, highlight=False))
    console().print(f"{counts['images']} images: {counts['cached_before']} were cached, "
                    f"{counts['images'] - counts['cached_before']} encoded; cache at {cache}")


def train(spec: Spec, data: Data, out: Out = Path("runs/joint"),
          steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 10_000,
          batch_size: Annotated[int, typer.Option(help="Global batch size.", min=1)] = 8,
          lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-4,
          val_every: Annotated[int, typer.Option(help="Validation every N steps.", min=1)] = 500,
          checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.", min=1)] = 500,
          cache: Annotated[Path | None, typer.Option(help="Latent cache (default OUT/latents).")] = None,
          resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly: refused, naming "
                                                   "what differs, if the spec, data or settings are not the run's "
                                                   "(--spec OUT/spec.json gives its own spec).")] = False,
          seed: Annotated[int, typer.Option(help="Data order and noise seed.", callback=seed_option)] = 0,
          tensorboard: Annotated[bool, typer.Option(
              "--tensorboard", help="Also log the metrics to OUT/tensorboard (needs metavoxel[tensorboard]).")]
          = False,
          calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="After training, compute "
                                                  "OUT/calibration.json from the validation split (typicality and "
                                                  "bias correction; `metavoxel calibrate` does it later).")]
          = True) -> None:
    """Train the joint model on a cohort (one or many GPUs with torchrun, or the CPU)."""
    from metavoxel.training import TrainConfig
    from metavoxel.training.tensorboard import TensorBoardLog
    from metavoxel.workflows import train_run

    board = TensorBoardLog(out / "tensorboard") if tensorboard else None  # a missing package fails before any work

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, val_every=val_every,
                         checkpoint_every=checkpoint_every, warmup_steps=min(500, steps // 10), seed=seed)
    import time

    with progress_bar(loss=True) as bar:
        tasks: dict[str, int] = {}
        started: dict[str, float] = {}

        def progress(phase: str, done: int, total: int, loss: float) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, loss=float("nan"), rate=0.0)
                started[phase] = time.perf_counter()
            per_step = batch_size if phase == "training" else 1
            rate = done * per_step / max(1e-9, time.perf_counter() - started[phase])
            bar.update(tasks[phase], completed=done, total=total, loss=loss, rate=rate)

        try:
            result = train_run(spec, data, out, config, resume=resume, cache_dir=cache, progress=progress,
                               report=lambda line: console().print(line, markup=False, highlight=False), log=board,
                               calibrate=calibrate)
        finally:
            if board is not None:
                board.close()
    best = f", best validation loss {result.best_val:.4f}" if result.best_val is not None else ""
    console().print(f"trained {result.steps} steps, final loss {result.last_loss:.4f}{best}; run directory {escape(str(out))}; "
                    f"curves: metavoxel plot {escape(str(out))}")


def sample(model: Model,
           fix: Annotated[list[str] | None, typer.Option("--fix", help="NAME=VALUE, repeatable (age=72.5, sex=F, "
                                                         "image=scan.nii.gz).")] = None,
           mask: Annotated[list[str] | None, typer.Option("--mask", help="NAME=mask.nii.gz: keep the fixed image "
                                                          "only where the mask is non-zero (inpainting).")] = None,
           num_samples: Samples = 1, steps: Steps = None, grid: Grid = None, seed: Seed = None,
           out: Out = Path("samples"),
           space: Annotated[str, typer.Option(help="Grid of images derived from a given scan: source or model.")]
           = "source", precision: Precision = "fp32", conditioning: Conditioning = None,
           guidance: Guidance = 0.0, typicality: TypicalityFlag = True,
           typicality_threshold: TypicalityThreshold = 99.0,
           impute: Annotated[bool, typer.Option("--impute/--no-impute", help="With an image fixed inside a --mask "
                                                "and a variable left free: complete the image first, then sample the "
                                                "free variables given it whole (twice the network calls; "
                                                "docs/trust.md).")] = True) -> None:
    """Sample every free variable with the --fix ones held (generation, inpainting, regression, classification)."""
    from metavoxel.diffusion.options import SamplingOptions
    from metavoxel.workflows.sample import parse_assignments, sample_run

    options = SamplingOptions(num_samples=num_samples, steps=steps, grid=grid, seed=seed, precision=precision,
                              conditioning=conditioning, guidance=guidance,
                              impute=impute)  # validated here, before any work
    fixed, masks = parse_assignments(fix or [], "--fix"), parse_assignments(mask or [], "--mask")
    tables = []  # rendered before any file is written: a failure there leaves no samples.json behind
    with progress_bar() as bar:
        task = bar.add_task("sampling", total=None)
        _result, files = sample_run(model, fixed, masks, out, options, space=space,
                                    progress=lambda d, t: bar.update(task, completed=d, total=t),
                                    before_write=lambda result: tables.append(result_table(result)),
                                    typicality=typicality_threshold if typicality else None)
    console().print(tables[0])
    if _result is not None and "typicality" in (scored := _typicality_line(out)):
        console().print(scored, markup=False, highlight=False)
    console().print(_written(files, out), markup=False, highlight=False)


def predict(model: Model, data: Data,
            target: Annotated[str, typer.Option("--target", help="The variable to predict.")],
            given: Annotated[str | None, typer.Option("--given", help="Comma-separated variables to condition on "
                                                      "(default: all others; an empty list is refused).")] = None,
            num_samples: Annotated[int | None, typer.Option("--num-samples", "-n", help="Samples per subject "
                                                            "(default 3; --method sample only).", min=1)] = None,
            steps: Annotated[int | None, typer.Option("--steps", help="Reverse steps (default: the model's; "
                                                      "--method sample only).", min=1)] = None,
            grid: Annotated[str | None, typer.Option("--grid", help="Spacing of the reverse steps' levels: "
                                                     "quadratic or uniform (default: the model's; --method "
                                                     "sample only).")] = None,
            seed: Seed = None,
            batch_size: Annotated[int, typer.Option(help="Rows per network call (whole subjects). Each subject draws "
                                                    "from its own seeded generator, so its answer does not depend "
                                                    "on the other rows or on this.", min=1)] = 16,
            out: OutTable = "predictions.tsv", precision: Precision = "fp32",
            method: Annotated[str, typer.Option("--method", help="sample (S samples per subject) or point (the "
                                                "model's x0 prediction, <= 5 network calls per subject; it takes "
                                                "--seed, --batch-size and --precision, and refuses the sampling "
                                                "options -n, --steps, --grid, --conditioning, --guidance).")]
            = "sample",
            conditioning: Annotated[str | None, typer.Option("--conditioning", help="How given variables are held "
                                                             "while sampling: repaint or clean (default: the "
                                                             "model's; --method sample only).")] = None,
            guidance: Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance weight w >= 0 "
                                                           "(default 0; a model trained with prior subsets; "
                                                           "--method sample only).", min=0.0)] = None,
            typicality: TypicalityFlag = True, typicality_threshold: TypicalityThreshold = 99.0) -> None:
    """Predict one variable for every subject of a table (mean, SD and an interval with its real level, or
    class frequencies); an interval reaches 90% from 19 samples (-n 19), 3 samples give a 50% interval. With the
    true value in the table, brain-PAD, its bias-corrected value and the centile of the truth; each record's
    typicality percentile, with a warning for each atypical one (docs/trust.md)."""
    from metavoxel.diffusion.options import request_options
    from metavoxel.workflows.predict import predict_run

    if method == "sample" and num_samples is None:
        num_samples = 3
    options = request_options(method, num_samples=num_samples, steps=steps, grid=grid, seed=seed,
                              batch_size=batch_size, precision=precision, conditioning=conditioning,
                              guidance=guidance)  # what does not apply to the method is refused here, once
    names = None if given is None else [g.strip() for g in given.split(",") if g.strip()]  # "": refused
    notes: list[str] = []
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=None)
        path = predict_run(model, data, target, out, options, given=names,
                           progress=lambda d, t: bar.update(task, completed=d, total=t),
                           typicality=typicality_threshold if typicality else None, report=notes.append)
    for line in notes:
        console().print(line, markup=False, highlight=False)
    console().print(f"wrote {escape(str(path))}")


def evaluate(model: Model, data: Data, out: Out = Path("runs/eval"),
             split: Annotated[str, typer.Option(help="train, val or test (the run's splits.json), or all records "
                                                "of --data.")] = "test",
             num_samples: Samples = 3, steps: Steps = None, grid: Grid = None,
             seed: Annotated[int, typer.Option(help="Sampling seed.", callback=seed_option)] = 0,
             image: Annotated[str, typer.Option("--image", help="The image variable.")] = "image",
             continuous: Annotated[str, typer.Option("--continuous", help="The continuous variable (regression).")]
             = "age",
             categorical: Annotated[str, typer.Option("--categorical", help="The categorical variable "
                                                      "(classification).")] = "sex",
             features: Annotated[str, typer.Option(help="FID/MMD features: vae (the model's own encoder), "
                                                   "inception[:FILE], radimagenet:FILE, medicalnet:FILE, or none.")]
             = "vae",
             likelihood_timesteps: Annotated[int, typer.Option(help="Timesteps of likelihood classification "
                                                               "(0: off).", min=0)] = 25,
             regressor: Annotated[Path | None, typer.Option(help="Baseline regressor directory, reads generated "
                                                            "images back (conditional fidelity).")] = None,
             classifier: Annotated[Path | None, typer.Option(help="Baseline classifier directory (conditional "
                                                             "fidelity).")] = None,
             batch_size: Annotated[int, typer.Option(help="Rows per network call.", min=1)] = 96,
             precision: Precision = "fp32",
             method: Annotated[str, typer.Option("--method", help="sample, or point: also the point prediction "
                                                 "(<= 5 network calls per subject; a model trained with clean "
                                                 "subsets) beside the sampled answers. -n, --steps and --grid shape "
                                                 "the sampled answers only (point prediction draws no samples and "
                                                 "reads its own levels); --seed, --batch-size and --precision "
                                                 "apply to both.")] = "sample",
             typicality: TypicalityFlag = True, typicality_threshold: TypicalityThreshold = 99.0) -> None:
    """The paper's evaluation of a run: age MAE, PIT/CRPS/spread-skill/coverage, sex accuracy/AUROC/ECE, Table 2,
    FID/MMD, MS-SSIM. Coverage of a 90% interval needs -n 20; with fewer samples its real level is reported."""
    from metavoxel.evaluation import EvaluationOptions, Roles
    from metavoxel.workflows.evaluate import evaluate_run

    options = EvaluationOptions(num_samples=num_samples, steps=steps, grid=grid, seed=seed, batch_size=batch_size,
                                precision=precision, likelihood_timesteps=likelihood_timesteps, method=method,
                                typicality=typicality_threshold if typicality else None)
    with progress_bar() as bar:
        progress = phase_progress(bar, width=24)

        metrics = evaluate_run(model, data, out, split=split, roles=Roles(image, continuous, categorical),
                               options=options, features=None if features == "none" else features,
                               regressor=regressor, classifier=classifier, progress=progress)
    from metavoxel.evaluation.report import coverage_text, fmt
    from metavoxel.evaluation.uncertainty import COVERAGE_SAMPLES

    def num(value, digits: int = 2) -> str:  # None (e.g. the SD of a single record) prints as n/a
        return fmt(value, digits, missing="n/a")

    reg, cls, unc = metrics["regression"], metrics["classification"], metrics["uncertainty"]
    console().print(f"{continuous} MAE {num(reg['mae'])} ± {num(reg['mae_sd'])}, CRPS {num(unc['crps'])}, "
                    f"spread-skill {num(unc['spread_skill'])}, coverage "
                    f"{coverage_text(unc['coverage'], unc['coverage_level'])}; {categorical} accuracy "
                    f"{num(cls['accuracy'], 3)}; wrote {escape(str(out))}/report.md, metrics.json and figures")
    if "point" in metrics:
        preg, pcls = metrics["point"]["regression"], metrics["point"]["classification"]
        console().print(f"point prediction ({metrics['point']['calls_per_subject']} network calls per subject): "
                        f"{continuous} MAE {num(preg['mae'])} in {num(preg['seconds_per_subject'], 4)} s/subject "
                        f"(sampling {num(reg['seconds_per_subject'], 4)}); {categorical} accuracy "
                        f"{num(pcls['accuracy'], 3)} in {num(pcls['seconds_per_subject'], 4)} s/subject (sampling "
                        f"{num(cls['seconds_per_subject'], 4)})")
    ages = metrics.get("brain_age")
    if ages:
        after = ages.get("after")
        console().print(f"brain age: r {num(ages['before']['r'], 3)}, R² {num(ages['before']['r2'], 3)}, corr(PAD, "
                        f"{continuous}) {num(ages['before']['pad_age_r'], 3)}"
                        + (f"; bias-corrected MAE {num(after['mae'])}, corr(PAD, {continuous}) "
                           f"{num(after['pad_age_r'], 3)}" if after else "; no bias correction (metavoxel calibrate)"))
    if metrics.get("trust_note"):
        console().print(metrics["trust_note"], markup=False, highlight=False)
    typ = metrics.get("typicality")
    if typ:
        console().print(f"typicality: {typ['flagged']} of {typ['n']} records above the validation split's "
                        f"{typ['threshold']:g}th percentile")
    if num_samples < COVERAGE_SAMPLES:
        console().print(f"coverage: {unc['coverage_note']}")


def _typicality_line(out: Path) -> str:
    """``typicality percentile P of the given values (image Q, metadata R)`` from samples.json, or ``""``."""
    import json

    try:
        scored = json.loads((out / "samples.json").read_text(encoding="utf-8")).get("typicality") or {}
    except (OSError, ValueError):
        return ""
    if scored.get("percentile") is None:
        return scored.get("note", "")
    parts = ", ".join(f"{k.removesuffix('_percentile')} {v:.1f}" for k, v in scored.items()
                      if k.endswith("_percentile") and v is not None)
    verdict = "atypical: " + " and ".join(scored.get("atypical") or []) if scored.get("flagged") else "typical"
    return (f"typicality of the given values: percentile {scored['percentile']:.1f} of the validation split's "
            f"({parts}): {verdict}" + (f"\n{scored['note']}" if scored.get("note") else ""))


def _written(files: list[Path], out: Path) -> str:
    """``wrote a.nii.gz, b.nii.gz with JSON sidecars, preview.png, preview.pdf, samples.json to OUT``: what was written."""
    names = [Path(f).relative_to(out).as_posix() if Path(f).is_relative_to(out) else str(f) for f in files]
    images = [n for n in names if n.endswith((".nii", ".nii.gz"))]
    parts = [n for n in names if n not in images]
    if images:
        shown = ", ".join(images) if len(images) <= 4 else f"{images[0]} … {images[-1]} ({len(images)} images)"
        sidecars = all((out / n.removesuffix(".gz").removesuffix(".nii")).with_suffix(".json").is_file()
                       for n in images)
        parts.insert(0, shown + (" with JSON sidecars" if sidecars else ""))
    return f"wrote {', '.join(parts)} to {out}"


def check(model: Model, data: Data, out: OutChecks = "checks.tsv",
          variables: Annotated[str | None, typer.Option("--variables", help="Comma-separated scalar variables to "
                                                        "check (default: every one in the table).")] = None,
          min_probability: Annotated[float, typer.Option("--min-probability", help="Flag a categorical value whose "
                                                         "posterior probability given the rest is below this.",
                                                         min=0.0, max=1.0)] = 0.05,
          level: Annotated[float, typer.Option("--level", help="Flag a continuous value outside this central "
                                               "fraction of what the image predicts.", min=0.0, max=1.0)] = 0.99,
          method: Annotated[str, typer.Option("--method", help="How a continuous value is checked: point (its point "
                                              "prediction against the validation fit, 5 network calls) or sample "
                                              "(its own predictive from --num-samples × --steps calls).")] = "point",
          num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Samples per record with --method "
                                                   "sample.", min=3)] = 16,
          steps: Annotated[int, typer.Option("--steps", help="Reverse steps per sample with --method sample.",
                                             min=1)] = 25,
          seed: Seed = None,
          batch_size: Annotated[int, typer.Option(help="Records per network call.", min=1)] = 16) -> None:
    """Check every record's metadata against its own image (swapped labels, typos): one row per record with a
    flag per variable; 5 network calls per record and variable by point prediction, num_samples × steps by
    sampling (docs/trust.md)."""
    from metavoxel.workflows.check import check_run

    names = None if variables is None else [v.strip() for v in variables.split(",") if v.strip()]
    notes: list[str] = []
    with progress_bar() as bar:
        task = bar.add_task("checking", total=None)
        path, flagged = check_run(model, data, out, variables=names, min_probability=min_probability, level=level,
                                  method=method, num_samples=num_samples, steps=steps, seed=seed, batch_size=batch_size,
                                  progress=lambda d, t: bar.update(task, completed=d, total=t),
                                  report=notes.append)
    for line in notes:
        console().print(line, markup=False, highlight=False)
    console().print(f"{flagged} record(s) flagged; wrote {escape(str(path))}")


def calibrate(model: Model,
              data: Annotated[Path | None, typer.Option("--data", help="The run's cohort (default: the one its "
                                                        "train.json names).")] = None) -> None:
    """Compute a run's calibration.json from its validation split: the typicality reference and the bias
    corrections (`train` writes it; this is for older runs, or after moving the cohort)."""
    from metavoxel.workflows.calibrate import calibrate_run

    with progress_bar() as bar:
        progress = phase_progress(bar, width=24)

        path = calibrate_run(model, data, progress=progress,
                             report=lambda line: console().print(line, markup=False, highlight=False))
    console().print(f"wrote {escape(str(path))}")


def plot(run_dir: Annotated[Path, typer.Argument(help="Run directory written by `metavoxel train`.")],
         out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default "
                                                  "RUN_DIR/training_curves.png); the vector copy goes beside it.")]
         = None,
         vector: Annotated[str, typer.Option("--vector", help="Vector copy: pdf or svg.")] = "pdf") -> None:
    """Draw a run's training curves (total and per-variable loss, validation metrics) against step."""
    from metavoxel.figures import training_curves

    files = training_curves(run_dir, out, vector=vector)
    console().print("wrote " + ", ".join(escape(str(f)) for f in files))
