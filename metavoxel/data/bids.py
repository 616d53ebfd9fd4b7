"""Reading a cohort from a BIDS root: participants.tsv, optional sessions.tsv, and anat/*_T1w images.

Layout read::

    root/participants.tsv                       participant_id, age, sex, ...   (required)
    root/sub-01/anat/sub-01_T1w.nii.gz          a subject without sessions
    root/sub-02/sub-02_sessions.tsv             session_id, age, ...            (optional)
    root/sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz

Who and when are never guessed. Values that change between sessions belong in
``sub-XX/sub-XX_sessions.tsv`` (BIDS); a participants.tsv with a ``session_id`` or ``session`` column
(or ``data.session_column``) is read as one row per session too. A subject listed twice without
sessions, a folder without a row, a file named for another subject or session, and a session that has
per-session rows elsewhere but none of its own are problems; rows without a scan are kept as
metadata-only records, named with the problems (both sides of a disagreement in one message) or in a
`CohortWarning`.

The layout is read with `pathlib` globbing rather than pybids: pybids indexes the same files but brings
pandas, scipy, SQLAlchemy and formulaic (~230 MB) and ~0.15 s per tree, and its TSV reading loses the row
numbers every problem here is reported with.

BIDS habits handled: ``participant_id`` and ``session_id`` with or without their ``sub-``/``ses-``
prefix; ``n/a`` for missing values; an ``age`` of ``89+`` (top-coded for privacy) reads as 89; a ``sex``
column spelled M/F, m/f or male/female (any case) is mapped onto whichever spelling the categorical
variable accepts — ``data.codes`` entries win over this.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metavoxel.data.cells import CellReader, warn_clipped
from metavoxel.data.columns import Columns, check_spec_names, resolve_columns, warn_absent
from metavoxel.data.delimited import Row, Sheet, read_delimited
from metavoxel.data.images import check_image, is_image, warn_reused
from metavoxel.data.problems import CohortWarning, Problems, list_places
from metavoxel.data.records import Cohort, Record, session_id, subject_id, without_image_note
from metavoxel.data.spec import DataSpec
from metavoxel.errors import InputError
from metavoxel.variables.capabilities import HasValueRange
from metavoxel.variables.protocol import Variable

__all__ = ["BIDS_SEX", "bids_sex_codes", "read_bids"]

BIDS_SEX = (("M", "m", "male"), ("F", "f", "female"), ("O", "o", "other"))  # the spellings BIDS recommends
SESSION_COLUMN = "session_id"
PARTICIPANT_SESSION_COLUMNS = ("session_id", "session")  # a participants.tsv with one row per session
_NAMED = re.compile(r"^(sub-[^_]+)(?:_(ses-[^_]+))?_")  # the subject and session a BIDS file name states


def bids_sex_codes(variable: Variable) -> dict[str, str]:
    """Each BIDS spelling of sex -> the first spelling of its group that ``variable`` parses (if any)."""
    codes = {}
    for group in BIDS_SEX:
        for spelling in group:
            try:
                variable.parse(spelling)
            except InputError:
                continue
            codes.update({s: spelling for s in group})  # looked up ignoring case
            break
    return codes


@dataclass
class _Subject:
    """What the tree says about one subject: its participants.tsv row(s) and its sessions.tsv, if any."""

    name: str
    row: Row | None = None  # the participants.tsv row without a session
    rows: dict[str, Row] = field(default_factory=dict)  # participants.tsv rows by session (a session column)
    sessions: Sheet | None = None
    session_rows: dict[str, Row] = field(default_factory=dict)

    def first_row(self) -> Row:
        return self.row if self.row is not None else next(iter(self.rows.values()))


@dataclass
class _Unit:
    """One record to be: a subject/session, its image file (or None) and where it was found."""

    subject: _Subject
    session: str | None
    file: Path | None
    source: str


def read_bids(root: str | Path, variables: Mapping[str, Variable], spec: DataSpec | None = None, *,
              use: str = "train") -> Cohort:
    """Read and validate a BIDS cohort; every problem is reported at once.

    One record per image file ``sub-*/anat/*_{spec.bids_suffix}.nii[.gz]`` and
    ``sub-*/ses-*/anat/*_{suffix}.nii[.gz]`` (several runs of one session give several records). The
    image variable — the one image variable not named in ``spec.columns`` — takes the file's path.
    Subjects (or sessions, from ses-* folders, sessions.tsv or participants.tsv rows) without such a file
    are kept as **metadata-only records** whose image is missing, so their age, sex, … still train the
    joint model; a `CohortWarning` names them.

    A session's values come from, in order: its row in ``sub-*/sub-*_sessions.tsv`` (for the columns that
    file has; that cell wins even when it is ``n/a``), its row in participants.tsv when that has a session
    column, then the subject's participants.tsv row without a session. A session with no row of its own
    while its subject has per-session rows (a sessions.tsv with variable columns, or participants.tsv
    rows with sessions) is a problem: another session's values are never used for it. Image variables
    named in ``spec.columns`` read paths from that column, relative to the folder of the TSV file.

    Args:
        root: the BIDS root (holding participants.tsv).
        variables: the model's variables (``JointModel.variables``).
        spec: how columns map onto variables (default: `DataSpec()`); ``subject_column`` names the
            participants.tsv id column, ``session_column`` (default ``session_id`` or ``session``) its
            session column if it has one.

    Returns:
        Records in participants.tsv order; within a subject, session-less files first, then sessions sorted.

    ``use`` (``train`` or ``predict``) words the note on records without an image.

    Raises:
        CohortError: an `InputError` listing every problem with its file (and row and column), then the
            records that have no image.
        InputError: the root or its participants.tsv does not exist.
    """
    spec = DataSpec() if spec is None else spec
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"BIDS root {str(root)!r} is not a folder; give the folder holding participants.tsv")
    if not (root / "participants.tsv").is_file():
        raise InputError(f"{str(root)!r} has no participants.tsv; a BIDS root needs one with participant_id "
                         "and the subjects' values (age, sex, ...)")
    problems = Problems(str(root))
    check_spec_names(variables, spec, problems)
    participants = read_delimited(root / "participants.tsv", label="participants.tsv")
    problems.extend(participants.problems)
    if participants.repeated:  # every row would be read wrongly: report the cause, not its consequences
        problems.raise_if_any()
    subjects = _participants(participants, spec, problems)
    if subjects is None:
        problems.raise_if_any()
    folders = {d.name: d for d in sorted(root.glob("sub-*")) if d.is_dir()}
    for name in folders:
        if name not in subjects:
            problems.add(f"{name}/", "has a folder but no row in participants.tsv; add a row (n/a for unknown "
                         "values) or remove the folder")
    for name, subject in subjects.items():
        if name in folders:
            _read_sessions(root, folders[name], subject, spec, problems)

    spatial = [n for n, v in variables.items() if is_image(v) and n not in spec.columns]
    if len(spatial) > 1:
        problems.add("data.columns", f"a BIDS tree fills one image variable with *_{spec.bids_suffix} files, but "
                     f"{', '.join(spatial)} are all image variables; map the others in data.columns to a TSV column "
                     "of paths")
    image = spatial[0] if len(spatial) == 1 else None
    sheets = [participants, *(s.sessions for s in subjects.values() if s.sessions is not None)]
    columns = resolve_columns([n for n in variables if n != image], spec, sheets, problems)
    readers = {n: CellReader(variables[n], spec, _default_codes(variables[n], columns.mapping[n]))
               for n in columns.mapping}
    values = _Values(root, participants, columns, readers, problems)

    records, no_file = [], []
    for name, subject in subjects.items():
        for unit in _units(root, folders.get(name), subject, spec.bids_suffix, problems):
            if not _has_own_row(unit, columns, problems):
                continue
            raw = {} if image is None else {image: None}
            if image is not None and unit.file is not None:
                try:
                    raw[image] = check_image(variables[image], unit.source, root)
                except InputError as exc:
                    problems.add(unit.source, str(exc))
            raw.update({n: values.get(n, subject, unit.session) for n in columns.mapping})
            records.append(Record(name, unit.session, unit.source, raw))
            if image is not None and unit.file is None:
                no_file.append(records[-1])
    if not subjects and not len(problems):
        problems.add("participants.tsv", "lists no subjects; add one row per participant")
    if no_file:  # the other side of any folder problem above, and counted for the user either way
        problems.note(without_image_note(no_file, use=use))
    problems.raise_if_any()
    warn_absent(str(root), columns)
    if no_file:
        warnings.warn(f"{root}: {without_image_note(no_file, use=use)}", CohortWarning, stacklevel=2)
    clipped = warn_clipped(str(root), readers)
    names = tuple(n for n in variables if n == image or n in columns.mapping)
    images = tuple(n for n in names if is_image(variables[n]))
    warn_reused(str(root), records, images)
    return Cohort(tuple(records), names, str(root), clipped, images)


def _label(text: str | None, spec: DataSpec, canonical) -> str | None:
    """A subject/session id cell -> its canonical id; a missing marker (``n/a``) or blank gives None."""
    if text is None or text.strip().casefold() in {m.strip().casefold() for m in spec.missing}:
        return None
    return canonical(text)


def _participants(sheet: Sheet, spec: DataSpec, problems: Problems) -> dict[str, _Subject] | None:
    """Subject id -> its row(s); None when the id column is missing (nothing else can be matched then)."""
    column = sheet.column(spec.subject_column, fold=False)
    if column is None:
        problems.add("participants.tsv header", f"the subject column {spec.subject_column!r} is missing; "
                     f"{sheet.describe_columns(spec.subject_column)}; add it or set data.subject_column")
        return None
    names = (spec.session_column,) if spec.session_column else PARTICIPANT_SESSION_COLUMNS
    session_col = next((c for c in (sheet.column(n) for n in names) if c is not None), None)
    subjects: dict[str, _Subject] = {}
    for row in sheet.rows:
        name = subject_id(row.cells[column])
        session = _label(row.cells[session_col], spec, session_id) if session_col else None
        place = f"participants.tsv row {row.number}"
        if name is None:
            problems.add(place, "the subject id is empty; give every row a participant_id", column)
            continue
        subject = subjects.setdefault(name, _Subject(name))
        if session is not None:
            if session in subject.rows:
                problems.add(place, f"duplicate subject {name} session {session} (also row "
                             f"{subject.rows[session].number}); keep one row per session", session_col)
            else:
                subject.rows[session] = row
        elif subject.row is not None:
            if session_col is None:
                fix = (f"participants.tsv holds one row per subject: put values that change between sessions in "
                       f"{name}/{name}_sessions.tsv (column session_id, then age, ...), or add a session_id column "
                       "here naming each row's session")
            else:
                fix = f"give each of its rows a session in column {session_col!r}"
            problems.add(place, f"duplicate subject {name} (also row {subject.row.number}); {fix}", column)
        else:
            subject.row = row
    return subjects


def _read_sessions(root: Path, folder: Path, subject: _Subject, spec: DataSpec, problems: Problems) -> None:
    path = folder / f"{folder.name}_sessions.tsv"
    if not path.is_file():
        return
    label = path.relative_to(root).as_posix()
    sheet = read_delimited(path, label=label)
    problems.extend(sheet.problems)
    if sheet.repeated:
        return
    column = sheet.column(SESSION_COLUMN, fold=False)
    if column is None:
        problems.add(f"{label} header", f"the column {SESSION_COLUMN!r} is missing; {sheet.describe_columns()}; "
                     "add it (ses-* labels)")
        return
    subject.sessions = sheet
    for row in sheet.rows:
        session = _label(row.cells[column], spec, session_id)
        place = f"{label} row {row.number}"
        if session is None:
            problems.add(place, "the session id is empty; give every row a session_id", column)
        elif session in subject.session_rows:
            problems.add(place, f"duplicate session {session} (also row {subject.session_rows[session].number}); "
                         "keep one row per session", column)
        else:
            subject.session_rows[session] = row


def _images(anat: Path, suffix: str) -> list[Path]:
    endings = (f"_{suffix}.nii", f"_{suffix}.nii.gz")
    return sorted(p for p in anat.glob(f"*_{suffix}.nii*") if p.name.endswith(endings)) if anat.is_dir() else []


def _named_for(file: Path, subject: str, session: str | None, source: str, problems: Problems) -> bool:
    """Whether the file's name states the subject (and session) of the folders it is in; else a problem."""
    named = _NAMED.match(file.name)
    says = (named.group(1), named.group(2)) if named else (None, None)
    if says == (subject, session):
        return True
    where = f"{subject}/{session}/anat/" if session else f"{subject}/anat/"
    stated = " ".join(s for s in says if s) or "no subject"
    expected = f"{subject}_{session}_" if session else f"{subject}_"
    problems.add(source, f"the file name says {stated} but the file is in {where}; rename it to start with "
                 f"{expected!r} or move it to the folder of the subject and session it holds")
    return False


