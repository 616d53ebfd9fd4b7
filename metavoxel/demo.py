"""The whole story on the built-in toy cohort: train one joint model, then answer five questions with it.

Unconditional generation, conditional generation (age and group fixed), regression (age from image and
group), classification (group from image and age) and inpainting (half the image fixed) — one model, no
retraining. `run_demo` returns plain tables; ``metavoxel demo`` renders them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metavoxel.diffusion import JointModel
from metavoxel.io.png import montage, write_png
from metavoxel.toy import GROUP_PROBS, GROUPS, TOY_SPEC, toy_cohort
from metavoxel.training import fit

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


def run_demo(out: str | Path, *, records: int = 2000, train_steps: int = 600, steps: int = 25, num_samples: int = 3,
             test_subjects: int = 48, seed: int = 0,
             progress: Callable[[str, int, int], None] | None = None) -> DemoReport:
    """Train on the toy cohort and run the five zero-shot tasks; previews go to ``out``.

    Args:
        progress: called as ``progress(phase, done, total)`` during training and sampling.
    """
    out = Path(out)
    tick = progress or (lambda phase, done, total: None)
    report = DemoReport()
    train, test = toy_cohort(records, seed=seed), toy_cohort(test_subjects, seed=seed + 1)
    model = JointModel({**TOY_SPEC, "seed": seed})
    start = time.perf_counter()
    losses = fit(model, train, steps=train_steps, seed=seed, progress=lambda d, t, loss: tick("training", d, t))
    report.metrics["train_seconds"] = time.perf_counter() - start
    report.metrics["final_loss"] = float(np.mean(losses[-50:]))

    def sample(phase: str, **kwargs: Any):
        return model.sample(steps=steps, seed=seed, progress=lambda d, t: tick(phase, d, t), **kwargs)

    # 1. unconditional: marginals of the scalars against the training data
    free = sample("unconditional", num_subjects=256)
    ages = free.samples["age"].flatten()
    freq = torch.bincount(free.samples["group"].flatten(), minlength=len(GROUPS)).double() / ages.numel()
    report.tables.append(Table("Unconditional samples vs training data", ["statistic", "samples", "training"], [
        ["age mean", f"{ages.mean():.1f}", f"{train['age'].mean():.1f}"],
        ["age SD", f"{ages.std():.1f}", f"{train['age'].std():.1f}"],
        *[[f"P(group={g})", f"{freq[i]:.2f}", f"{GROUP_PROBS[i]:.2f}"] for i, g in enumerate(GROUPS)],
    ]))
    report.files.append(_preview(out / "unconditional.png", free.samples["image"][:12, 0]))

    # 2. conditional generation: images for requested (age, group)
    wanted_age, wanted_group = [45.0, 70.0, 90.0] * 3, [g for g in GROUPS for _ in range(3)]
    cond = sample("conditional", fix={"age": wanted_age, "group": wanted_group})
    report.files.append(_preview(out / "conditional.png", cond.samples["image"][:, 0]))
    report.tables.append(Table("Conditional generation (previews in conditional.png, rows = group, columns = age)",
                               ["group", "ages"], [[g, "45, 70, 90"] for g in GROUPS]))

    # 3. regression: age from image + group
    reg = sample("regression", fix={"image": test["image"], "group": test["group"]}, num_samples=num_samples)
    summary = reg.summary("age")
    mean, lower, upper = (torch.tensor(summary[k]) for k in ("mean", "lower", "upper"))
    mae = (mean - test["age"]).abs().mean().item()
    baseline = (train["age"].mean() - test["age"]).abs().mean().item()
    report.metrics.update(age_mae=mae, age_mae_baseline=baseline)
    report.tables.append(Table(f"Age from image + group ({num_samples} samples each)",
                               ["subject", "true age", "predicted (mean ± SD)", "90% interval"],
                               [[i, f"{test['age'][i]:.1f}", f"{mean[i]:.1f} ± {summary['sd'][i]:.1f}",
                                 f"[{lower[i]:.1f}, {upper[i]:.1f}]"] for i in range(5)]
                               + [["all", "", f"MAE {mae:.2f} years", f"training-mean MAE {baseline:.2f}"]]))

    # 4. classification: group from image + age
    cls = sample("classification", fix={"image": test["image"], "age": test["age"]}, num_samples=num_samples)
    majority = cls.summary("group")["majority"]
    accuracy = float(np.mean([m == g for m, g in zip(majority, test["group"])]))
    chance = max(GROUP_PROBS)
    report.metrics.update(group_accuracy=accuracy, group_chance=chance)
    report.tables.append(Table(f"Group from image + age (majority of {num_samples} samples)",
                               ["subject", "true", "predicted", "P(A, B, C)"],
                               [[i, test["group"][i], majority[i], ", ".join(f"{p:.2f}" for p in cls.summary("group")["probs"][i])]
                                for i in range(5)] + [["all", "", f"accuracy {accuracy:.2f}", f"majority-class {chance:.2f}"]]))

    # 5. inpainting: keep the left half of the image, generate the right half (and age, group)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :8] = True
    inp = sample("inpainting", fix={"image": test["image"][:6]}, masks={"image": mask})
    kept = bool((inp.samples["image"][:, 0][..., :8] == test["image"][:6][..., :8]).all())
    report.metrics["inpainting_known_pixels_exact"] = float(kept)
    report.files.append(_preview(out / "inpainting.png",
                                 torch.cat([test["image"][:6], test["image"][:6] * mask, inp.samples["image"][:, 0]])))
    report.tables.append(Table("Inpainting (right half generated; rows: original, known half, result)",
                               ["known pixels kept exactly", "sampled ages", "sampled groups"],
                               [[str(kept), ", ".join(f"{a:.0f}" for a in inp.samples['age'][:, 0].tolist()),
                                 ", ".join(sum(inp.labels("group"), []))]]))
    return report


def _preview(path: Path, images: torch.Tensor) -> Path:
    """images (N, 1, H, W) -> a PNG montage, 3 or 6 to a row."""
    arrays = [img[0].numpy() for img in images]
    return write_png(path, montage(arrays, columns=6 if len(arrays) % 6 == 0 else 3))
