"""Encode a cohort into diffusion space once: image latents through the cache, scalars directly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from metavoxel.data import Cohort
from metavoxel.diffusion.joint import JointModel
from metavoxel.training.trainer import EncodedRecords
from metavoxel.variables.capabilities import OwnsFrozenEncoder, PreparesScans, voxel_grid

__all__ = ["cache_key", "encode_cohort"]


def cache_key(variable: OwnsFrozenEncoder) -> str:
    """Identifies everything that changes a latent variable's latents: the VAE weights (sha256), the VAE
    architecture, the latent scale factor, the model grid and channels, and the preprocessing settings.

    Any change gives another key, so `LatentCache` encodes again instead of returning latents of another
    encoder (a new scale factor used to hit the cache and train on latents scaled by the old one).
    """
    from metavoxel.vae import weights_hash

    prep = variable.preprocessor if isinstance(variable, PreparesScans) else None
    channels, shape = voxel_grid(variable)
    settings = json.dumps({
        "architecture": repr(variable.vae),  # every layer with its hyper-parameters (groups, eps, ...)
        "scale_factor": float(variable.scale_factor),
        "grid": [int(channels), *map(int, shape)],
        "preprocess": prep.spec.model_dump(mode="json") if prep is not None else None,
    }, sort_keys=True)
    return f"{weights_hash(variable.vae)[:32]}-{hashlib.sha256(settings.encode()).hexdigest()[:16]}"


@torch.no_grad()
def encode_cohort(model: JointModel, cohort: Cohort, *, cache_dir: str | Path | None = None, chunk: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> EncodedRecords:
    """z0 and presence of every record. With ``cache_dir``, VAE latents come from (and go to) a `LatentCache`."""
    latent_names = [n for n, v in model.variables.items() if isinstance(v, OwnsFrozenEncoder)] if cache_dir else []
    batch = cohort.batch()
    latents = {name: _cached_latents(model, name, batch.get(name, []), Path(cache_dir), progress)
               for name in latent_names}
    n = len(cohort)
    parts = []
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        rows = {k: v[start:start + chunk] for k, v in batch.items() if k not in latents}
        if rows:
            z0, present = model.encode_batch(rows)  # variables absent from the cohort come back missing
        else:
            z0 = {k: v.prior(size, generator=None, device=model.device) for k, v in model.variables.items()}
            present = {k: torch.zeros(size, dtype=torch.bool, device=model.device) for k in model.variables}
        for name, cached in latents.items():
            paths = batch.get(name, [None] * n)[start:start + chunk]
            var = model.variables[name]
            z0[name] = torch.stack([cached[p] if p is not None else torch.zeros(var.z_shape) for p in paths]).to(model.device)
            present[name] = torch.tensor([p is not None for p in paths], device=model.device)
        parts.append((z0, present))
        if progress is not None and not latents:
            progress(min(n, start + chunk), n)
    names = list(model.variables)
    return EncodedRecords({k: torch.cat([p[0][k] for p in parts]).to(model.device) for k in names},
                          {k: torch.cat([p[1][k] for p in parts]).to(model.device) for k in names})


def _cached_latents(model: JointModel, name: str, paths: list, root: Path,
                    progress: Callable[[int, int], None] | None) -> dict[str, torch.Tensor]:
    from metavoxel.vae import LatentCache

    var = model.variables[name]
    files = sorted({p for p in paths if p is not None})

    def encoder(chunk: list[str]) -> torch.Tensor:
        return var.encode(torch.stack([var.parse(p) for p in chunk]).to(model.device)).cpu()

    return LatentCache(root).encode(files, encoder, cache_key(var), progress=progress)
