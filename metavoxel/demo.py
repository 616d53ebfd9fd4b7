"""`metavoxel demo`: the main job on the built-in phantom cohort, in under 10 minutes on 2 CPU cores.

A small synthetic T1w cohort (`metavoxel.phantom`, BIDS) → a KL-VAE → one joint model of image, age and
sex (`metavoxel.workflows.study.DEMO`) → five questions with no retraining: unconditional samples,
conditional generation (age and sex fixed), age from image + sex, sex from image + age, and half-brain
inpainting. `run_demo` returns plain tables and figure paths (PNG + PDF brain views); the CLI renders the
tables with rich.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DemoReport", "Table", "run_demo"]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class DemoReport:
    tables: list[Table] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    data: Path | None = None


def run_demo(out: str | Path, *, subjects: int | None = None, vae_steps: int | None = None,
             train_steps: int | None = None, steps: int = 50, num_samples: int = 3, seed: int = 0,
             progress: Callable[[str, int, int], None] | None = None) -> DemoReport:
    """Phantom cohort → VAE → joint model → the five zero-shot tasks; everything is written under ``out``.

    Args:
        subjects, vae_steps, train_steps: override the `DEMO` recipe's budget (e.g. tiny values in tests).
        steps: reverse steps per sample; num_samples: samples per subject for the predictions.
        progress: ``progress(phase, done, total)``.
    """
    from metavoxel.data import DataSpec, load_splits, read_cohort
    from metavoxel.figures import BrainImage, brain_views
    from metavoxel.runs import load_run
    from metavoxel.variables.summaries import level_label
    from metavoxel.workflows.evaluate import records
    from metavoxel.workflows.previews import UNITS, caption, grid_affine, wrap
    from metavoxel.workflows.study import DEMO, make_cohort, train_study_model, train_study_vae

    out = Path(out)
    tick = progress or (lambda phase, done, total: None)
    changes = {k: v for k, v in (("subjects", subjects), ("vae_steps", vae_steps), ("train_steps", train_steps))
               if v is not None}
    recipe = dataclasses.replace(DEMO, seed=seed, **changes)
    # a batch never larger than the training split (about 3/4 of the subjects)
    recipe = dataclasses.replace(recipe, batch_size=min(recipe.batch_size, recipe.subjects * 7 // 10),
                                 vae_batch_size=min(recipe.vae_batch_size, recipe.subjects * 7 // 10))
    report = DemoReport()
    start = time.perf_counter()
    data = make_cohort(recipe, out / "cohort", progress=tick)
    weights, scale, vae_summary = train_study_vae(recipe, data, out / "vae", progress=tick)
    run_dir = out / "model"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # the demo always trains afresh
    train_study_model(recipe, "joint", data, run_dir, vae_weights=weights, scale_factor=scale,
                      cache_dir=out / "latents", progress=tick)
    report.metrics["train_seconds"] = time.perf_counter() - start
    report.run_dir, report.data = run_dir, data
    model = load_run(run_dir)
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    splits = load_splits(run_dir / "splits.json", cohort)
    train, test = cohort.select(splits["train"]).batch(), records(model, cohort, splits["test"], "image")
    sexes = model.variables["sex"].categories
    affine = grid_affine(model.variables["image"])

    def sample(phase: str, **kwargs: Any):
        return model.sample(steps=steps, seed=seed, batch_size=96, progress=lambda d, t: tick(phase, d, t), **kwargs)

    # 1. unconditional samples: the scalars' marginals against the training data
    free = sample("unconditional", num_subjects=48)
    ages, train_ages = free.samples["age"].flatten(), torch.tensor(train["age"], dtype=torch.float64)
    p_female = float((free.samples["sex"] == 0).double().mean())
    train_female = float(np.mean([s == sexes[0] for s in train["sex"]]))
    report.tables.append(Table("Unconditional samples vs training data (previews: unconditional.png)",
                               ["statistic", "samples", "training"], [
        ["age mean", f"{ages.mean():.1f}", f"{train_ages.mean():.1f}"],
        ["age SD", f"{ages.std():.1f}", f"{train_ages.std():.1f}"],
        [f"P(sex={sexes[0]})", f"{p_female:.2f}", f"{train_female:.2f}"]]))
    report.files += brain_views(out / "unconditional.png", wrap([BrainImage(v, affine, f"sample {i}") for i, v in
                                                                 enumerate(free.samples["image"][:8, 0, 0])]),
                                title="unconditional samples", units=UNITS)

    # 2. conditional generation: images for requested (age, sex)
    wanted = [(a, s) for s in sexes for a in (45.0, 70.0, 90.0)]
    cond = sample("conditional", fix={"age": [a for a, _ in wanted], "sex": [s for _, s in wanted]})
    images = cond.samples["image"][:, 0, 0].numpy()
    grid = [[BrainImage(images[j], affine, caption({"age": a, "sex": s})) for j, (a, s) in enumerate(wanted)
             if s == sex] for sex in sexes]  # one row per sex, ages 45, 70, 90
    report.files += brain_views(out / "conditional.png", grid, units=UNITS,
                                title="conditional generation: each image was generated for the values under it")
    report.tables.append(Table("Conditional generation (conditional.png: one row per sex, ages 45, 70, 90)",
                               ["sex", "ages", "brain voxels (mean intensity > 0.1)"],
                               [[s, "45, 70, 90", ", ".join(str(int((images[3 * i + j] > 0.1).sum())) for j in range(3))]
                                for i, s in enumerate(sexes)]))

    # 3. regression: age from image + sex
    reg = sample("age | image, sex", fix={"image": test["image"], "sex": test["sex"]}, num_samples=num_samples)
    summary = reg.summary("age")
    truth = torch.tensor(test["age"], dtype=torch.float64)
    mean = torch.tensor(summary["mean"], dtype=torch.float64)
    mae, baseline = (mean - truth).abs().mean().item(), (train_ages.mean() - truth).abs().mean().item()
    covered = float(((truth >= torch.tensor(summary["lower"])) & (truth <= torch.tensor(summary["upper"]))).double().mean())
    level = summary["level"][0]  # the interval's real level at this S (0.5 from 3 samples), not 90%
    report.metrics.update(age_mae=mae, age_mae_baseline=baseline, age_coverage=covered, age_coverage_level=level)
    report.tables.append(Table(f"Age from image + sex ({num_samples} samples each, {len(truth)} held-out subjects)",
                               ["subject", "true age", "predicted (mean ± SD)", f"{level_label(level)} interval"],
                               [[i, f"{truth[i]:.1f}",
                                 f"{mean[i]:.1f} ± {summary['sd'][i]:.1f}",
                                 f"[{summary['lower'][i]:.1f}, {summary['upper'][i]:.1f}]"] for i in range(5)]
                               + [["all", "", f"MAE {mae:.2f} years", f"training-mean MAE {baseline:.2f}"]]))

    # 4. classification: sex from image + age
    cls = sample("sex | image, age", fix={"image": test["image"], "age": test["age"]}, num_samples=num_samples)
    majority, probs = cls.summary("sex")["majority"], cls.summary("sex")["probs"]
    accuracy = float(np.mean([m == s for m, s in zip(majority, test["sex"])]))
    chance = max(train_female, 1 - train_female)
    report.metrics.update(sex_accuracy=accuracy, sex_majority_class=chance)
    report.tables.append(Table(f"Sex from image + age (majority of {num_samples} samples)",
                               ["subject", "true", "predicted", f"P({', '.join(sexes)})"],
                               [[i, test["sex"][i], majority[i], ", ".join(f"{p:.2f}" for p in probs[i])]
                                for i in range(5)] + [["all", "", f"accuracy {accuracy:.2f}",
                                                      f"majority-class {chance:.2f}"]]))

    # 5. half-brain inpainting: keep the left hemisphere (RAS axis 0 < middle), generate the right one
    known = test["image"][:4]
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, :, : known.shape[2] // 2] = True
    inp = sample("inpainting", fix={"image": known, "age": test["age"][:4], "sex": test["sex"][:4]},
                 masks={"image": mask})
    result = inp.samples["image"][:, 0]
    exact = bool((result[mask] == known[mask]).all())
    report.metrics["inpainting_known_voxels_exact"] = float(exact)
    pairs = [[BrainImage(known[i, 0], affine, f"given subject {i}"),
              BrainImage(result[i, 0], affine, f"inpainted {i}", keep=mask[i, 0])] for i in range(len(known))]
    report.files += brain_views(out / "inpainting.png", pairs, units=UNITS,
                                title="half-brain inpainting: the left hemisphere given, the right one generated")
    report.tables.append(Table("Half-brain inpainting (inpainting.png: given subject, result with the kept half "
                               "outlined)",
                               ["known voxels kept exactly", "subjects"], [[str(exact), len(known)]]))
    report.metrics["total_seconds"] = time.perf_counter() - start
    report.metrics["vae_val_psnr"] = float((vae_summary.get("val") or {}).get("psnr") or float("nan"))
    for name, probe in (vae_summary.get("probe") or {}).items():  # the VAE's signal probe (metavoxel.vae.probe)
        report.metrics[f"vae_probe_{name}_ratio"] = float("nan") if probe["ratio"] is None else float(probe["ratio"])
    return report
