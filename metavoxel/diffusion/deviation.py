"""Deviation maps: the voxelwise z-score of a scan against the model's brains for the scan's own values.

Normative modelling (Marquand et al. 2016; Rutherford et al. 2022) scores each voxel of a subject against
what is expected of someone of the same age and sex: z = (x - E[x | values]) / SD[x | values]. One joint
model answers p(image | age, sex, ...) directly: S images are sampled with the scan's values held
(`metavoxel.diffusion.sampling.sample`), and at every voxel

    mean = (1/S) sum_s x_s,  sd = sqrt(sum_s (x_s - mean)^2 / (S - 1)),  z = (x - mean) / max(sd, floor).

The floor keeps voxels where every sample agrees (the background of a skull-stripped scan) from dividing by
~0; it is in the model's units (the scan's intensities scaled to [0, 1] by the preprocessing). The map's
noise falls as 1 / sqrt(S): with S = 16 a voxel's sd is itself uncertain by about 18 %.

What x is (``reference``): ``scan``, the scan itself; or ``reconstruction``, the scan through the VAE,
D(E(x)). The samples are decoded images, as smooth as the VAE makes them, so a scan's own fine detail and
noise score as deviations everywhere; the reconstruction removes that but also whatever the VAE cannot
represent (a small lesion). benchmarks/edits.py measures both on a lesion inserted into phantom brains.
Values not given are inferred from the scan first (point prediction), as an edit infers them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from metavoxel.diffusion.edit import observed_values
from metavoxel.diffusion.known import known_values
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.sampling import sample
from metavoxel.errors import InputError
from metavoxel.variables.decoded import checked_decode
from metavoxel.variables.protocol import SpatialHead

__all__ = ["REFERENCES", "DeviationMap", "check_request", "deviation_map"]

#: What is scored against the samples: the scan itself, or the scan through the VAE (module docstring).
REFERENCES = ("scan", "reconstruction")


@dataclass
class DeviationMap:
    """Voxelwise deviation of N scans from the model's brains for their values; (N, C, *shape) on the model grid.

    Attributes:
        z: (x - mean) / max(sd, floor).
        mean, sd: the samples' voxelwise mean and SD (model units).
        scored: x, what was scored (the scan or its reconstruction).
        values: scalar -> the N values the samples were drawn for (given or inferred), formatted.
        inferred: the scalars inferred from the scans.
        num_samples, floor, reference, seed, seconds: how it ran.
    """

    z: torch.Tensor
    mean: torch.Tensor
    sd: torch.Tensor
    scored: torch.Tensor
    values: dict[str, list[Any]]
    inferred: list[str]
    num_samples: int
    floor: float
    reference: str
    seed: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "inferred": list(self.inferred), "num_samples": self.num_samples,
                "sd_floor": self.floor, "reference": self.reference, "seed": self.seed,
                "seconds": round(self.seconds, 3)}


def check_request(num_samples: int, floor: float, reference: str) -> None:
    """Refuse, before any work, fewer than 2 samples, a floor not > 0 or an unknown reference (InputError)."""
    if num_samples < 2:
        raise InputError(f"a deviation map needs at least 2 samples for an SD (16 or more for a stable map), got "
                         f"{num_samples}")
    if reference not in REFERENCES:
        raise InputError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    if not floor > 0:
        raise InputError(f"the SD floor must be > 0 (model units, e.g. 0.02), got {floor!r}")


@torch.no_grad()
def deviation_map(process: Any, network: Callable, fix: Mapping[str, Any], options: SamplingOptions | None = None, *,
                  image: str | None = None, floor: float = 0.02, reference: str = "scan",
                  progress: Callable[[int, int], None] | None = None) -> DeviationMap:
    """The voxelwise z-score of each of N scans against ``options.num_samples`` brains drawn for its values.

    Args:
        process: the `metavoxel.diffusion.process.JointDiffusion`.
        network: ``network(z, levels[, keep])`` in inference mode.
        fix: the image (N, C, *shape) on the model grid, and the scalars it is scored for (``age``, ``sex``); a
            scalar not given is inferred from the scan by point prediction.
        options: how the brains are sampled (`SamplingOptions`; ``num_samples`` >= 2, default 16 when 1).
        image: the image variable scored (default: the model's only one).
        floor: the SD floor, model units (> 0).
        reference: ``scan`` or ``reconstruction`` (`REFERENCES`).
        progress: ``progress(done, total)`` per network call of the sampling.

    Raises:
        InputError: no image given, more than one image and none named, a bad floor or reference, fewer than
            2 samples.
    """
    start = time.perf_counter()
    options = SamplingOptions(num_samples=16) if options is None else options
    check_request(options.num_samples, floor, reference)
    variables = process.variables
    images = [n for n, v in variables.items() if isinstance(v.head, SpatialHead)]
    if image is None:
        if len(images) != 1:
            raise InputError(f"this model has {len(images)} image variables ({', '.join(images)}); name the one to "
                             "score")
        image = images[0]
    if image not in fix:
        raise InputError(f"a deviation map scores a scan: give {image}")
    others = [n for n in images if n != image and n in fix]
    scalars = [n for n in variables if n not in images]
    given, n = known_values(variables, {image: fix[image], **{o: fix[o] for o in others}}, {}, None, process.device)
    seed = process.seed if options.seed is None else options.seed
    values, inferred = observed_values(process, network, fix, scalars, [image, *others], n, seed)
    result = sample(process, network, {**values, **{o: fix[o] for o in others}}, None, options, progress=progress)
    samples = result.samples[image].float()  # (N, S, C, *shape)
    mean, sd = samples.mean(dim=1), samples.std(dim=1, unbiased=True)
    x = given[image].values.float().cpu()
    if reference == "reconstruction":
        var = variables[image]
        x = checked_decode(var, var.encode(given[image].values.float())).float().cpu()
    z = (x - mean) / sd.clamp_min(float(floor))
    shown = {name: variables[name].format(v.cpu()) for name, v in values.items()}
    return DeviationMap(z, mean, sd, x, shown, inferred, options.num_samples, float(floor), reference, seed,
                        time.perf_counter() - start)