def _units(root: Path, folder: Path | None, subject: _Subject, suffix: str, problems: Problems) -> Iterator[_Unit]:
    """Every record-to-be of one subject: its files, and its sessions or rows without a file."""
    found = False
    for file in _images(folder / "anat", suffix) if folder is not None else []:
        found = True
        source = file.relative_to(root).as_posix()
        if _named_for(file, subject.name, None, source, problems):
            yield _Unit(subject, None, file, source)
    on_disk = {d.name for d in folder.glob("ses-*") if d.is_dir()} if folder is not None else set()
    for session in sorted(on_disk | set(subject.session_rows) | set(subject.rows)):
        files = _images(folder / session / "anat", suffix) if session in on_disk else []
        for file in files:
            source = file.relative_to(root).as_posix()
            if _named_for(file, subject.name, session, source, problems):
                yield _Unit(subject, session, file, source)
        if not files:
            if session in subject.session_rows:
                source = f"{subject.name}/{subject.name}_sessions.tsv row {subject.session_rows[session].number}"
            elif session in subject.rows:
                source = f"participants.tsv row {subject.rows[session].number}"
            else:
                source = f"{subject.name}/{session}/"
            yield _Unit(subject, session, None, source)
        found = True
    if not found:
        yield _Unit(subject, None, None, f"participants.tsv row {subject.first_row().number}")


