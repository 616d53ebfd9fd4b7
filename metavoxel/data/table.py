"""Reading a cohort from one table: TSV or CSV, one row per scan, columns named like the variables."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

from metavoxel.data.cells import CellReader, warn_clipped
from metavoxel.data.columns import check_spec_names, resolve_columns, warn_absent
from metavoxel.data.delimited import read_delimited
from metavoxel.data.images import is_image, warn_reused
from metavoxel.data.problems import CohortWarning, Problems
from metavoxel.data.records import Cohort, Record, session_id, subject_id, without_image_note
from metavoxel.data.spec import DataSpec
from metavoxel.errors import InputError
from metavoxel.variables.protocol import Variable

__all__ = ["read_table"]


def read_table(path: str | Path, variables: Mapping[str, Variable], spec: DataSpec | None = None, *,
               use: str = "train") -> Cohort:
    """Read and validate a cohort table; every problem is reported at once.

    The delimiter follows the suffix (``.tsv``/``.txt``: tab, ``.csv``: comma). ``spec.subject_column``
    is required; subject ids with and without ``sub-`` are one subject, and a subject (with
    ``spec.session_column``: a subject and session) may appear once. Image cells are paths, relative to
    the table's folder, checked by their NIfTI header only; scalar cells go through the variable's
    ``parse`` (see `metavoxel.data.cells`).
    ``use`` (``train`` or ``predict``) words the note on rows without an image.

    Args:
        path: the table file.
        variables: the model's variables (``JointModel.variables``).
        spec: how columns map onto variables (default: `DataSpec()`).

    Returns:
        One record per row, in file order. A row whose image cell is empty trains the metadata only; such
        rows are named in a `CohortWarning` (and after the problems, if there are any).

    Raises:
        CohortError: an `InputError` listing every problem, one line each, with row and column.
        InputError: the file is missing, of an unknown type, empty or has no rows.
    """
    spec = DataSpec() if spec is None else spec
    path = Path(path)
    sheet = read_delimited(path)
    if not sheet.rows and not sheet.problems:
        raise InputError(f"{str(path)!r} has a header but no rows; add one row per scan")
    problems = Problems(str(path))
    problems.extend(sheet.problems)
    if sheet.repeated:  # every row would be read wrongly: report the cause, not its consequences
        problems.raise_if_any()
    check_spec_names(variables, spec, problems)
    columns = resolve_columns(list(variables), spec, [sheet], problems)
    if not columns.mapping:
        problems.add("header", f"no column holds any of the variables {', '.join(variables)}; "
                     f"{sheet.describe_columns()}; name them in data.columns")
    subject_col = sheet.column(spec.subject_column, fold=False)
    if subject_col is None:
        problems.add("header", f"the subject column {spec.subject_column!r} is missing; "
                     f"{sheet.describe_columns(spec.subject_column)}; set data.subject_column"
                     f"{_delimiter_hint(sheet.header)}")
    session_col = None
    if spec.session_column is not None:
        session_col = sheet.column(spec.session_column, fold=False)
        if session_col is None:
            problems.add("header", f"the session column {spec.session_column!r} is missing; "
                         f"{sheet.describe_columns(spec.session_column)}; fix data.session_column")

    readers = {name: CellReader(variables[name], spec) for name in columns.mapping}
    missing = {m.strip().casefold() for m in spec.missing}  # a session cell "n/a" is no session
    cells_of = {name: columns.in_sheet(sheet, name) for name in columns.mapping}
    seen: dict[tuple[str, str | None], int] = {}
    missing = {m.strip().casefold() for m in spec.missing}
    records = []
    for row in sheet.rows:
        place = f"row {row.number}"
        subject = subject_id(row.cells[subject_col]) if subject_col else None
        session_cell = row.cells[session_col] if session_col else None
        missing_session = session_cell is None or session_cell.strip().casefold() in missing
        session = None if missing_session else session_id(session_cell)  # "n/a" is no session, not "ses-n/a"
        if subject_col and subject is None:
            problems.add(place, "the subject id is empty; give every row a subject", subject_col)
        elif subject is not None:
            key = (subject, session)
            if key in seen:
                what = f"subject {subject}" + (f" session {session}" if session else "")
                if session_col is None:
                    fix = ("if the rows are scans of different sessions, name the column holding the session in "
                           "data.session_column; if they are the same scan, keep one row")
                elif session is None:
                    fix = f"give each row its session in column {session_col!r}, or keep one row"
                else:
                    fix = "keep one row per subject and session"
                problems.add(place, f"duplicate {what} (also row {seen[key]}); {fix}", subject_col)
            else:
                seen[key] = row.number
        values = {}
        for name, reader in readers.items():
            try:
                values[name] = reader.read(row.cells[cells_of[name]], path.parent)
            except InputError as exc:
                problems.add(place, str(exc), cells_of[name])
                values[name] = None
        records.append(Record(subject or "", session, f"{path.name} {place}", values))
    images = tuple(n for n in columns.mapping if is_image(variables[n]))
    no_image = [r for r, row in zip(records, sheet.rows, strict=True)
                if images and all(readers[n].is_missing(row.cells[cells_of[n]]) for n in images)]
    if no_image:  # an empty image cell is allowed (the row trains the metadata only) but always counted
        problems.note(without_image_note(no_image, use=use))
    problems.raise_if_any()
    warn_absent(str(path), columns)
    if no_image:
        warnings.warn(f"{path}: {without_image_note(no_image, use=use)}", CohortWarning, stacklevel=2)
    clipped = warn_clipped(str(path), readers)
    warn_reused(str(path), records, images)
    return Cohort(tuple(records), tuple(columns.mapping), str(path), clipped, images)


def _delimiter_hint(header: tuple[str, ...]) -> str:
    if len(header) == 1 and any(d in header[0] for d in ("\t", ",", ";")):
        return " (the header is one column: is the file's delimiter the one its suffix implies?)"
    return ""
