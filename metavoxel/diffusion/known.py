"""What is fixed at sampling time: validated once here, trusted by the sampler and the kernels after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from metavoxel.errors import InputError
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["Known", "known_values", "outside_ignored"]


class Known:
    """A fixed variable: known values and where they hold, in value space and in z space, per row.

    Shapes: ``values``/``value_mask`` (B, ...) in value space; ``z0``/``z_mask`` (B, *z) in diffusion space.
    """

    def __init__(self, values: torch.Tensor, value_mask: torch.Tensor, z0: torch.Tensor, z_mask: torch.Tensor):
        self.values, self.value_mask, self.z0, self.z_mask = values, value_mask, z0, z_mask

    def repeat(self, times: int) -> Known:
        return Known(*(x.repeat_interleave(times, dim=0) for x in (self.values, self.value_mask, self.z0, self.z_mask)))

    def rows(self, rows: slice) -> Known:
        return Known(self.values[rows], self.value_mask[rows], self.z0[rows], self.z_mask[rows])

    @property
    def complete(self) -> bool:
        """Whether every entry of every row is known (nothing of this variable is left to sample)."""
        return bool(self.z_mask.all())


def known_values(variables: Mapping[str, Variable], fix: Mapping[str, Any], masks: Mapping[str, Any],
                 num_subjects: int | None, device: torch.device) -> tuple[dict[str, Known], int]:
    """Validate what is fixed and encode it once per subject: ``({name: Known}, N)``.

    Args:
        variables: the model's variables.
        fix: variable -> raw values for N subjects (a missing value leaves that subject's variable free).
        masks: image variable -> keep-mask (N, 1|C, *shape) or (1|C, *shape), 1 = keep the fixed voxel.
        num_subjects: N when nothing is fixed.
        device: where the encoded values go.

    Raises:
        InputError: unknown variables, a mask without its image fixed, a mask that does not fit, unequal
            numbers of subjects, or every variable fixed (nothing to sample).
    """
    names = list(variables)
    for what, given in (("--fix", fix), ("--mask", masks)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InputError(f"{what}: unknown variable(s) {', '.join(unknown)}; this model has {', '.join(names)}")
    for name in masks:
        if name not in fix:
            raise InputError(f"a mask is given for {name!r} but {name!r} is not fixed; fix it too (the mask says "
                             "which of its voxels to keep)")
        if not isinstance(variables[name].head, SpatialHead):
            raise InputError(f"{name!r} is not an image: masks apply to image variables only")
    known, sizes = {}, {}
    for name, raw in fix.items():
        var = variables[name]
        mask = torch.as_tensor(masks[name], device=device).bool() if name in masks else None
        if mask is not None and not bool(mask.any()):
            raise InputError(f"the mask for {name!r} keeps no voxel; mark the voxels to keep non-zero, or leave "
                             f"{name!r} unfixed to generate it freely")
        values, present = var.values(outside_ignored(raw, mask), device)
        sizes[name] = len(present)
        value_mask = present.reshape(-1, *([1] * (values.dim() - 1))).expand_as(values)
        if mask is not None:
            mask = mask[None] if mask.dim() == values.dim() - 1 else mask
            try:
                value_mask = value_mask & mask.expand_as(values)
            except RuntimeError:
                raise InputError(f"mask for {name!r} has shape {tuple(mask.shape)}, which does not fit the image "
                                 f"{tuple(values.shape)}; give (N, 1, *shape) or (1, *shape)") from None
        z0 = var.encode(values)
        z_mask = var.diffusion_mask(value_mask)
        z_mask = (z_mask.reshape(*z_mask.shape, *([1] * (z0.dim() - z_mask.dim())))).expand_as(z0)
        known[name] = Known(values, value_mask, z0, z_mask)
    if len(set(sizes.values())) > 1:
        raise InputError(f"every fixed variable needs one value per subject; got {sizes}")
    n = next(iter(sizes.values())) if sizes else (1 if num_subjects is None else int(num_subjects))
    if sizes and num_subjects is not None and num_subjects != n:
        raise InputError(f"num_subjects={num_subjects} but the fixed values are for {n} subjects")
    if n < 1:
        raise InputError("nothing to sample for zero subjects")
    if len(known) == len(names) and all(k.complete for k in known.values()):
        whole = [f"the mask for {n!r} keeps every voxel" for n in masks]
        raise InputError(f"every variable is fixed ({', '.join(names)}{'; ' + ', '.join(whole) if whole else ''}), "
                         "so there is nothing to sample; leave at least one variable free")
    return known, n


def outside_ignored(raw: Any, mask: torch.Tensor | None) -> Any:
    """A fixed image given as one array: NaN outside its keep-mask set to 0, as those voxels are not used.

    A record with NaN counts as missing (its image is sampled afresh); NaN where the mask drops the voxel
    (e.g. a scan's background) must not make it so. Any other form of ``raw`` is returned as it is.
    """
    if mask is None or not isinstance(raw, (torch.Tensor, np.ndarray)):
        return raw
    values = torch.as_tensor(raw)
    if not values.is_floating_point():
        return raw
    keep = mask.to(values.device)
    keep = keep[None] if keep.dim() == values.dim() - 1 else keep
    try:
        outside = ~keep.expand_as(values) & values.isnan()
    except RuntimeError:
        return raw  # a mask that does not fit: refused below with its own message
    return torch.where(outside, torch.zeros_like(values), values)
