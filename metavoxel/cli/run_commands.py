"""Commands over run directories and cohorts: train-vae, encode, train, sample, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metavoxel.cli.display import console, progress_bar, result_table

Spec = Annotated[Path, typer.Option("--spec", help="Model spec (YAML or JSON).")]
Data = Annotated[Path, typer.Option("--data", help="Cohort: a TSV/CSV table or a BIDS root.")]
Model = Annotated[Path, typer.Option("--model", help="Run directory written by `metavoxel train`.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output directory or file.")]
Steps = Annotated[int | None, typer.Option("--steps", help="Reverse steps (default: the model's).", min=1)]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed (default: the model's).")]
Samples = Annotated[int, typer.Option("--num-samples", "-n", help="Samples per subject.", min=1)]
Precision = Annotated[str, typer.Option("--precision", help="fp32, or bf16 network autocast.")]
Conditioning = Annotated[str | None, typer.Option("--conditioning", help="How fixed variables are held: repaint "
                                                   "(re-noised every step, the paper) or clean (fed at level 0; a "
                                                   "model trained with clean subsets). Default: the model's.")]
Guidance = Annotated[float, typer.Option("--guidance", help="Classifier-free guidance weight w >= 0 towards the "
                                         "fixed variables (a model trained with prior subsets).", min=0.0)]


def train_vae(spec: Spec, data: Data, out: Out = Path("runs/vae"),
              steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 2000,
              batch_size: Annotated[int, typer.Option(help="Volumes per step.", min=1)] = 2,
              lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
              adv_start: Annotated[int, typer.Option(help="Step the adversarial loss switches on.")] = 500,
              perceptual_weights: Annotated[Path | None, typer.Option(
                  help="Pretrained feature-network weights (.safetensors) for the perceptual loss; off without.")] = None,
              disc_layers: Annotated[int, typer.Option(help="Strided layers of the patch discriminator.", min=1)] = 3,
              variable: Annotated[str | None, typer.Option(help="The image_latent variable to train.")] = None) -> None:
    """Train the spec's 3D KL-VAE (L1 + KL + patch adversarial [+ perceptual]) and report PSNR/SSIM."""
    from metavoxel.vae import VAETrainConfig
    from metavoxel.workflows.vae import train_vae_run

    config = VAETrainConfig(steps=steps, batch_size=batch_size, lr=lr, adv_start=min(adv_start, steps),
                            perceptual_weights=perceptual_weights, disc_layers=disc_layers)
    with progress_bar() as bar:
        task = bar.add_task("training VAE", total=steps)
        report = train_vae_run(spec, data, out, config, variable=variable,
                               progress=lambda step, total, record: bar.update(task, completed=step))
    console().print(f"validation PSNR {report.val_psnr:.2f} dB, SSIM {report.val_ssim:.3f}; latent scale factor "
                    f"{report.scale_factor:.4f}; saved {out}/vae.safetensors")
    console().print(f"next: set weights: {out}/vae.safetensors and scale_factor: {report.scale_factor:.4f} on the "
                    "image variable of your spec, then `metavoxel encode` and `metavoxel train`")


def encode(spec: Spec, data: Data, cache: Annotated[Path, typer.Option("--cache", help="Latent cache directory.")]
           = Path("runs/latents")) -> None:
    """Encode every image of the cohort once into the latent cache (unchanged files are skipped)."""
    from metavoxel.workflows.vae import encode_run

    with progress_bar() as bar:
        task = bar.add_task("encoding", total=None)
        counts = encode_run(spec, data, cache, progress=lambda d, t: bar.update(task, completed=d, total=t))
    console().print(f"{counts['images']} images: {counts['cached_before']} were cached, "
                    f"{counts['images'] - counts['cached_before']} encoded; cache at {cache}")


def train(spec: Spec, data: Data, out: Out = Path("runs/joint"),
          steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 10_000,
          batch_size: Annotated[int, typer.Option(help="Global batch size.", min=1)] = 8,
          lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-4,
          val_every: Annotated[int, typer.Option(help="Validation every N steps.", min=1)] = 500,
          checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.", min=1)] = 500,
          cache: Annotated[Path | None, typer.Option(help="Latent cache (default OUT/latents).")] = None,
          resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
          seed: Annotated[int, typer.Option(help="Data order and noise seed.")] = 0) -> None:
    """Train the joint model on a cohort (one or many GPUs with torchrun, or the CPU)."""
    from metavoxel.training import TrainConfig
    from metavoxel.workflows import train_run

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

        result = train_run(spec, data, out, config, resume=resume, cache_dir=cache, progress=progress)
    best = f", best validation loss {result.best_val:.4f}" if result.best_val is not None else ""
    console().print(f"trained {result.steps} steps, final loss {result.last_loss:.4f}{best}; run directory {out}")


