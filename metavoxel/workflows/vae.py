"""`train_vae_run` and `encode_run`: the image_latent variable's VAE, trained on a cohort, and its latent cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from metavoxel.data import Cohort, DataSpec, read_cohort, split_subjects
from metavoxel.data.identity import cohort_files
from metavoxel.diffusion.joint import JointModel
from metavoxel.errors import InputError
from metavoxel.io.outputs import check_outputs
from metavoxel.spec import ModelSpec
from metavoxel.variables.capabilities import OwnsFrozenEncoder

__all__ = ["encode_run", "judge_vae_run", "latent_variable", "probe_signal", "train_vae_run"]


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


def _images(model: JointModel, name: str, cohort: Cohort, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
    """The split's images (N, C, *shape) on the model grid, preprocessed, and the records they come from."""
    rows = [i for i, p in zip(indices, cohort.batch(indices).get(name, [])) if p is not None]
    if not rows:
        raise InputError(f"no {name} images in this split; the cohort needs image files to train a VAE")
    var = model.variables[name]
    return torch.stack([var.parse(p) for p in cohort.batch(rows)[name]]), rows


def probe_signal(model: JointModel, cohort: Cohort, vae: torch.nn.Module, train: tuple[torch.Tensor, list[int]],
                 held_out: tuple[torch.Tensor, list[int]], *, device: str | torch.device = "cpu",
                 batch_size: int = 8, refit: bool = True) -> dict[str, dict]:
    """How much of each scalar's signal the VAE's reconstructions keep (`metavoxel.vae.probe`).

    The probe is fitted on the raw ``train`` images and scored on the raw ``held_out`` images and on their
    reconstructions, and (``refit``) refitted on the ``train`` images' reconstructions (scored on the
    held-out reconstructions: does the signal survive, or only its intensities move?). The scalars are
    the model's variables with a declared range (regressed, MAE) or categories (classified, accuracy).

    Returns:
        variable -> `metavoxel.vae.probe.ProbeResult.to_dict`.
    """
    from metavoxel.variables.capabilities import HasCategories, HasValueRange
    from metavoxel.vae.evaluation import reconstruct
    from metavoxel.vae.probe import signal_probe
    from metavoxel.vae.volumes import VolumeSet

    scalars = [n for n, v in model.variables.items()
               if n in cohort.variables and isinstance(v, (HasCategories, HasValueRange))]
    if not scalars:
        return {}
    (train_images, train_rows), (test_images, test_rows) = train, held_out
    recon = reconstruct(vae, VolumeSet(test_images, "held-out images"), batch_size=batch_size, device=device)
    train_recon = (reconstruct(vae, VolumeSet(train_images, "training images"), batch_size=batch_size, device=device)
                   if refit else None)
    train_values, test_values = cohort.batch(train_rows), cohort.batch(test_rows)
    results = signal_probe(train_images, {n: train_values[n] for n in scalars}, test_images, recon,
                           {n: test_values[n] for n in scalars},
                           categorical=[n for n in scalars if isinstance(model.variables[n], HasCategories)],
                           train_recon=train_recon)
    return {n: r.to_dict() for n, r in results.items()}


