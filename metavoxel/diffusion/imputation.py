"""Answers from part of an image by imputation: complete the image, then sample the rest given it held whole.

With an image known only inside a keep-mask (the kept part K) and a free variable y (age), the answer wanted is
p(y | K) = ∫ p(y | x) p(x | K) dx over the completions x of the image. One joint chain draws (x, y) together, with
y denoised beside an image that is itself still noise for most of the chain. Imputation draws it in two stages,
each sample through its own completion (multiple imputation, Rubin 1987; the two-stage ancestral sampling of the
integral above):

1. x ~ p(x | K, the other fixed values): the joint chain as usual, keeping only the image;
2. y ~ p(y | x, the other fixed values): a second chain with the completed image held whole (clean conditioning,
   as for a whole scan given).

The spread of the answer then holds both terms of the law of total variance, Var(y | K) = E[Var(y | x)] +
Var(E[y | x]): what the image gives and what the unseen part could be. It costs a second chain (2 × steps network
calls per sample) and one encoding of each completion. The completion is held as a scan is: the decoded image,
its kept voxels pasted back (what the sample returns for the image), encoded by its kind (for a latent image,
the VAE's encoder). Holding the first chain's latent instead keeps only the latent voxels the mask keeps whole
and the generated ones as the chain left them; on the demo's model that read age from a hemisphere almost as
badly as one chain (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from metavoxel.diffusion.known import Known
from metavoxel.variables.protocol import SpatialHead, Variable

__all__ = ["completed", "to_impute"]


def to_impute(variables: Mapping[str, Variable], known: Mapping[str, Known]) -> dict[str, torch.Tensor]:
    """image name -> (B,) bool: the rows in which the image is known inside a mask only (some voxels, not all);
    empty when no row is, or when no variable is left free beside the images (nothing to sample given them)."""
    free = [n for n, v in variables.items() if not isinstance(v.head, SpatialHead)
            and (n not in known or not known[n].complete)]
    out = {}
    for name, k in known.items():
        if free and isinstance(variables[name].head, SpatialHead):
            flat = k.z_mask.reshape(len(k.z_mask), -1)
            rows = flat.any(dim=1) & ~flat.all(dim=1)
            if bool(rows.any()):
                out[name] = rows
    return out


def completed(variables: Mapping[str, Variable], known: Mapping[str, Known],
              decoded: Mapping[str, torch.Tensor]) -> dict[str, Known] | None:
    """The fixed values of stage 2: each partly known image held whole at its completion, the rest as they were.

    Args:
        variables: the model's variables.
        known: the fixed values of stage 1, for B rows.
        decoded: stage 1's values (name -> (B, ...)): the completions as returned (known voxels pasted back), encoded
            again by the image's kind (`Variable.encode`) as a given scan is.

    Returns:
        name -> `Known` for stage 2, or None when there is nothing to impute: no row with a partly known image, or
        no variable left free beside the images (nothing to sample given the completion).
    """
    partial = to_impute(variables, known)
    if not partial:
        return None
    out = dict(known)
    for name, rows in partial.items():
        k = known[name]
        whole_z = rows.reshape(-1, *([1] * (k.z0.dim() - 1))).expand_as(k.z_mask)
        whole_v = rows.reshape(-1, *([1] * (k.values.dim() - 1))).expand_as(k.value_mask)
        values = torch.where(whole_v, decoded[name].to(k.values.device, k.values.dtype), k.values)
        with torch.no_grad():
            z0 = torch.where(whole_z, variables[name].encode(values).to(k.z0.dtype), k.z0)
        out[name] = Known(values, whole_v | k.value_mask, z0, whole_z | k.z_mask)
    return out
