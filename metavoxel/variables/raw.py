"""Raw values as users give them: the spellings of a missing value, and numbers for B records."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from metavoxel.errors import InputError

__all__ = ["MISSING_TEXT", "float_values"]

#: Cell texts that mean "missing" (compared after strip() and lower()).
MISSING_TEXT = frozenset({"", "n/a", "na", "nan", "none", "null"})


def float_values(raw: Any, what: str, expected: str = "a number") -> torch.Tensor:
    """Raw numbers for B records (scalars, sequences, arrays; None/NaN/'n/a' missing) -> float64 (B,).

    Args:
        what: the variable's name, for the error message.
        expected: what a record should be, for the error message (e.g. "a number in [0, 30]").
    """
    if isinstance(raw, torch.Tensor):
        return raw.detach().to("cpu", torch.float64).reshape(-1)
    if isinstance(raw, np.ndarray):
        return torch.from_numpy(raw.astype(np.float64)).reshape(-1)
    items = [raw] if isinstance(raw, (int, float, str)) or raw is None else list(raw)
    out = []
    for i, item in enumerate(items):
        if item is None or (isinstance(item, str) and item.strip().lower() in MISSING_TEXT):
            out.append(math.nan)
            continue
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            raise InputError(f"{what}: record {i} is {item!r}, expected {expected} (or empty for missing)") from None
    return torch.tensor(out, dtype=torch.float64)
