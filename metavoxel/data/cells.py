"""One cell of a cohort table -> the raw value of one variable, or an `InputError` saying why not.

Order of reading a cell: strip whitespace; a missing marker gives ``None``; a code from
``data.codes`` is replaced by its value (which may itself be a missing marker); a top-coded number such
as BIDS's ``89+`` reads as 89 for continuous variables; then the variable's own ``parse`` gives the raw
value and a continuous value is checked against the declared ``value_range``. Image cells are checked
by their NIfTI header only (`metavoxel.data.images.check_image`) and read as absolute path strings.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metavoxel.data.images import check_image, is_image
from metavoxel.data.problems import CohortWarning
from metavoxel.data.spec import DataSpec
from metavoxel.errors import InputError
from metavoxel.variables.capabilities import HasValueRange
from metavoxel.variables.protocol import Variable

__all__ = ["TOP_CODED", "CellReader", "warn_clipped"]

# "89+" (BIDS / HIPAA top-coding of ages): the value is at least 89, and reads as 89.
TOP_CODED = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\+$")


class CellReader:
    """Reads the cells of one variable.

    Args:
        variable: the variable the cells belong to.
        spec: the data spec (missing markers, codes, out-of-range policy).
        default_codes: codes applied when ``spec.codes`` has no entry for a text (e.g. BIDS sex spellings).

    Attributes:
        clipped: how many values were clipped to the declared range (``out_of_range="clip"``).
    """

    def __init__(self, variable: Variable, spec: DataSpec, default_codes: Mapping[str, str] | None = None):
        self.variable = variable
        self.image = is_image(variable)
        self.value_range = variable.value_range if isinstance(variable, HasValueRange) else None
        self.clip = spec.out_of_range == "clip"
        self.missing = {m.strip().casefold() for m in spec.missing}
        self.codes = {**(default_codes or {}), **spec.codes.get(variable.name, {})}
        self._folded_codes = {k.strip().casefold(): v for k, v in self.codes.items()}
        self.clipped = 0

    def is_missing(self, text: str) -> bool:
        return text.strip().casefold() in self.missing

    def decode(self, text: str) -> str:
        """The text after applying codes (exact match first, then ignoring case)."""
        text = text.strip()
        if text in self.codes:
            return self.codes[text].strip()
        return self._folded_codes.get(text.casefold(), text).strip()

    def read(self, text: str | None, base: Path) -> Any:
        """The raw value of one cell: None if missing, else what the variable parses (images: a path).

        Args:
            text: the cell as written (None when the row has no such column).
            base: the folder relative image paths start from.

        Raises:
            InputError: the variable's own message for a bad value, or an image/range message.
        """
        if text is None or self.is_missing(text):
            return None
        decoded = self.decode(text)
        if self.is_missing(decoded):
            return None
        if self.image:
            return check_image(self.variable, decoded, base)
        if self.value_range is not None:
            top = TOP_CODED.match(decoded)
            decoded = top.group(1) if top else decoded
        try:
            value = self.variable.parse(decoded)
        except InputError as exc:
            shown = f" (code {text.strip()!r} -> {decoded!r})" if decoded != text.strip() else ""
            hint = "" if self.value_range is not None else f"; or map this code with data.codes.{self.variable.name}"
            raise InputError(f"{exc}{shown}{hint}") from None
        return value if self.value_range is None else self._in_range(value, text.strip())

    def _in_range(self, value: Any, text: str) -> Any:
        lo, hi = self.value_range
        if lo <= value <= hi or (isinstance(value, float) and math.isnan(value)):
            return value
        if self.clip:
            self.clipped += 1
            return min(max(value, lo), hi)
        raise InputError(f"{self.variable.name}: {text!r} is outside the declared range [{lo:g}, {hi:g}]; correct "
                         "the value or leave the cell empty (a model answers only within the range it was trained "
                         "on: values outside need a model trained with a wider declared range, or with "
                         "data.out_of_range: clip to clip them with a warning)")


def warn_clipped(source: str, readers: Mapping[str, CellReader]) -> dict[str, int]:
    """One `CohortWarning` counting the values clipped per variable; returns variable -> count (> 0)."""
    clipped = {name: r.clipped for name, r in readers.items() if r.clipped}
    if clipped:
        counts = ", ".join(f"{n} value{'s' if n > 1 else ''} of {name} to [{readers[name].value_range[0]:g}, "
                           f"{readers[name].value_range[1]:g}]" for name, n in clipped.items())
        warnings.warn(f"{source}: clipped {counts} (data.out_of_range: clip)", CohortWarning, stacklevel=3)
    return clipped
