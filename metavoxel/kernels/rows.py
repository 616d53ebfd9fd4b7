"""Row packing: every variable of a batch in one kernel launch.

The elementwise diffusion kernels (`q_sample`, `ddim_repaint_step`) see a batch of V variables, each a
tensor ``(B, ...)``, as one ``(B, F)`` buffer of rows: variable ``i`` is flattened to ``(B, F_i)`` and
occupies columns ``[start_i, start_i + F_i)``, in the order given, with ``F = sum(F_i)``. A kernel program
handles one row ``b`` and one block of columns inside one variable, so per-sample, per-variable
coefficients (``abar[b, i]``) are scalars of the program.

A call accepts either form:

- a **list** of tensors ``[(B, ...), ...]``: packed with one copy, outputs returned as a list of tensors
  with the input shapes (views into one packed output, in each input's dtype);
- one **tensor** ``(B, ...)``: already packed, no copy; ``splits=(F_1, ..., F_V)`` names the variables'
  column counts when per-variable coefficients are given, else it is one variable.

`RowLayout` lets a caller keep its state packed across calls (``layout.pack`` once, ``layout.unpack``
gives zero-copy views for the network), so a sampling loop never re-packs ``x_t``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

Rows = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class RowLayout:
    """Column layout of V variables packed side by side into ``(B, F)`` rows.

    Args:
        shapes: each variable's shape without the batch dimension, in packing order.
    """

    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tensors: Sequence[torch.Tensor]) -> RowLayout:
        """The layout of a list of ``(B, ...)`` tensors."""
        return cls(tuple(tuple(t.shape[1:]) for t in tensors))

    @classmethod
    def flat(cls, sizes: Sequence[int]) -> RowLayout:
        """A layout of flat variables with the given column counts."""
        return cls(tuple((int(n),) for n in sizes))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Column count ``F_i`` of each variable."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def width(self) -> int:
        """Total column count ``F``."""
        return sum(self.sizes)

    def pack(self, tensors: Sequence[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """Concatenate ``[(B, *shape_i)]`` into contiguous ``(B, F)`` rows (one copy)."""
        if len(tensors) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} tensors for this layout, got {len(tensors)}")
        dtype = dtype or functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        batch = tensors[0].shape[0]
        return torch.cat([t.reshape(batch, -1).to(dtype) for t in tensors], dim=1)  # (B, F)

    def unpack(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Views ``[(B, *shape_i)]`` of ``(B, F)`` rows (no copy)."""
        if rows.dim() != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected rows of shape (B, {self.width}), got {tuple(rows.shape)}")
        parts = torch.split(rows, list(self.sizes), dim=1)  # each (B, F_i)
        return [p.reshape(rows.shape[0], *s) for p, s in zip(parts, self.shapes)]


@dataclass(frozen=True)
class RowForm:
    """How a call's main input arrived, so outputs come back in the same form."""

    layout: RowLayout
    batch: int
    is_list: bool
    shape: tuple[int, ...]  # the single tensor's full shape (unused for lists)
    dtypes: tuple[torch.dtype, ...]  # each variable's dtype

    @property
    def n_vars(self) -> int:
        return len(self.layout.shapes)

    def split(self, value: Rows | None, name: str, optional: bool = False) -> list[torch.Tensor | None]:
        """Per-variable ``(B, *shape_i)`` tensors of an argument given in this call's form.

        A list argument needs one entry per variable (``None`` entries allowed when ``optional``), each
        broadcastable to that variable; a tensor argument must broadcast to the main input's shape.
        """
        if value is None:
            if optional:
                return [None] * self.n_vars
            raise ValueError(f"{name} is required")
        if self.is_list:
            if isinstance(value, torch.Tensor) or len(value) != self.n_vars:
                raise ValueError(
                    f"{name} must be a list of {self.n_vars} tensors like x (one per variable), got "
                    f"{type(value).__name__}{'' if isinstance(value, torch.Tensor) else f' of {len(value)}'}"
                )
            out: list[torch.Tensor | None] = []
            for i, (v, s) in enumerate(zip(value, self.layout.shapes)):
                if v is None and not optional:
                    raise ValueError(f"{name}[{i}] is None; every variable needs a value")
                out.append(None if v is None else _broadcast(v, (self.batch, *s), f"{name}[{i}]"))
            return out
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a tensor shaped like x {self.shape} (x is one tensor)")
        rows = _broadcast(value, self.shape, name).reshape(self.batch, -1)  # (B, F)
        parts = torch.split(rows, list(self.layout.sizes), dim=1)
        return [p.reshape(self.batch, *s) for p, s in zip(parts, self.layout.shapes)]

    def rows(self, value: Rows, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, F)`` rows of an argument in this call's form; unit column stride, row stride may be 0."""
        if self.is_list:
            parts = self.split(value, name)
            return self.layout.pack(parts, dtype)  # type: ignore[arg-type]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a tensor shaped like x {self.shape} (x is one tensor)")
        full = _broadcast(value if dtype is None else value.to(dtype), self.shape, name)
        # A batch-broadcast argument keeps row stride 0 and costs no copy.
        first = full[:1].reshape(1, -1) if full.stride(0) == 0 else None
        if first is not None and first.stride(-1) == 1:
            return first.expand(self.batch, -1)
        rows = full.reshape(self.batch, -1)
        return rows if rows.stride(-1) == 1 else rows.contiguous()

    def optional_rows(self, value: Rows | None, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        """Rows of an argument whose list entries may be None (filled with zeros); None when all are None."""
        if value is None:
            return None
        if self.is_list:
            parts = self.split(value, name, optional=True)
            if all(p is None for p in parts):
                return None
            device = next(p.device for p in parts if p is not None)
            filled = [torch.zeros((self.batch, *s), dtype=dtype, device=device) if p is None else p
                      for p, s in zip(parts, self.layout.shapes)]
            return self.layout.pack(filled, dtype)
        return self.rows(value, name, dtype)

    def restore(self, rows: torch.Tensor) -> Rows:
        """Outputs in the input's form from ``(B, F)`` rows."""
        if self.is_list:
            return [p.to(d) for p, d in zip(self.layout.unpack(rows), self.dtypes)]
        return rows.reshape(self.shape)

    def restore_parts(self, parts: Sequence[torch.Tensor]) -> Rows:
        """Outputs in the input's form from per-variable ``(B, *shape_i)`` tensors."""
        if self.is_list:
            return [p.to(d) for p, d in zip(parts, self.dtypes)]
        if len(parts) == 1:
            return parts[0].reshape(self.shape)
        return torch.cat([p.reshape(self.batch, -1) for p in parts], dim=1).reshape(self.shape)


def row_form(x: Rows, splits: Sequence[int] | None = None, name: str = "x") -> RowForm:
    """Validate the main input of a row-packed call and describe its form."""
    if isinstance(x, torch.Tensor):
        if x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"{name} must be (B, ...) with B >= 1, got shape {tuple(x.shape)}")
        width = math.prod(x.shape[1:])
        layout = RowLayout.flat(splits) if splits is not None else RowLayout((tuple(x.shape[1:]),))
        if layout.width != width:
            raise ValueError(f"splits {tuple(splits or ())} sum to {layout.width}, but {name} has {width} columns")
        return RowForm(layout, x.shape[0], False, tuple(x.shape), (x.dtype,) * len(layout.shapes))
    tensors = list(x)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise ValueError(f"{name} must be a tensor (B, ...) or a non-empty list of tensors (B, ...)")
    if splits is not None:
        raise ValueError("splits is only for a pre-packed tensor; a list already names its variables")
    batches = {t.shape[0] for t in tensors}
    if len(batches) != 1 or 0 in batches:
        raise ValueError(f"every tensor of {name} needs the same batch size B >= 1, got {sorted(batches)}")
    return RowForm(RowLayout.of(tensors), batches.pop(), True, (), tuple(t.dtype for t in tensors))


