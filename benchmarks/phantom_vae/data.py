"""The phantom brains the shipped VAE trains and is judged on: both phantoms, rendered on the fly.

The shipped phantom VAE serves the demo's phantom (``age_effect=3, sex_effect=2``) and the default one (the
benchmarks'), at the 32³ grid of 5.5 mm. It trains on subjects of seeds that no cohort of the demo or the
benchmarks uses (those use phantom seed 0), and is judged on subjects of two further seeds, so its training,
its held-out brains and every cohort it is used on are disjoint by construction (subject ``k`` of seed ``s``
draws from ``SeedSequence([s, k])`` alone; `metavoxel.phantom.model`).

Intensities go through the same scaling as the ``image_latent`` kind's preprocessing of the written NIfTI
(percentiles 0.5 and 99.5 to 0 and 1, clipped; the phantom's grid is already the model grid, so orientation
and resampling are identities): `check_matches_preprocessing` proves it on written files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from metavoxel.phantom import PhantomConfig
from metavoxel.phantom.cohort import phantom_subject

__all__ = ["HELD_OUT_SEEDS", "PHANTOMS", "PhantomVolumes", "TRAIN_SEEDS", "check_matches_preprocessing",
           "held_out", "phantom_configs"]

#: name -> the phantom's effect settings (every other `PhantomConfig` field at its default).
PHANTOMS = {"default": {}, "demo": {"age_effect": 3.0, "sex_effect": 2.0}}
#: phantom seeds of the VAE's training subjects, and of its held-out judges, per phantom
TRAIN_SEEDS = {"default": 1000, "demo": 1001}
HELD_OUT_SEEDS = {"default": 2000, "demo": 2001}
SIZE, VOXEL_MM, PERCENTILES = 32, 5.5, (0.5, 99.5)


def phantom_configs(seeds: dict[str, int], subjects: int = 100_000) -> dict[str, PhantomConfig]:
    """name -> the phantom's config at the grid, for each phantom named in ``seeds`` (with its seed)."""
    return {name: PhantomConfig(subjects=subjects, size=SIZE, fov_mm=SIZE * VOXEL_MM, seed=seed, **PHANTOMS[name])
            for name, seed in seeds.items()}


def scaled(image: np.ndarray) -> torch.Tensor:
    """(X, Y, Z) phantom image -> (1, X, Y, Z) float32 in [0, 1]: percentiles 0.5/99.5 to 0/1, clipped."""
    from monai.transforms import ScaleIntensityRangePercentiles

    scale = ScaleIntensityRangePercentiles(lower=PERCENTILES[0], upper=PERCENTILES[1], b_min=0.0, b_max=1.0,
                                           clip=True, channel_wise=True)
    out = scale(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None])
    return (out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)).to(torch.float32)


class PhantomVolumes:
    """An indexable set of phantom brains: item ``i`` is subject ``i // 2`` of phantom ``i % 2`` (both phantoms
    alternate), rendered when asked (about 10 ms on one core); ``len`` subjects in all."""

    def __init__(self, configs: dict[str, PhantomConfig], length: int):
        self.configs, self.names, self.length = configs, sorted(configs), length

    def __len__(self) -> int:
        return self.length

    def subject(self, i: int):
        name = self.names[i % len(self.names)]
        return name, phantom_subject(self.configs[name], i // len(self.names))

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.length:
            raise IndexError(i)
        return scaled(self.subject(int(i))[1].image)


def held_out(per_phantom: int) -> tuple[PhantomVolumes, dict[str, list]]:
    """The judges: ``per_phantom`` held-out brains of each phantom (alternating), and their age and sex lists."""
    volumes = PhantomVolumes(phantom_configs(HELD_OUT_SEEDS, per_phantom), 2 * per_phantom)
    subjects = [volumes.subject(i) for i in range(len(volumes))]
    meta = {"phantom": [s[0] for s in subjects], "age": [s[1].age for s in subjects], "sex": [s[1].sex for s in subjects]}
    return volumes, meta


def check_matches_preprocessing(volumes: PhantomVolumes, count: int = 4) -> float:
    """The largest difference between `PhantomVolumes` and the ``image_latent`` kind's reading of the same
    subjects written as NIfTI (the phantom writer's float32 files); raises if above 1e-5."""
    import nibabel as nib

    from metavoxel.io.preprocess import Preprocessor, PreprocessSpec
    from metavoxel.phantom.config import grid_affine

    spec = PreprocessSpec(orientation="RAS", spacing=[VOXEL_MM] * 3, percentiles=list(PERCENTILES))
    reader = Preprocessor(spec, [SIZE] * 3)
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            name, subject = volumes.subject(i)
            path = Path(folder) / f"{i}.nii.gz"
            nib.save(nib.Nifti1Image(subject.image.astype(np.float32), grid_affine(volumes.configs[name])), path)
            worst = max(worst, float((reader(path).tensor - volumes[i]).abs().max()))
    if worst > 1e-5:
        raise RuntimeError(f"phantom volumes differ from the image_latent preprocessing by {worst:g}")
    return worst
