"""Collecting every problem of a cohort and reporting them together in one `CohortError`.

A cohort is validated completely before anything trains; the error's first line is a one-line summary
(``cohort.tsv: 5 problems in 4 rows; fix them and run again:``) and each following line names one
problem with its row (or file) and column. What is accepted but worth knowing when fixing the rest —
rows kept without an image, the other side of a table/folder disagreement — follows as one ``also:``
line, so both sides of a disagreement are in one message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from metavoxel.errors import InputError

__all__ = ["MAX_LINES", "CohortError", "CohortWarning", "Problem", "Problems", "format_problems", "list_places"]

MAX_LINES = 50  # problem lines shown in one message; the rest are counted
MAX_PLACES = 8  # places named in one note line; the rest are counted
FILE_SUFFIXES = (".nii", ".nii.gz", ".tsv", ".csv", ".txt")


@dataclass(frozen=True)
class Problem:
    """One problem in a cohort.

    Args:
        place: where it is: ``"row 7"``, ``"participants.tsv row 3"``, a file relative to the BIDS root,
            ``"header"`` or ``"data.columns"``.
        message: what was expected, what arrived and what to do.
        column: the column it is in, if any.
    """

    place: str
    message: str
    column: str | None = None

    def line(self) -> str:
        where = self.place if self.column is None else f"{self.place}, column {self.column!r}"
        return f"  {where}: {self.message}"


class CohortError(InputError):
    """A cohort with problems; ``problems`` holds every one of them, the message lists them."""

    def __init__(self, source: str, problems: Iterable[Problem], notes: Iterable[str] = ()):
        self.source = source
        self.problems = tuple(problems)
        self.notes = tuple(notes)
        super().__init__(format_problems(source, self.problems, self.notes))


class CohortWarning(UserWarning):
    """Something in a cohort was accepted but changed or left out (clipped values, absent variables)."""


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _places(problems: tuple[Problem, ...]) -> str:
    """'4 rows', '3 rows, 1 file and the header', ...: rows and files counted, other places named."""
    seen = list(dict.fromkeys(p.place for p in problems))
    rows = [p for p in seen if re.search(r"\brow \d+$", p)]
    files = [p for p in seen if p not in rows and p.endswith(FILE_SUFFIXES)]
    named = [f"the {p}" if p == "header" else p for p in seen if p not in rows and p not in files]
    parts = ([_count(len(rows), "row")] if rows else []) + ([_count(len(files), "file")] if files else []) + named
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def list_places(places: list[str]) -> str:
    """``a, b, c`` naming at most `MAX_PLACES`, then ``… and N more``."""
    shown = ", ".join(places[:MAX_PLACES])
    return shown if len(places) <= MAX_PLACES else f"{shown} … and {len(places) - MAX_PLACES} more"


def format_problems(source: str, problems: tuple[Problem, ...], notes: tuple[str, ...] = ()) -> str:
    """A summary line, one line per problem (at most `MAX_LINES`, then ``… and N more``), then each note
    as an ``also:`` line."""
    lines = [f"{source}: {_count(len(problems), 'problem')} in {_places(problems)}; fix them and run again:"]
    lines += [p.line() for p in problems[:MAX_LINES]]
    if len(problems) > MAX_LINES:
        lines.append(f"  … and {len(problems) - MAX_LINES} more")
    lines += [f"  also: {note}" for note in notes]
    return "\n".join(lines)


class Problems:
    """An ordered collection of problems for one cohort source.

    Args:
        source: the table or BIDS root as the user gave it; starts the summary line.
    """

    def __init__(self, source: str):
        self.source = source
        self._items: list[Problem] = []
        self.notes: list[str] = []

    def add(self, place: str, message: str, column: str | None = None) -> None:
        self._items.append(Problem(place, message, column))

    def extend(self, problems: Iterable[Problem]) -> None:
        self._items.extend(problems)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def note(self, text: str) -> None:
        """Something accepted, shown after the problems if there are any (e.g. rows kept without an image)."""
        self.notes.append(text)

    def raise_if_any(self) -> None:
        """Raise one `CohortError` listing every problem collected so far, and the notes, if there is any."""
        if self._items:
            raise CohortError(self.source, self._items, self.notes)