def _has_own_row(unit: _Unit, columns: Columns, problems: Problems) -> bool:
    """Whether the unit has values of its own; a session whose subject keeps per-session rows elsewhere but
    none for it, or a session-less scan of a subject with only per-session rows, is a problem."""
    subject, session = unit.subject, unit.session
    if session is None:
        if subject.row is not None or not subject.rows:
            return True
        problems.add(unit.source, f"a scan outside any ses-* folder, but participants.tsv has only per-session rows "
                     f"for {subject.name} (sessions {', '.join(sorted(subject.rows))}); move the scan into its "
                     f"session's folder, or add a row for {subject.name} with an empty session")
        return False
    if session in subject.session_rows or session in subject.rows:
        return True
    sessions_has_values = subject.sessions is not None and any(
        columns.in_sheet(subject.sessions, n) is not None for n in columns.mapping)
    lists = []
    if sessions_has_values:
        lists.append(f"{subject.name}/{subject.name}_sessions.tsv (it lists "
                     f"{list_places(sorted(subject.session_rows)) or 'no session'})")
    if subject.rows:
        lists.append(f"participants.tsv (its rows for {subject.name} name {list_places(sorted(subject.rows))})")
    if not lists:
        return True  # only subject-level values exist: they hold for every session, as BIDS defines them
    problems.add(f"{subject.name}/{session}/",
                 f"session {session} has a folder but no row in {' nor in '.join(lists)}; add a row for {session} "
                 "(n/a for unknown values); values are never borrowed from another row")
    return False


