"""How much age and sex a linear probe reads from a run's cached VAE latents (the joint model's input).

Fits `metavoxel.vae.probe.RidgeProbe` (penalty by leave-one-out) on a random 75% of the cached latents
and scores the other 25%: age MAE against the training mean's, sex accuracy against the majority class.
Views: the flat latent, its 2x2x2 average pool, per-channel quantiles and moments, and pool + squares.
A linear probe is a lower bound on what the latents carry.

    OMP_NUM_THREADS=1 python benchmarks/latent_probe.py runs/demo/latents runs/demo/cohort
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from metavoxel.vae.probe import RidgeProbe


def load(cache: Path, cohort: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents (N, C, *grid), age (N,) and sex as M = 1 (N,) of every cached scan of the BIDS cohort."""
    index = json.loads((cache / "index.json").read_text())["entries"]
    rows = {r["participant_id"]: r for r in csv.DictReader(open(cohort / "participants.tsv"), delimiter="\t")}
    shards: dict[str, dict[str, torch.Tensor]] = {}
    latents, age, sex = [], [], []
    for key, entry in sorted(index.items(), key=lambda kv: kv[1]["source"]):
        if entry["shard"] not in shards:
            shards[entry["shard"]] = load_file(cache / "shards" / entry["shard"])
        row = rows[Path(entry["source"]).name.split("_")[0]]
        latents.append(shards[entry["shard"]][key])
        age.append(float(row["age"]))
        sex.append(float(row["sex"] == "M"))
    return torch.stack(latents).double(), torch.tensor(age, dtype=torch.float64), torch.tensor(sex, dtype=torch.float64)


def views(latents: torch.Tensor) -> dict[str, torch.Tensor]:
    """Feature views of (N, C, *grid) latents, each (N, F)."""
    n, c = latents.shape[:2]
    pool = torch.nn.functional.avg_pool3d(latents, 2).reshape(n, -1)
    flat = latents.reshape(n, c, -1)  # (N, C, voxels)
    levels = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    quantiles = torch.quantile(flat, levels, dim=2).permute(1, 2, 0).reshape(n, -1)  # (N, C * 10)
    moments = torch.cat([flat.mean(2), flat.std(2), flat.pow(3).mean(2)], 1)
    squares = torch.nn.functional.avg_pool3d(latents.square(), 2).reshape(n, -1)
    return {"flat": latents.reshape(n, -1), "pool2": pool, "quantiles": torch.cat([quantiles, moments], 1),
            "pool2+squares": torch.cat([pool, squares], 1)}


def main(argv: list[str]) -> None:
    """Print the probes for ``argv = [latent cache, cohort]``."""
    latents, age, sex = load(Path(argv[0]), Path(argv[1]))
    n = len(latents)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    train, test = perm[: int(0.75 * n)], perm[int(0.75 * n):]
    baseline = (age[train].mean() - age[test]).abs().mean()
    majority = max(sex[train].mean(), 1 - sex[train].mean())
    print(f"{n} latents; age: training-mean MAE {baseline:.2f}; sex: majority class {majority:.2f}")
    for name, feats in views(latents).items():
        feats = (feats - feats[train].mean(0)) / (feats[train].std(0) + 1e-8)
        mae = (RidgeProbe().fit(feats[train], age[train, None]).predict(feats[test]).flatten() - age[test]).abs().mean()
        guess = RidgeProbe().fit(feats[train], sex[train, None]).predict(feats[test]).flatten() > 0.5
        accuracy = (guess.double() == sex[test]).double().mean()
        print(f"{name}: age MAE {mae:.2f} (ratio {mae / baseline:.2f}); sex accuracy {accuracy:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