def sample(model: Model,
           fix: Annotated[list[str] | None, typer.Option("--fix", help="NAME=VALUE, repeatable (age=72.5, sex=F, "
                                                         "image=scan.nii.gz).")] = None,
           mask: Annotated[list[str] | None, typer.Option("--mask", help="NAME=mask.nii.gz: keep the fixed image "
                                                          "only where the mask is non-zero (inpainting).")] = None,
           num_samples: Samples = 1, steps: Steps = None, seed: Seed = None, out: Out = Path("samples"),
           space: Annotated[str, typer.Option(help="Grid of images derived from a given scan: source or model.")]
           = "source", precision: Precision = "fp32", conditioning: Conditioning = None,
           guidance: Guidance = 0.0) -> None:
    """Sample every free variable with the --fix ones held (generation, inpainting, regression, classification)."""
    from metavoxel.workflows import parse_assignments, sample_run

    fixed, masks = parse_assignments(fix or [], "--fix"), parse_assignments(mask or [], "--mask")
    with progress_bar() as bar:
        task = bar.add_task("sampling", total=None)
        result, files = sample_run(model, fixed, masks, out, num_samples=num_samples, steps=steps, seed=seed,
                                   space=space, precision=precision, conditioning=conditioning, guidance=guidance,
                                   progress=lambda d, t: bar.update(task, completed=d, total=t))
    console().print(result_table(result))
    console().print(f"wrote {len(files)} files to {out} (samples.json, images, preview.png)")


def predict(model: Model, data: Data,
            target: Annotated[str, typer.Option("--target", help="The variable to predict.")],
            given: Annotated[str | None, typer.Option("--given", help="Comma-separated variables to condition on "
                                                      "(default: all others).")] = None,
            num_samples: Samples = 3, steps: Steps = None, seed: Seed = None,
            batch_size: Annotated[int, typer.Option(help="Subjects per network batch.", min=1)] = 16,
            out: Out = Path("predictions.tsv"), precision: Precision = "fp32",
            method: Annotated[str, typer.Option("--method", help="sample (S samples per subject) or point (the "
                                                "model's x0 prediction, <= 5 network calls per subject).")] = "sample",
            conditioning: Conditioning = None, guidance: Guidance = 0.0) -> None:
    """Predict one variable for every subject of a table (mean, SD and 90% interval, or class probabilities)."""
    from metavoxel.workflows import predict_run

    names = [g.strip() for g in given.split(",") if g.strip()] if given else None
    with progress_bar() as bar:
        task = bar.add_task("predicting", total=None)
        path = predict_run(model, data, target, out, given=names, num_samples=num_samples, steps=steps, seed=seed,
                           batch_size=batch_size, precision=precision, method=method, conditioning=conditioning,
                           guidance=guidance, progress=lambda d, t: bar.update(task, completed=d, total=t))
    console().print(f"wrote {path}")


def evaluate(model: Model, data: Data, out: Out = Path("runs/eval"),
             split: Annotated[str, typer.Option(help="train, val or test (the run's splits.json), or all records "
                                                "of --data.")] = "test",
             num_samples: Samples = 3, steps: Steps = None,
             seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
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
             precision: Precision = "fp32") -> None:
    """The paper's evaluation of a run: age MAE, sex accuracy/AUROC/ECE, Table 2, coverage, FID/MMD, MS-SSIM."""
    from metavoxel.evaluation import EvaluationOptions, Roles
    from metavoxel.workflows.evaluate import evaluate_run

    options = EvaluationOptions(num_samples=num_samples, steps=steps, seed=seed, batch_size=batch_size,
                                precision=precision, likelihood_timesteps=likelihood_timesteps)
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase[:24], total=total)
            bar.update(tasks[phase], completed=done, total=total)

        metrics = evaluate_run(model, data, out, split=split, roles=Roles(image, continuous, categorical),
                               options=options, features=None if features == "none" else features,
                               regressor=regressor, classifier=classifier, progress=progress)
    reg, cls = metrics["regression"], metrics["classification"]
    console().print(f"{continuous} MAE {reg['mae']:.2f} ± {reg['mae_sd']:.2f}; {categorical} accuracy "
                    f"{cls['accuracy']:.3f}; wrote {out}/report.md, metrics.json and figures")