def train_vae_run(spec: ModelSpec | str | Path, data: str | Path, out: str | Path, config, *,
                  variable: str | None = None, progress: Callable | None = None, refit_probe: bool = True,
                  resume: bool = False):
    """Train the spec's VAE on the cohort's training split; save vae.safetensors + vae.json in ``out``.

    The resumable training state goes to ``out/state`` every ``config.checkpoint_every`` steps; ``resume``
    continues it (same spec, cohort split and settings; ``steps`` may grow under a constant learning rate).
    Refused before training (InputError) when either file to write is one this call reads (the spec, the
    cohort's table or images, the perceptual-loss weights).

    Returns the `metavoxel.vae.VAEReport`: validation PSNR/SSIM, the latent scale factor and, when there
    are validation images, the signal probe (`probe_signal`: fitted on the raw training images, scored on
    the raw and reconstructed validation images; and, unless ``refit_probe`` is False, which saves
    reconstructing every training image, refitted on the reconstructions).
    """
    from metavoxel.io.lock import writer_lock
    from metavoxel.vae import save_vae, train_vae
    from metavoxel.vae.checkpoint import META_FILE, WEIGHTS_FILE

    out = Path(out)
    state = out / "state" / "state.json"
    if resume and not state.is_file():
        raise InputError(f"{out} holds no VAE training to resume (no state/state.json); train without --resume")
    if not resume and state.is_file():
        raise InputError(f"{out} already holds a VAE training; pass --resume to continue it or choose another --out")
    spec_file = None if isinstance(spec, ModelSpec) else spec
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    model = JointModel(spec, load_weights=False)
    name = latent_variable(model, variable)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    check_outputs([("--spec", spec_file), *cohort_files(cohort), ("--perceptual-weights", config.perceptual_weights)],
                  files=[(f"--out ({f})", out / f) for f in (WEIGHTS_FILE, META_FILE)])  # before training
    splits = split_subjects(cohort, (spec.data or DataSpec()).split)
    train = _images(model, name, cohort, splits["train"])
    val = _images(model, name, cohort, splits["val"]) if splits.get("val") else None
    vae = model.variables[name].vae.requires_grad_(True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with writer_lock(out, what=f"the VAE folder {str(out)!r}"):  # one training per folder
        report = train_vae(vae, train[0], val[0] if val else None, config, progress=progress, device=device,
                           state_dir=out / "state", resume=resume)
        if val is not None:
            report.probe = probe_signal(model, cohort, vae, train, val, device=device, batch_size=config.batch_size,
                                        refit=refit_probe)
        save_vae(out, vae, spec.variable(name).vae, report)
    return report


def judge_vae_run(spec: ModelSpec | str | Path, data: str | Path, *, variable: str | None = None,
                  probe: bool = True, refit_probe: bool = True, batch_size: int = 8) -> dict:
    """How well the spec's (trained, shipped or imported) VAE keeps a cohort, without training it.

    The VAE of the spec's image_latent variable, with its weights, reconstructs the cohort's validation split
    (the test split when there is no validation split): PSNR/SSIM as `train_vae` reports them, and (``probe``)
    the signal probe of `probe_signal` fitted on the training split, which reads every training image.

    Returns:
        ``{"val": {"l1", "psnr", "ssim"}, "probe": {variable: ProbeResult.to_dict()}, "images": n}`` (``probe``
        empty with ``probe=False``).

    Raises:
        InputError: no image_latent variable, no held-out images, or images that do not fit the VAE.
    """
    from metavoxel.vae.evaluation import reconstruction_metrics
    from metavoxel.vae.volumes import VolumeSet

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec)
    model = JointModel(spec)
    name = latent_variable(model, variable)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    splits = split_subjects(cohort, (spec.data or DataSpec()).split)
    held = splits.get("val") or splits.get("test")
    if not held:
        raise InputError("the cohort's split has no validation or test subjects to judge the VAE on; give "
                         "data.split a val or test fraction")
    vae = model.variables[name].vae
    val = _images(model, name, cohort, held)
    metrics = reconstruction_metrics(vae, VolumeSet(val[0], "held-out images"), batch_size=batch_size,
                                     device=model.device)
    signal = (probe_signal(model, cohort, vae, _images(model, name, cohort, splits["train"]), val,
                           device=model.device, batch_size=batch_size, refit=refit_probe) if probe else {})
    return {"val": metrics, "probe": signal, "images": len(val[1])}


def encode_run(spec: ModelSpec | str | Path, data: str | Path, cache_dir: str | Path, *,
               progress: Callable[[int, int], None] | None = None,
               report: Callable[[str], None] | None = None) -> dict[str, int]:
    """Fill the latent cache for every image of the cohort; returns {"images": n, "cached_before": k}."""
    from metavoxel.vae import LatentCache
    from metavoxel.workflows.encode import cache_key
    from metavoxel.workflows.latent_scale import fill_scale_factors

    spec_file = None if isinstance(spec, ModelSpec) else spec
    spec = fill_scale_factors(spec if isinstance(spec, ModelSpec) else ModelSpec.from_file(spec), data, report=report)
    model = JointModel(spec)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    check_outputs([("--spec", spec_file), *cohort_files(cohort)],
                  files=[("--cache (index.json)", Path(cache_dir) / "index.json")])  # the cache's own file
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
