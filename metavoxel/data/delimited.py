"""Reading TSV/CSV files with the csv module: a header row, then one row per entry.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first entry row 2.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

from metavoxel.data.problems import Problem
from metavoxel.errors import InputError

__all__ = ["DELIMITERS", "Row", "Sheet", "delimiter_for", "read_delimited"]

DELIMITERS = {".tsv": "\t", ".txt": "\t", ".csv": ","}


@dataclass(frozen=True)
class Row:
    """One entry: its spreadsheet row number and its cells by column name."""

    number: int
    cells: dict[str, str]


@dataclass(frozen=True)
class Sheet:
    """A parsed table: header, rows with the right number of cells, and the rows that had not."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[Row, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def repeated(self) -> tuple[str, ...]:
        """Column names the header has more than once (their cells cannot be told apart)."""
        return tuple(sorted({c for c in self.header if self.header.count(c) > 1}))

    def column(self, name: str, *, fold: bool = True) -> str | None:
        """The header column called ``name``; with ``fold``, else the one column equal to it ignoring case."""
        if name in self.header:
            return name
        if fold:
            folded = [c for c in self.header if c.casefold() == name.casefold()]
            if len(folded) == 1:
                return folded[0]
        return None

    def folded(self, name: str) -> tuple[str, ...]:
        """Every header column equal to ``name`` ignoring case (``Age`` and ``AGE`` for ``age``)."""
        return tuple(c for c in self.header if c.casefold() == name.casefold())

    def describe_columns(self, name: str | None = None) -> str:
        """``columns are a, b, c`` with a did-you-mean for ``name``, for error messages."""
        close = difflib.get_close_matches(name, self.header, n=1) if name else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"columns are {', '.join(repr(c) for c in self.header)}{hint}"


def delimiter_for(path: Path) -> str:
    """Tab for ``.tsv``/``.txt``, comma for ``.csv``; InputError for anything else."""
    delimiter = DELIMITERS.get(path.suffix.lower())
    if delimiter is None:
        raise InputError(f"{str(path)!r} has suffix {path.suffix or '(none)'!r}; expected a table ending in "
                         f"{', '.join(DELIMITERS)} (tab- or comma-separated); rename or convert it")
    return delimiter


def read_delimited(path: str | Path, *, label: str = "") -> Sheet:
    """Read a TSV/CSV file as UTF-8 (a BOM is ignored); blank lines are skipped.

    Args:
        path: the file; its suffix picks the delimiter (`delimiter_for`).
        label: prefix of row places in problems (``"participants.tsv"`` gives ``"participants.tsv row 3"``).

    Returns:
        The sheet; rows whose cell count differs from the header's are left out and reported in
        ``problems``, as are repeated column names.

    Raises:
        InputError: the file is missing, not UTF-8, or has no header.
    """
    path = Path(path)
    delimiter = delimiter_for(path)
    if not path.is_file():
        raise InputError(f"table {str(path)!r} does not exist; give the path of a {', '.join(DELIMITERS)} file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise InputError(f"{str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"{str(path)!r} is not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file "
                         f"({exc}); check its quoting") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if any(cell.strip() for cell in line)]
    if not numbered:
        raise InputError(f"{str(path)!r} is empty; expected a header row naming the columns, then one row per scan")
    prefix = f"{label} row" if label else "row"
    (_, header_cells), entries = numbered[0], numbered[1:]
    header = tuple(cell.strip() for cell in header_cells)
    problems = []
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.append(Problem(f"{label} header" if label else "header",
                                f"column name(s) {', '.join(repr(c) for c in repeated)} appear more than once; "
                                "rename them so each column is unique"))
    rows = []
    for number, cells in entries:
        if len(cells) != len(header):
            problems.append(Problem(f"{prefix} {number}",
                                    f"has {len(cells)} cells but the header has {len(header)} columns; check the "
                                    f"delimiter ({'tab' if delimiter == chr(9) else 'comma'}) and quoting of this row"))
            continue
        rows.append(Row(number, dict(zip(header, cells, strict=True))))
    return Sheet(path, header, tuple(rows), tuple(problems))
