"""Fused categorical k-step: posterior, Gumbel-max sample and RePaint re-noising of every categorical variable."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metavoxel.kernels.categorical.reference import categorical_step_reference, gumbel_like
from metavoxel.kernels.dispatch import choose, device_problem
from metavoxel.kernels.rng import resolve_offset, resolve_seed, torch_generator
from metavoxel.kernels.rows import Rows, coefficient, column, row_form, tensors_of

__all__ = ["categorical_step", "categorical_step_reference"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_CLASSES = 4096


def categorical_step(
    logits: Rows,
    x_t: Rows,
    a_t: torch.Tensor,
    a_s: torch.Tensor,
    *,
    known: Rows | None = None,
    mask: Rows | None = None,
    gumbel: Rows | None = None,
    gumbel_known: Rows | None = None,
    seed: int | None = None,
    offset: int = 0,
    return_log_probs: bool = False,
    backend: str | None = None,
) -> tuple[Rows, Rows | None]:
    """One k-step t -> s of every categorical variable in one launch (see `categorical_step_reference`).

    Args:
        logits: predicted x0 logits, (B, K) for one variable or a list of (B, K_i).
        x_t: current classes, (B,) integer or a list of (B,) like ``logits``.
        a_t: (B,) or (B, V) cumulative alpha at the current level t.
        a_s: (B,) or (B, V) cumulative alpha at the next level s (1.0 at the final step).
        known: known classes in the form of ``x_t`` (list entries may be None where nothing is known).
        mask: (B,) bool where ``known`` holds, in the form of ``x_t`` (None entries = nothing known).
        gumbel, gumbel_known: explicit standard Gumbel noise in the form of ``logits`` (the exact path);
            None draws it (Philox in-kernel, torch.rand on the torch path).
        seed: Philox key for drawn noise; None draws a fresh key from torch's default generator.
        offset: Philox counter base (see `metavoxel.kernels.rng`).
        return_log_probs: also return the step's normalised log-probabilities (float32).
        backend: ``auto`` | ``triton`` | ``torch`` (default from ``METAVOXEL_KERNELS``).

    Returns:
        ``(x_s, log_p)``: int64 classes in the form of ``x_t``, and log-probabilities in the form of
        ``logits`` (None unless ``return_log_probs``).
    """
    form = row_form(logits, None, "logits")
    if any(len(s) != 1 for s in form.layout.shapes):
        raise ValueError("logits must be (B, K) per variable; flatten other dimensions into the batch")
    xs = _indices(x_t, form, "x_t")
    knowns = _indices(known, form, "known", optional=True)
    masks = _indices(mask, form, "mask", optional=True)
    for i, (m, k) in enumerate(zip(masks, knowns)):
        if m is not None and k is None:
            raise ValueError(f"mask of variable {i} is set but known is None; pass the known classes too")
    at, as_ = coefficient(a_t, form, "a_t"), coefficient(a_s, form, "a_s")  # (B, 1 | V)
    offset = resolve_offset(offset)
    tensors = tensors_of(logits) + xs + [t for t in knowns + masks if t is not None] + [a_t, a_s]

    def problem(explicit: bool) -> str | None:
        if not {t.dtype for t in tensors_of(logits)} <= set(_DTYPES):
            return "logits are not float32/float16/bfloat16"
        if max(form.layout.sizes) > MAX_CLASSES:
            return f"more than {MAX_CLASSES} classes"
        return device_problem(tensors, explicit)

    if choose("categorical_step", backend, problem) == "torch":
        gen = torch_generator(xs[0].device, seed, offset)
        parts = form.split(logits, "logits")
        g1 = form.split(gumbel, "gumbel") if gumbel is not None else [gumbel_like(p, gen) for p in parts]
        g2 = (form.split(gumbel_known, "gumbel_known") if gumbel_known is not None
              else [gumbel_like(p, gen) if m is not None else None for p, m in zip(parts, masks)])
        outs = [categorical_step_reference(p, x, column(at, i), column(as_, i), g, known=k, mask=m, gumbel_known=h)
                for i, (p, x, g, k, m, h) in enumerate(zip(parts, xs, g1, knowns, masks, g2))]
        x_s, log_p = [o[0] for o in outs], [o[1] for o in outs]
        if not form.is_list:
            x_s, log_p = x_s[0], log_p[0]
        return x_s, (log_p if return_log_probs else None)

    from metavoxel.kernels.categorical.kernel import categorical_step_rows

    has_mask = any(m is not None for m in masks)
    zeros = torch.zeros(form.batch, dtype=torch.int64, device=xs[0].device)
    x_rows, log_p = categorical_step_rows(
        form.rows(logits, "logits"), torch.stack(xs, dim=1), at, as_, form.layout.sizes,  # (B, F), (B, V)
        known=torch.stack([zeros if k is None else k for k in knowns], 1) if has_mask else None,
        mask=torch.stack([zeros if m is None else m.to(torch.int64) for m in masks], 1) if has_mask else None,
        gumbel=None if gumbel is None else form.rows(gumbel, "gumbel", torch.float32),
        gumbel_known=None if gumbel_known is None or not has_mask else form.rows(gumbel_known, "gumbel_known",
                                                                                 torch.float32),
        seed=resolve_seed(seed), offset=offset, return_log_probs=return_log_probs,
    )
    x_s = list(x_rows.unbind(1)) if form.is_list else x_rows[:, 0]
    if log_p is None:
        return x_s, None
    return x_s, (form.layout.unpack(log_p) if form.is_list else log_p)


def _indices(value: Rows | None, form, name: str, optional: bool = False) -> list[torch.Tensor | None]:
    """Per-variable (B,) tensors of an index-like argument given in the form of ``logits``."""
    if value is None:
        if optional:
            return [None] * form.n_vars
        raise ValueError(f"{name} is required")
    values: Sequence = value if form.is_list else [value]
    if isinstance(value, torch.Tensor) == form.is_list or len(values) != form.n_vars:
        raise ValueError(f"{name} must be in the form of logits: {'a list of ' if form.is_list else ''}"
                         f"{form.n_vars} tensor(s) of shape ({form.batch},)")
    out = []
    for i, v in enumerate(values):
        if v is None and not optional:
            raise ValueError(f"{name}[{i}] is None; every variable needs a value")
        if v is not None and tuple(v.shape) != (form.batch,):
            raise ValueError(f"{name}[{i}] must have shape ({form.batch},), got {tuple(v.shape)}")
        out.append(v)
    return out