def coefficient(value: torch.Tensor, form: RowForm, name: str) -> torch.Tensor:
    """A per-sample (``(B,)``) or per-sample-per-variable (``(B, V)``) coefficient as ``(B, 1 | V)`` float32
    (float64 stays float64, for the references' float64 path)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a float tensor of shape ({form.batch},) or ({form.batch}, {form.n_vars})")
    if value.dim() == 1:
        value = value[:, None]
    if value.dim() != 2 or value.shape[0] != form.batch or value.shape[1] not in (1, form.n_vars):
        raise ValueError(
            f"{name} must have shape ({form.batch},) or ({form.batch}, {form.n_vars}) (one column per "
            f"variable), got {tuple(value.shape)}; look it up per sample from your schedule"
        )
    return value if value.dtype == torch.float64 else value.float()  # (B, 1 | V)


def column(coef: torch.Tensor, i: int) -> torch.Tensor:
    """Variable ``i``'s ``(B,)`` column of a ``(B, 1 | V)`` coefficient."""
    return coef[:, 0 if coef.shape[1] == 1 else i]


@functools.lru_cache(maxsize=256)
def _block_table_cpu(sizes: tuple[int, ...], block: int) -> torch.Tensor:
    seg, start, end = [], [], []
    col = 0
    for i, n in enumerate(sizes):
        for s in range(col, col + n, block):
            seg.append(i)
            start.append(s)
            end.append(min(s + block, col + n))
        col += n
    return torch.tensor([seg, start, end], dtype=torch.int32)  # (3, n_blocks)


_tables: dict[tuple[tuple[int, ...], int, str], torch.Tensor] = {}


def block_table(sizes: tuple[int, ...], block: int, device: torch.device) -> torch.Tensor:
    """``(3, n_blocks)`` int32 table (variable, first column, end column) of column blocks; cached per device."""
    key = (sizes, block, str(device))
    table = _tables.get(key)
    if table is None:
        table = _tables[key] = _block_table_cpu(sizes, block).to(device)
    return table


def _broadcast(value: torch.Tensor, shape: tuple[int, ...], name: str) -> torch.Tensor:
    try:
        return value.expand(shape) if tuple(value.shape) != tuple(shape) else value
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to {tuple(shape)}") from None


def per_column(coef: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """A ``(B, 1 | V)`` coefficient spread over the packed columns: ``(B, 1)`` or ``(B, F)``."""
    if coef.shape[1] == 1:
        return coef
    index = torch.repeat_interleave(torch.arange(len(sizes), device=coef.device),
                                    torch.tensor(sizes, device=coef.device))  # (F,) variable of each column
    return coef[:, index]  # (B, F)


def tensors_of(value: Rows | None) -> list[torch.Tensor]:
    """The tensors of an argument given as a tensor, a list (None entries skipped) or None."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for t in value if t is not None]


_segments: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}


def segment_table(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``(2, V)`` int32 table (first column, column count) of each variable; cached per device."""
    key = (sizes, str(device))
    table = _segments.get(key)
    if table is None:
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        table = _segments[key] = torch.tensor([starts, list(sizes)], dtype=torch.int32).to(device)
    return table
