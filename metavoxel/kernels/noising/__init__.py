"""Fused noising: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps for every variable of a batch in one launch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metavoxel.kernels.dispatch import choose, device_problem
from metavoxel.kernels.noising.reference import q_sample_reference
from metavoxel.kernels.rng import resolve_offset, resolve_seed, torch_generator, torch_normal
from metavoxel.kernels.rows import RowForm, Rows, coefficient, column, per_column, row_form, tensors_of

__all__ = ["q_sample", "q_sample_reference"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def q_sample(
    x0: Rows,
    abar: torch.Tensor,
    *,
    eps: Rows | None = None,
    seed: int | None = None,
    offset: int = 0,
    splits: Sequence[int] | None = None,
    backend: str | None = None,
) -> tuple[Rows, Rows]:
    """Noise every variable to its sample's timestep: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps.

    Implements eq. 4 of Ho et al. 2020 for a batch of variables in one launch (row packing, see
    `metavoxel.kernels.rows`). The kernel knows no schedule: the caller looks ``abar`` up per sample.

    Args:
        x0: one tensor (B, ...) or a list of tensors (B, ...), one per variable.
        abar: (B,) cumulative alpha per sample, shared by all variables, or (B, V) with one column per
            variable (per-variable schedules; V = len(x0), or len(splits) for a packed tensor).
        eps: noise in the form of ``x0``; None draws it (Philox in-kernel, or torch.randn on the torch path).
        seed: Philox key for drawn noise; None draws a fresh key from torch's default generator.
        offset: Philox counter base (see `metavoxel.kernels.rng`).
        splits: column counts of the variables in a pre-packed (B, F) tensor ``x0``; only needed with a
            (B, V) ``abar``.
        backend: ``auto`` | ``triton`` | ``torch`` (default from ``METAVOXEL_KERNELS``).

    Returns:
        ``(x_t, eps)`` in the form of ``x0`` (a list of tensors for a list input); ``eps`` is the noise used,
        which the noise-prediction loss needs.
    """
    form = row_form(x0, splits, "x0")
    coef = coefficient(abar, form, "abar")  # (B, 1 | V)
    offset = resolve_offset(offset)
    tensors = tensors_of(x0) + tensors_of(eps) + [abar]

    def problem(explicit: bool) -> str | None:
        dtypes = {t.dtype for t in tensors_of(x0)}
        if not dtypes <= set(_DTYPES):
            return f"x0 dtypes {sorted(map(str, dtypes))} are not float32/float16/bfloat16"
        if form.batch > 65535:
            return f"batch size {form.batch} exceeds the kernel grid's 65535 rows; split the batch"
        return device_problem(tensors, explicit)

    if choose("q_sample", backend, problem) == "torch":
        return _q_sample_torch(x0, coef, form, eps, seed, offset)

    rows = form.rows(x0, "x0")  # (B, F)
    eps_rows = None if eps is None else form.rows(eps, "eps", rows.dtype)  # (B, F)
    x_t, eps_out = QSampleFunction.apply(rows, eps_rows, coef, form.layout.sizes, resolve_seed(seed), offset)
    return form.restore(x_t), (eps if eps is not None else form.restore(eps_out))


def _q_sample_torch(
    x0: Rows, coef: torch.Tensor, form: RowForm, eps: Rows | None, seed: int | None, offset: int
) -> tuple[Rows, Rows]:
    xs = form.split(x0, "x0")
    if eps is None:
        gen = torch_generator(xs[0].device, seed, offset)
        noise = [torch_normal(x, gen) for x in xs]
    else:
        noise = form.split(eps, "eps")
    outs = [q_sample_reference(x, column(coef, i), e) for i, (x, e) in enumerate(zip(xs, noise))]
    return form.restore_parts(outs), (eps if eps is not None else form.restore_parts(noise))


class QSampleFunction(torch.autograd.Function):
    """Autograd around the Triton launch: x_t is linear in x0 and eps, so the backward is two scalings."""

    @staticmethod
    def forward(ctx, x0, eps, coef, sizes, seed, offset):  # type: ignore[override]
        from metavoxel.kernels.noising.kernel import q_sample_rows

        x_t, eps_out = q_sample_rows(x0, coef, sizes, eps, seed, offset)
        ctx.save_for_backward(coef)
        ctx.sizes = sizes
        if eps is not None:
            return x_t, None
        ctx.mark_non_differentiable(eps_out)
        return x_t, eps_out

    @staticmethod
    def backward(ctx, grad_xt, _grad_eps):  # type: ignore[override]
        (coef,) = ctx.saved_tensors
        abar = per_column(coef, ctx.sizes)  # (B, 1 | F)
        grad = grad_xt.float()
        grad_x0 = (abar.sqrt() * grad).to(grad_xt.dtype) if ctx.needs_input_grad[0] else None
        grad_eps = ((1 - abar).sqrt() * grad).to(grad_xt.dtype) if ctx.needs_input_grad[1] else None
        return grad_x0, grad_eps, None, None, None, None

