"""MODEL_CARD.md: what a trained model is for, what it saw, and how well it validated."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import torch

from metavoxel.data import Cohort
from metavoxel.diffusion.joint import JointModel
from metavoxel.io.atomic import write_text
from metavoxel.variables.capabilities import HasCategories, HasValueRange

__all__ = ["write_model_card"]


def write_model_card(run_dir: Path, model: JointModel, cohort: Cohort, splits: dict[str, list[int]],
                     config: Any, result: Any) -> Path:
    """Write the card: intended use, data and demographics, preprocessing, variables, training, validation."""
    import metavoxel

    spec = model.spec
    lines = [
        f"# Model card: {spec.name}",
        "",
        f"Trained with metavoxel {metavoxel.__version__} on {datetime.date.today().isoformat()}.",
        "",
        "## Intended use",
        "Research only: generating synthetic images and metadata, and exploratory zero-shot prediction with",
        "uncertainty. **Not for clinical use**, diagnosis or decisions about individuals. Predictions reflect the",
        "training cohort and degrade on scanners, protocols and populations it did not contain.",
        "",
        "## Data",
        f"- source: {cohort.source or '(in memory)'}",
        f"- records: {len(cohort)} from {len(cohort.subjects())} subjects; split by subject: "
        + ", ".join(f"{k} {len(v)} records" for k, v in splits.items()),
    ]
    batch = cohort.batch(splits.get("train"))
    for name, var in model.variables.items():
        values = [v for v in batch.get(name, []) if v is not None]
        missing = len(batch.get(name, [])) - len(values)
        if isinstance(var, HasValueRange) and values:
            t = torch.tensor(values, dtype=torch.float64)
            lines.append(f"- {name} (train): mean {t.mean():.1f}, SD {t.std():.1f}, range [{t.min():.1f}, "
                         f"{t.max():.1f}], missing {missing}")
        elif isinstance(var, HasCategories) and values:
            counts = {c: values.count(c) for c in var.categories}
            lines.append(f"- {name} (train): " + ", ".join(f"{c} {k}" for c, k in counts.items()) + f", missing {missing}")
        elif values:
            lines.append(f"- {name} (train): {len(values)} images, missing {missing}")
    lines += ["", "## Variables and preprocessing"]
    for v in spec.variables:
        details = {k: val for k, val in v.model_dump(mode="json").items() if k not in ("name", "kind", "vae")}
        lines.append(f"- `{v.name}` ({v.kind}): {details}")
    lines += ["", "## Training",
              f"- steps {config.steps}, global batch {config.batch_size}, AdamW lr {config.lr}, EMA {config.ema_decay}, "
              f"precision {config.precision}, seed {config.seed}",
              f"- diffusion: T = {spec.diffusion.timesteps}, {spec.diffusion.sampling_steps} sampling steps by default",
              "", "## Validation",
              f"- final training loss {result.last_loss:.4f}",
              f"- best validation loss {result.best_val:.4f}" if result.best_val is not None else "- no validation split",
              "", "Zero-shot accuracy figures come from `metavoxel evaluate`/`metavoxel predict` on held-out data.", ""]
    return write_text(run_dir / "MODEL_CARD.md", "\n".join(lines))
