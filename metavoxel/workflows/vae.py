"""`train_vae_run` and `encode_run`: the image_latent variable's VAE, trained on a cohort, and its latent cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from metavoxel.data import Cohort, DataSpec, read_cohort, split_subjects
from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import InputError
from metavoxel.spec import ModelSpec
from metavoxel.variables.capabilities import OwnsFrozenEncoder

__all__ = ["encode_run", "latent_variable", "train_vae_run"]


def latent_variable(model: JointModel, name: str | None = None) -> str:
    """The name of the model's image_latent variable (the only one, or the one named)."""
    names = [n for n, v in model.variables.items() if isinstance(v, OwnsFrozenEncoder)]
    if name is not None:
        if name not in names:
            raise InputError(f"{name!r} is not an image_latent variable of this spec; latent variables: "
                             f"{', '.join(names) or 'none'}")
        return name
    if len(names) != 1:
        raise InputError(f"this spec has {len(names)} image_latent variables ({', '.join(names) or 'none'}); "
                         "name one with --variable")
    return names[0]


def _images(model: JointModel, name: str, cohort: Cohort, indices: list[int]) -> torch.Tensor:
    paths = [p for p in cohort.batch(indices).get(name, []) if p is not None]
    if not paths:
        raise InputError(f"no {name} images in this split; the cohort needs image files to train a VAE")
    var = model.variables[name]
    return torch.stack([var.parse(p) for p in paths])  # (N, C, *shape) on the model grid, preprocessed


def train_vae_run(spec: ModelSpec | str | Path, data: str | Path, out: str | Path, config, *,
                  variable: str | None = None, progress: Callable | None = None):
    """Train the spec's VAE on the cohort's training split; save vae.safetensors + vae.json in ``out``.

    Returns the `metavoxel.vae.VAEReport` (validation PSNR/SSIM and the latent scale factor).
    """
    from metavoxel.vae import save_vae, train_vae

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    model = JointModel(spec, load_weights=False)
    name = latent_variable(model, variable)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    splits = split_subjects(cohort, (spec.data or DataSpec()).split)
    train_images = _images(model, name, cohort, splits["train"])
    val_images = _images(model, name, cohort, splits["val"]) if splits.get("val") else None
    vae = model.variables[name].vae.requires_grad_(True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = train_vae(vae, train_images, val_images, config, progress=progress, device=device)
    save_vae(out, vae, spec.variable(name).vae, report)
    return report


def encode_run(spec: ModelSpec | str | Path, data: str | Path, cache_dir: str | Path, *,
               progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Fill the latent cache for every image of the cohort; returns {"images": n, "cached_before": k}."""
    from metavoxel.vae import LatentCache
    from metavoxel.workflows.encode import cache_key

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    model = JointModel(spec)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    cache = LatentCache(cache_dir)
    counts = {"images": 0, "cached_before": 0}
    for name in [n for n, v in model.variables.items() if isinstance(v, OwnsFrozenEncoder)]:
        var = model.variables[name]
        key = cache_key(var)
        paths = sorted({p for p in cohort.batch().get(name, []) if p is not None})
        counts["images"] += len(paths)
        counts["cached_before"] += sum(cache.get(p, key) is not None for p in paths)

        def encoder(chunk: list[str], var=var) -> torch.Tensor:
            with torch.no_grad():
                return var.encode(torch.stack([var.parse(p) for p in chunk]).to(model.device)).cpu()

        cache.encode(paths, encoder, key, progress=progress)
    return counts