def _default_codes(variable: Variable, column: str) -> dict[str, str]:
    categorical = not is_image(variable) and not isinstance(variable, HasValueRange)
    return bids_sex_codes(variable) if categorical and column.casefold() == "sex" else {}


class _Values:
    """A variable's raw value for a subject/session: its sessions.tsv cell, else its participants.tsv
    session row's cell, else its participants.tsv subject row's cell (the first file with the column wins).

    Each cell is read once, so a bad participants.tsv cell shared by several sessions is reported once.
    """

    def __init__(self, root: Path, participants: Sheet, columns: Columns, readers: Mapping[str, CellReader],
                 problems: Problems):
        self.root, self.participants, self.columns = root, participants, columns
        self.readers, self.problems = readers, problems
        self._cache: dict[tuple[Path, int, str], Any] = {}

    def get(self, name: str, subject: _Subject, session: str | None) -> Any:
        rows = []  # (sheet, row) in the order they are consulted; the first sheet with the column wins
        if session is not None and session in subject.session_rows:
            rows.append((subject.sessions, subject.session_rows[session]))
        if session is not None and session in subject.rows:
            rows.append((self.participants, subject.rows[session]))
        if subject.row is not None:
            rows.append((self.participants, subject.row))
        found = next(((s, r, c) for s, r in rows if (c := self.columns.in_sheet(s, name)) is not None), None)
        if found is None:
            return None
        sheet, row, column = found
        key = (sheet.path, row.number, column)
        if key not in self._cache:
            try:
                self._cache[key] = self.readers[name].read(row.cells[column], sheet.path.parent)
            except InputError as exc:
                place = f"{sheet.path.relative_to(self.root).as_posix()} row {row.number}"
                self.problems.add(place, str(exc), column)
                self._cache[key] = None
        return self._cache[key]
