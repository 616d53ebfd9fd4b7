"""Train/validation/test splits by *subject*, reproducible from a seed, saved as JSON.

All records of a subject (its sessions, runs, metadata-only entries) land in one split, so no subject
leaks between training and evaluation. Subjects are ranked by ``sha256(f"{seed}:{subject}")``: a seeded
permutation of the sorted ids that depends only on the seed and the ids — not on row order, file
order, library versions or which other subjects are present (adding a subject never moves another).
The test subjects are taken first, then validation, so changing ``val`` leaves the test set alone.

The file also records the cohort's source and each subject's fingerprint (`metavoxel.data.identity`), so a
cohort that is not the run's, even with the same subject ids, is recognised (`foreign_cohort`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from metavoxel.data.identity import subject_fingerprints
from metavoxel.data.records import Cohort
from metavoxel.data.spec import SplitSpec
from metavoxel.errors import InputError
from metavoxel.io.atomic import write_json

__all__ = ["SPLITS", "SPLITS_FORMAT", "assign_splits", "foreign_cohort", "load_splits", "read_splits", "save_splits",
           "split_counts", "split_subjects"]

SPLITS = ("train", "val", "test")
SPLITS_FORMAT = "metavoxel.splits/1"


def _rank(subject: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()


def split_counts(n: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) subject counts: rounded fractions, each split with a positive fraction non-empty
    once there are at least 3 subjects, and at least one training subject whenever there is any."""
    n_val, n_test = math.floor(val * n + 0.5), math.floor(test * n + 0.5)
    if n >= 3:
        n_val, n_test = max(n_val, int(val > 0)), max(n_test, int(test > 0))
    while n and n - n_val - n_test < 1:  # give subjects back to train, from the larger held-out split
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def split_subjects(cohort: Cohort, split: SplitSpec | None = None) -> dict[str, list[int]]:
    """Record indices per split (``"train"``, ``"val"``, ``"test"``), every subject in exactly one.

    Args:
        cohort: the cohort to split.
        split: fractions of subjects and the seed (default: `SplitSpec()`).

    Returns:
        split name -> ascending record indices.
    """
    where = assign_splits(cohort.subjects(), split)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for i, record in enumerate(cohort.records):
        out[where[record.subject]].append(i)
    return out


def assign_splits(subjects: Sequence[str], split: SplitSpec | None = None) -> dict[str, str]:
    """Subject id -> its split (``"train"``, ``"val"`` or ``"test"``), by the seeded ranking of the module
    docstring; `split_subjects` applies it to a cohort."""
    split = SplitSpec() if split is None else split
    order = sorted(set(subjects), key=lambda s: (_rank(s, split.seed), s))
    _train, n_val, n_test = split_counts(len(order), split.val, split.test)
    where = {s: "test" for s in order[:n_test]}
    where.update({s: "val" for s in order[n_test:n_test + n_val]})
    where.update({s: "train" for s in order[n_test + n_val:]})
    return where


def save_splits(path: str | Path, splits: Mapping[str, Sequence[int]], cohort: Cohort) -> Path:
    """Write the subject ids of each split as JSON, atomically (temporary file + ``os.replace``).

    Args:
        path: the JSON file to write (its folder must exist).
        splits: split name -> record indices of ``cohort`` (as from `split_subjects`).
        cohort: the cohort the indices refer to.

    Raises:
        InputError: an unknown split name, an index outside the cohort, or a subject in two splits.
    """
    path = Path(path)
    subjects = _subjects_per_split(splits, cohort)
    document = {"format": SPLITS_FORMAT, "source": cohort.source, **subjects,
                "fingerprints": subject_fingerprints(cohort)}
    write_json(path, document)
    return path


