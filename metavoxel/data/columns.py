"""Which column each variable is read from, checked against the header(s) of a cohort.

A variable named in ``data.columns`` must find that exact column; any other variable is read from the
column of its own name (matched ignoring case when unambiguous) and, if there is none, is *absent*: the
cohort does not provide it, training treats it as missing everywhere, and a `CohortWarning` says so. Two
columns matching a variable only ignoring case (``Age`` and ``AGE``) are a problem naming both, not an
absent variable.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from metavoxel.data.delimited import Sheet
from metavoxel.data.problems import CohortWarning, Problems
from metavoxel.data.spec import DataSpec
from metavoxel.variables.protocol import Variable

__all__ = ["Columns", "check_spec_names", "resolve_columns", "warn_absent"]


@dataclass(frozen=True)
class Columns:
    """variable -> the column it is read from; ``explicit``: those named in ``data.columns``."""

    mapping: dict[str, str]
    explicit: frozenset[str]
    absent: tuple[str, ...]

    def in_sheet(self, sheet: Sheet, name: str) -> str | None:
        """The header column of ``sheet`` that holds variable ``name``, if that sheet has it."""
        return sheet.column(self.mapping[name], fold=name not in self.explicit)


def check_spec_names(variables: Mapping[str, Variable], spec: DataSpec, problems: Problems) -> None:
    """Report entries of ``data.columns`` and ``data.codes`` that name no variable of the model."""
    for section, names in (("columns", spec.columns), ("codes", spec.codes)):
        for name in names:
            if name not in variables:
                close = difflib.get_close_matches(name, list(variables), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.add(f"data.{section}", f"names variable {name!r}, which the model does not have{hint}; "
                             f"its variables are {', '.join(variables)}")


def resolve_columns(names: Iterable[str], spec: DataSpec, sheets: Sequence[Sheet], problems: Problems) -> Columns:
    """Find each variable's column in any of ``sheets``; report explicit columns that none has.

    Args:
        names: the variables to find (in model order).
        spec: the data spec with ``columns``.
        sheets: the tables the values may come from (a cohort table, or participants.tsv and sessions.tsv).
        problems: where a missing explicit column is reported.
    """
    mapping, absent = {}, []
    for name in names:
        column = spec.columns.get(name, name)
        explicit = name in spec.columns
        if any(s.column(column, fold=not explicit) is not None for s in sheets):
            mapping[name] = column
        elif not explicit and any(len(s.folded(column)) > 1 for s in sheets):
            both = next(s.folded(column) for s in sheets if len(s.folded(column)) > 1)
            shown = " and ".join(repr(c) for c in both)
            problems.add("header", f"columns {shown} both match variable {name!r} (ignoring case), so neither is "
                         f"read; name the one to use in data.columns (e.g. {name}: {both[0]}) or rename the other")
        elif explicit:
            shown = sheets[0].describe_columns(column) if sheets else "there are no columns"
            problems.add("data.columns", f"maps {name!r} to column {column!r}, which the table does not have; "
                         f"{shown}")
        else:
            absent.append(name)
    return Columns(mapping, frozenset(n for n in mapping if n in spec.columns), tuple(absent))


def warn_absent(source: str, columns: Columns) -> None:
    """One `CohortWarning` naming the variables the cohort does not provide."""
    if columns.absent:
        names = ", ".join(columns.absent)
        they = "they are" if len(columns.absent) > 1 else "it is"
        warnings.warn(f"{source}: no column for {names}; {they} missing for every record (name the column in "
                      "data.columns if it is spelled differently)", CohortWarning, stacklevel=3)
