"""Reading a cohort from a BIDS root: participants.tsv, optional sessions.tsv, and anat/*_T1w images.

Layout read::

    root/participants.tsv                       participant_id, age, sex, ...   (required)
    root/sub-01/anat/sub-01_T1w.nii.gz          a subject without sessions
    root/sub-02/sub-02_sessions.tsv             session_id, age, ...            (optional)
    root/sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz

BIDS habits handled: ``participant_id`` and ``session_id`` with or without their ``sub-``/``ses-``
prefix; ``n/a`` for missing values; an ``age`` of ``89+`` (top-coded for privacy) reads as 89; a ``sex``
column spelled M/F, m/f or male/female (any case) is mapped onto whichever spelling the categorical
variable accepts — ``data.codes`` entries win over this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metavoxel.data.cells import CellReader, warn_clipped
from metavoxel.data.columns import Columns, check_spec_names, resolve_columns, warn_absent
from metavoxel.data.delimited import Row, Sheet, read_delimited
from metavoxel.data.images import check_image, is_image
from metavoxel.data.problems import Problems
from metavoxel.data.records import Cohort, Record, session_id, subject_id
from metavoxel.data.spec import DataSpec
from metavoxel.errors import InputError
from metavoxel.variables.capabilities import HasValueRange
from metavoxel.variables.protocol import Variable

__all__ = ["BIDS_SEX", "bids_sex_codes", "read_bids"]

BIDS_SEX = (("M", "m", "male"), ("F", "f", "female"), ("O", "o", "other"))  # the spellings BIDS recommends
SESSION_COLUMN = "session_id"


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
    """What the tree says about one subject: its participants.tsv row and its sessions.tsv, if any."""

    row: Row | None = None
    sessions: Sheet | None = None
    session_rows: dict[str, Row] = field(default_factory=dict)


def read_bids(root: str | Path, variables: Mapping[str, Variable], spec: DataSpec | None = None) -> Cohort:
    """Read and validate a BIDS cohort; every problem is reported at once.

    One record per image file ``sub-*/anat/*_{spec.bids_suffix}.nii[.gz]`` and
    ``sub-*/ses-*/anat/*_{suffix}.nii[.gz]`` (several runs of one session give several records). The
    image variable — the one image variable not named in ``spec.columns`` — takes the file's path.
    Subjects (or sessions, from ses-* folders or sessions.tsv) without such a file are kept as
    **metadata-only records** whose image is missing, so their age, sex, … still train the joint model.

    Values come from ``sub-*/sub-*_sessions.tsv`` when it has the session's row and the variable's column
    (that cell wins even when it is ``n/a``), else from participants.tsv. Every subject folder needs a
    participants.tsv row. Image variables named in ``spec.columns`` read paths from that column, relative
    to the folder of the TSV file.

    Args:
        root: the BIDS root (holding participants.tsv).
        variables: the model's variables (``JointModel.variables``).
        spec: how columns map onto variables (default: `DataSpec()`); ``subject_column`` names the
            participants.tsv id column.

    Returns:
        Records in participants.tsv order; within a subject, session-less files first, then sessions sorted.

    Raises:
        CohortError: an `InputError` listing every problem with its file (and row and column).
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
            _read_sessions(root, folders[name], subject, problems)

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

    records = []
    for name, subject in subjects.items():
        for session, file, source in _units(folders.get(name), subject, spec.bids_suffix):
            raw = {} if image is None else {image: None}
            if image is not None and file is not None:
                try:
                    raw[image] = check_image(variables[image], source, root)
                except InputError as exc:
                    problems.add(source, str(exc))
            raw.update({n: values.get(n, subject, session) for n in columns.mapping})
            records.append(Record(name, session, source, raw))
    if not subjects and not len(problems):
        problems.add("participants.tsv", "lists no subjects; add one row per participant")
    problems.raise_if_any()
    warn_absent(str(root), columns)
    clipped = warn_clipped(str(root), readers)
    names = tuple(n for n in variables if n == image or n in columns.mapping)
    return Cohort(tuple(records), names, str(root), clipped)


