"""Fused sampler step: the DDIM update and the RePaint overwrite of every Gaussian variable in one launch."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from metavoxel.kernels.dispatch import choose, device_problem
from metavoxel.kernels.rng import resolve_offset, resolve_seed, torch_generator, torch_normal
from metavoxel.kernels.rows import RowForm, Rows, coefficient, column, row_form, tensors_of
from metavoxel.kernels.sampler.reference import ddim_repaint_step_reference

__all__ = ["ddim_repaint_step", "ddim_repaint_step_reference"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def ddim_repaint_step(
    x_t: Rows,
    eps_hat: Rows,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    *,
    eta: float = 0.0,
    known: Rows | None = None,
    mask: Rows | None = None,
    z1: Rows | None = None,
    z2: Rows | None = None,
    seed: int | None = None,
    offset: int = 0,
    return_x0: bool = False,
    splits: Sequence[int] | None = None,
    backend: str | None = None,
) -> tuple[Rows, Rows | None]:
    """One DDIM step t -> s fused with the RePaint overwrite, for every variable of a batch in one launch.

    The math is `ddim_repaint_step_reference` (Song et al. 2021 eq. 12; Lugmayr et al. 2022), applied per
    variable with row packing (see `metavoxel.kernels.rows`). Sampling only: there is no backward.

    Args:
        x_t: one tensor (B, ...) or a list of tensors (B, ...), one per variable.
        eps_hat: the network's noise prediction, in the form of ``x_t`` (any float dtype).
        a_t: (B,) or (B, V) cumulative alpha at the current level t (< 1).
        a_s: (B,) or (B, V) cumulative alpha at the next level s < t (1.0 at the final step).
        eta: DDIM stochasticity; 0 needs no z1.
        known: known values in the form of ``x_t``; list entries may be None for variables without a mask.
        mask: where ``known`` holds, in [0, 1] (float or bool), in the form of ``x_t`` with each entry
            broadcastable to its variable (e.g. (1, 1, D, H, W) for a latent); None or None entries = nothing
            known. Positions with mask 0 never read ``known`` (it may hold NaN there).
        z1, z2: explicit standard normal noise in the form of ``x_t`` (the exact-comparison path); None draws
            it (Philox in-kernel, torch.randn on the torch path).
        seed: Philox key for drawn noise; None draws a fresh key from torch's default generator.
        offset: Philox counter base (see `metavoxel.kernels.rng`).
        return_x0: also return x0_hat (else its slot is None and it is never written).
        splits: column counts of the variables in a pre-packed (B, F) tensor ``x_t``; only needed with
            (B, V) coefficients.
        backend: ``auto`` | ``triton`` | ``torch`` (default from ``METAVOXEL_KERNELS``).

    Returns:
        ``(x_s, x0_hat)`` in the form of ``x_t``; ``x0_hat`` is None unless ``return_x0``.
    """
    form = row_form(x_t, splits, "x_t")
    eta = float(eta)
    at, as_ = coefficient(a_t, form, "a_t"), coefficient(a_s, form, "a_s")  # (B, 1 | V)
    offset = resolve_offset(offset)
    masks = form.split(mask, "mask", optional=True)
    knowns = form.split(known, "known", optional=True)
    for i, (m, k) in enumerate(zip(masks, knowns)):
        if m is not None and k is None:
            raise ValueError(f"mask of variable {i} is set but known is None; pass the known values too")
    has_mask = any(m is not None for m in masks)
    given = [x_t, eps_hat, known, mask, z1, z2]
    tensors = [t for v in given for t in tensors_of(v)] + [a_t, a_s]

    def problem(explicit: bool) -> str | None:
        dtypes = {t.dtype for t in tensors_of(x_t) + tensors_of(eps_hat)}
        if not dtypes <= set(_DTYPES):
            return f"x_t/eps_hat dtypes {sorted(map(str, dtypes))} are not float32/float16/bfloat16"
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return "inputs require grad and the fused sampler step has no backward; run it under torch.no_grad()"
        if form.batch > 65535:
            return f"batch size {form.batch} exceeds the kernel grid's 65535 rows; split the batch"
        return device_problem(tensors, explicit)

    if choose("ddim_repaint_step", backend, problem) == "torch":
        return _step_torch(form, x_t, eps_hat, at, as_, eta, knowns, masks, z1, z2, seed, offset, return_x0)

    from metavoxel.kernels.sampler.kernel import ddim_repaint_rows

    rows = form.rows(x_t, "x_t")  # (B, F)
    mask_rows = known_rows = None
    if has_mask:
        mask_dtype = torch.uint8 if all(m.dtype == torch.bool for m in tensors_of(mask)) else torch.float32
        mask_rows = form.optional_rows(mask, "mask", mask_dtype)  # (B, F), row stride 0 when batch-broadcast
        known_dtype = functools.reduce(torch.promote_types, (k.dtype for k in tensors_of(known)))
        known_rows = form.optional_rows(known, "known", known_dtype)  # (B, F)
    x_s, x0 = ddim_repaint_rows(
        rows, form.rows(eps_hat, "eps_hat"), at, as_, form.layout.sizes,
        eta=eta, known=known_rows, mask=mask_rows,
        z1=None if z1 is None or eta == 0 else form.rows(z1, "z1"),
        z2=None if z2 is None or not has_mask else form.rows(z2, "z2"),
        seed=resolve_seed(seed), offset=offset, return_x0=return_x0,
    )
    return form.restore(x_s), (form.restore(x0) if x0 is not None else None)


def _step_torch(
    form: RowForm,
    x_t: Rows,
    eps_hat: Rows,
    at: torch.Tensor,
    as_: torch.Tensor,
    eta: float,
    knowns: list[torch.Tensor | None],
    masks: list[torch.Tensor | None],
    z1: Rows | None,
    z2: Rows | None,
    seed: int | None,
    offset: int,
    return_x0: bool,
) -> tuple[Rows, Rows | None]:
    xs, epss = form.split(x_t, "x_t"), form.split(eps_hat, "eps_hat")
    gen = torch_generator(xs[0].device, seed, offset)
    z1s = form.split(z1, "z1") if z1 is not None else [torch_normal(x, gen) if eta != 0 else None for x in xs]
    z2s = form.split(z2, "z2") if z2 is not None else [
        torch_normal(x, gen) if m is not None else None for x, m in zip(xs, masks)
    ]
    outs = [
        ddim_repaint_step_reference(
            x, e, column(at, i), column(as_, i), eta=eta, known=k, mask=m, z1=n1, z2=n2
        )
        for i, (x, e, k, m, n1, n2) in enumerate(zip(xs, epss, knowns, masks, z1s, z2s))
    ]
    x_s = form.restore_parts([o[0] for o in outs])
    return x_s, (form.restore_parts([o[1] for o in outs]) if return_x0 else None)
