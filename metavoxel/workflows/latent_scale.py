"""The latent scale factor of a VAE folder that records none — an imported VAE — computed on the user's cohort.

`metavoxel train-vae` records ``scale_factor = 1 / std`` of its training latents (`metavoxel.vae.evaluation.
latent_scale_factor`, after Rombach et al. 2022) in ``vae.json``. An autoencoder imported with
`metavoxel import-vae` was trained elsewhere, on other images, so its factor must come from the cohort it will
encode: `fill_scale_factors`, which `encode` and `train` call first, computes it the same way on the cohort's
training split (the spec's split, so validation and test images never set it) and records it, with what it was
computed on, in the folder's ``vae.json`` (`metavoxel.vae.record_scale_factor`). From then on the folder behaves
like one from `train-vae`: every spec pointing at it reads the factor, and a spec giving another is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from metavoxel.data import DataSpec, read_cohort, split_subjects
from metavoxel.errors import InputError
from metavoxel.spec import ModelSpec
from metavoxel.vae.checkpoint import VAERecord, read_vae_record, record_scale_factor

__all__ = ["fill_scale_factors", "unscaled_latents"]


def unscaled_latents(spec: ModelSpec) -> list[tuple[str, VAERecord]]:
    """The variables whose ``weights`` point at a VAE folder recording no scale factor, and that give none."""
    pending = []
    for declared in spec.variables:  # the specs (a kind's fields), not the built variables
        weights = getattr(declared, "weights", None)
        if weights is None or getattr(declared, "scale_factor", 0.0) is not None:
            continue
        record = read_vae_record(weights)
        if record is not None and record.scale_factor is None:
            pending.append((declared.name, record))
    return pending


class _Scans:
    """The training images of one variable, read (and preprocessed) one at a time: (C, *shape) tensors."""

    def __init__(self, variable, paths: list[str]):
        self.variable, self.paths = variable, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.variable.parse(self.paths[i])


def fill_scale_factors(spec: ModelSpec, data: str | Path, *, report: Callable[[str], None] | None = None,
                       compute: bool = True, batch_size: int = 2) -> ModelSpec:
    """``spec`` with the scale factor of every `unscaled_latents` variable filled, computed on the training split
    of ``data`` and recorded in its VAE folder; ``spec`` itself when there are none.

    Args:
        spec: the model spec (not modified).
        data: the cohort (table or BIDS root) that `encode`/`train` are given.
        report: receives one line per factor computed.
        compute: False on the other ranks of a torchrun job: only read the factors rank 0 recorded.
        batch_size: images encoded at a time.

    Raises:
        InputError: no training images for a variable, or latents with no spread (`latent_scale_factor`).
        CheckpointError: ``compute`` is False and the factor is still not recorded.
    """
    pending = unscaled_latents(spec)
    if not pending:
        return spec
    if compute:
        _compute(spec, data, pending, report or (lambda line: None), batch_size)
    filled = spec.model_copy(deep=True)
    for name, record in pending:
        factor = (read_vae_record(record.folder) or record).scale_factor
        if factor is None:
            from metavoxel.errors import CheckpointError

            raise CheckpointError(f"{name}: {str(record.meta_file)!r} still records no latent scale factor; run "
                                  "`metavoxel encode` first")
        next(v for v in filled.variables if v.name == name).scale_factor = factor
    return filled


def _compute(spec: ModelSpec, data: str | Path, pending: list[tuple[str, VAERecord]], report: Callable[[str], None],
             batch_size: int) -> None:
    from metavoxel.diffusion.joint import JointModel
    from metavoxel.vae.evaluation import latent_scale_factor
    from metavoxel.vae.volumes import VolumeSet

    draft = spec.model_copy(deep=True)  # unit factor: the encoder's own posterior means
    for declared in draft.variables:
        if any(declared.name == name for name, _ in pending):
            declared.scale_factor = 1.0
    model = JointModel(draft)
    data_spec = spec.data or DataSpec()
    cohort = read_cohort(data, model.variables, data_spec)
    train = split_subjects(cohort, data_spec.split)["train"]
    for name, record in pending:
        paths = [p for p in cohort.batch(train).get(name, []) if p is not None]
        if not paths:
            raise InputError(f"{name}: the VAE in {str(record.folder)!r} records no latent scale factor and the "
                             f"cohort's training split has no {name} images to compute it on; add images or set the "
                             "variable's scale_factor")
        variable = model.variables[name]
        volumes = VolumeSet(_Scans(variable, paths), f"{name} training images")
        factor, std = latent_scale_factor(variable.vae, volumes, batch_size=batch_size, device=model.device)
        record_scale_factor(record.folder, factor, std, {
            "data": str(Path(data).resolve()), "split": "train", "images": len(paths),
            "computed": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        report(f"{name}: the VAE in {record.folder} recorded no latent scale factor; computed {factor:.4f} (1/std of "
               f"the posterior means of {len(paths)} training images) and recorded it in {record.meta_file}")