def _participants(sheet: Sheet, spec: DataSpec, problems: Problems) -> dict[str, _Subject] | None:
    """Subject id -> its row; None when the id column is missing (nothing else can be matched then)."""
    column = sheet.column(spec.subject_column, fold=False)
    if column is None:
        problems.add("participants.tsv header", f"the subject column {spec.subject_column!r} is missing; "
                     f"{sheet.describe_columns(spec.subject_column)}; add it or set data.subject_column")
        return None
    subjects: dict[str, _Subject] = {}
    for row in sheet.rows:
        subject = subject_id(row.cells[column])
        place = f"participants.tsv row {row.number}"
        if subject is None:
            problems.add(place, "the subject id is empty; give every row a participant_id", column)
        elif subject in subjects:
            problems.add(place, f"duplicate subject {subject} (also row {subjects[subject].row.number}); remove "
                         "the duplicate row", column)
        else:
            subjects[subject] = _Subject(row)
    return subjects


def _read_sessions(root: Path, folder: Path, subject: _Subject, problems: Problems) -> None:
    path = folder / f"{folder.name}_sessions.tsv"
    if not path.is_file():
        return
    label = path.relative_to(root).as_posix()
    sheet = read_delimited(path, label=label)
    problems.extend(sheet.problems)
    column = sheet.column(SESSION_COLUMN, fold=False)
    if column is None:
        problems.add(f"{label} header", f"the column {SESSION_COLUMN!r} is missing; {sheet.describe_columns()}; "
                     "add it (ses-* labels)")
        return
    subject.sessions = sheet
    for row in sheet.rows:
        session = session_id(row.cells[column])
        place = f"{label} row {row.number}"
        if session is None:
            problems.add(place, "the session id is empty; give every row a session_id", column)
        elif session in subject.session_rows:
            problems.add(place, f"duplicate session {session} (also row {subject.session_rows[session].number}); "
                         "remove the duplicate row", column)
        else:
            subject.session_rows[session] = row


def _images(anat: Path, suffix: str) -> list[Path]:
    endings = (f"_{suffix}.nii", f"_{suffix}.nii.gz")
    return sorted(p for p in anat.glob(f"*_{suffix}.nii*") if p.name.endswith(endings)) if anat.is_dir() else []


def _units(folder: Path | None, subject: _Subject, suffix: str):
    """(session, image file or None, source) for every record of one subject."""
    root = None if folder is None else folder.parent
    found = False
    for file in _images(folder / "anat", suffix) if folder is not None else []:
        found = True
        yield None, file, file.relative_to(root).as_posix()
    on_disk = {d.name for d in folder.glob("ses-*") if d.is_dir()} if folder is not None else set()
    for session in sorted(on_disk | set(subject.session_rows)):
        files = _images(folder / session / "anat", suffix) if session in on_disk else []
        for file in files:
            yield session, file, file.relative_to(root).as_posix()
        if not files:
            row = subject.session_rows.get(session)
            label = f"{folder.name}/{folder.name}_sessions.tsv row {row.number}" if row else f"{folder.name}/{session}/"
            yield session, None, label
        found = True
    if not found:
        yield None, None, f"participants.tsv row {subject.row.number}"


def _default_codes(variable: Variable, column: str) -> dict[str, str]:
    categorical = not is_image(variable) and not isinstance(variable, HasValueRange)
    return bids_sex_codes(variable) if categorical and column.casefold() == "sex" else {}


class _Values:
    """A variable's raw value for a subject/session: the sessions.tsv cell if any, else participants.tsv.

    Each cell is read once, so a bad participants.tsv cell shared by several sessions is reported once.
    """

    def __init__(self, root: Path, participants: Sheet, columns: Columns, readers: Mapping[str, CellReader],
                 problems: Problems):
        self.root, self.participants, self.columns = root, participants, columns
        self.readers, self.problems = readers, problems
        self._cache: dict[tuple[Path, int, str], Any] = {}

    def get(self, name: str, subject: _Subject, session: str | None) -> Any:
        sheet, row = self.participants, subject.row
        session_row = subject.session_rows.get(session) if session else None
        if session_row is not None and self.columns.in_sheet(subject.sessions, name) is not None:
            sheet, row = subject.sessions, session_row
        column = self.columns.in_sheet(sheet, name)
        if row is None or column is None:
            return None
        key = (sheet.path, row.number, column)
        if key not in self._cache:
            try:
                self._cache[key] = self.readers[name].read(row.cells[column], sheet.path.parent)
            except InputError as exc:
                place = f"{sheet.path.relative_to(self.root).as_posix()} row {row.number}"
                self.problems.add(place, str(exc), column)
                self._cache[key] = None
        return self._cache[key]