def read_splits(path: str | Path) -> dict:
    """A splits file as written by `save_splits` (``source``, subject ids per split, ``fingerprints`` when recorded).

    Raises:
        InputError: the file is missing or malformed, or puts a subject in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"splits file {str(path)!r} does not exist; create it with save_splits")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{str(path)!r} is not valid JSON ({exc}); delete it to split again") from None
    if not isinstance(document, dict) or document.get("format") != SPLITS_FORMAT or not all(
            isinstance(document.get(s), list) and all(isinstance(x, str) for x in document[s]) for s in SPLITS):
        raise InputError(f"{str(path)!r} is not a metavoxel splits file (expected format {SPLITS_FORMAT!r} with "
                         f"lists of subject ids under {', '.join(SPLITS)}); delete it to split again")
    where: dict[str, str] = {}
    for name in SPLITS:
        for subject in document[name]:
            if where.setdefault(subject, name) != name:
                raise InputError(f"{str(path)!r} puts subject {subject} in both {where[subject]} and {name}; "
                                 "a subject belongs to one split — fix or delete the file")
    return document


def foreign_cohort(path: str | Path, cohort: Cohort) -> str | None:
    """Why ``cohort`` is not the cohort the splits file was made from, or None when it is (all of it or a part).

    It is not when it has subjects the file does not list, or subjects whose data differ from the fingerprints
    the file records; a file written before fingerprints were recorded is compared by its ``source`` path.

    Raises:
        InputError: the file is missing or malformed (`read_splits`).
    """
    document = read_splits(path)
    listed = {s for name in SPLITS for s in document[name]}
    unlisted = [s for s in cohort.subjects() if s not in listed]
    if unlisted:
        total = len(cohort.subjects())
        return f"{len(unlisted)} of its {total} subjects are not in the run's splits (e.g. {unlisted[0]})"
    recorded = document.get("fingerprints")
    if isinstance(recorded, dict):
        now = subject_fingerprints(cohort)
        changed = sorted(s for s in now if recorded.get(s) != now[s])
        if changed:
            return (f"the data of {len(changed)} of its {len(now)} subjects differ from those the run was trained on "
                    f"(e.g. {changed[0]})")
        return None
    source = document.get("source")
    if isinstance(source, str) and source and cohort.source and \
            Path(source).resolve() != Path(cohort.source).resolve():
        return f"the run was trained on {source!r}"
    return None


def load_splits(path: str | Path, cohort: Cohort) -> dict[str, list[int]]:
    """Read a splits file and give the record indices of ``cohort`` per split.

    Subjects listed in the file but absent from the cohort (e.g. excluded since) are ignored; every
    subject of the cohort must be listed.

    Raises:
        InputError: the file is missing or malformed, a subject is in two splits, or cohort subjects are
            in no split.
    """
    path = Path(path)
    document = read_splits(path)
    where = {subject: name for name in SPLITS for subject in document[name]}
    unlisted = [s for s in cohort.subjects() if s not in where]
    if unlisted:
        shown = ", ".join(unlisted[:10]) + (f" and {len(unlisted) - 10} more" if len(unlisted) > 10 else "")
        raise InputError(f"{str(path)!r} does not list {len(unlisted)} subject(s) of the cohort ({shown}); delete "
                         "it to split again, or add them to a split")
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for i, record in enumerate(cohort.records):
        out[where[record.subject]].append(i)
    return out


def _subjects_per_split(splits: Mapping[str, Sequence[int]], cohort: Cohort) -> dict[str, list[str]]:
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise InputError(f"unknown split name(s) {', '.join(unknown)}; splits are {', '.join(SPLITS)}")
    where: dict[str, str] = {}
    for name in SPLITS:
        for i in splits.get(name, []):
            if not 0 <= int(i) < len(cohort):
                raise InputError(f"split {name} holds record index {i}, but the cohort has {len(cohort)} records; "
                                 "pass the cohort the splits were made from")
            subject = cohort.records[int(i)].subject
            if where.setdefault(subject, name) != name:
                raise InputError(f"subject {subject} has records in both {where[subject]} and {name}; split by "
                                 "subject (split_subjects) so no subject leaks between splits")
    return {name: sorted(s for s, n in where.items() if n == name) for name in SPLITS}
