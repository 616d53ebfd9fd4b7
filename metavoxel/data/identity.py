"""What a cohort is: the files it was read from, and a fingerprint of each subject's data.

A run records its cohort's fingerprints in splits.json when it is trained, so later commands can tell its own
cohort from another one whose subject ids happen to be the same (``sub-0001``, ``sub-0002``, ...):
``train --resume`` refuses a cohort whose subjects or values changed, and ``evaluate --data OTHER`` evaluates
a cohort that is not the run's as every record (``--split all``) instead of as the run's splits.

A subject's fingerprint is the SHA-256 (first 16 hex digits) of its records in cohort order: the session,
every scalar value as read (after codes and parsing: ``female`` and ``F`` agree), and every image file by name
and size in bytes, not by path, so a cohort moved or copied to another folder keeps its fingerprints while
another phantom or another scan does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metavoxel.data.records import Cohort

__all__ = ["cohort_files", "differing_subjects", "subject_fingerprints"]


def cohort_files(cohort: Cohort) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file a cohort was read from: its table, or a BIDS root's participants.tsv and
    sessions.tsv files, and every image file it names (for `metavoxel.io.outputs.check_outputs`)."""
    files: list[tuple[str, Path]] = []
    source = Path(cohort.source) if cohort.source else None
    if source is not None and source.is_dir():
        files.append(("--data (participants.tsv)", source / "participants.tsv"))
        files += [("--data (sessions.tsv)", p) for p in sorted(source.glob("sub-*/sub-*_sessions.tsv"))]
    elif source is not None:
        files.append(("--data", source))
    for record in cohort.records:
        for name in cohort.images:
            path = record.values.get(name)
            if path:
                files.append((f"--data ({name} of {record.source})", Path(path)))
    return files


def _value(value: Any, image: bool) -> Any:
    if value is None:
        return None
    if image:
        try:
            size = os.stat(value).st_size
        except OSError:
            size = None
        return [os.path.basename(value), size]
    if isinstance(value, float) and value != value:  # NaN: missing
        return None
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def subject_fingerprints(cohort: Cohort) -> dict[str, str]:
    """subject id -> 16 hex digits identifying its records' data (see the module docstring), for every subject."""
    parts: dict[str, list[Any]] = {}
    images = set(cohort.images)
    for record in cohort.records:
        values = {name: _value(record.values.get(name), name in images) for name in sorted(cohort.variables)}
        parts.setdefault(record.subject, []).append([record.session, values])
    return {subject: hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
            for subject, part in parts.items()}


def differing_subjects(recorded: Mapping[str, str], cohort: Cohort) -> dict[str, list[str]]:
    """How ``cohort`` differs from the fingerprints a run recorded: ``{"added": [...], "missing": [...],
    "changed": [...]}`` (sorted subject ids; empty lists when it is the same cohort)."""
    now = subject_fingerprints(cohort)
    return {"added": sorted(set(now) - set(recorded)), "missing": sorted(set(recorded) - set(now)),
            "changed": sorted(s for s in now.keys() & recorded.keys() if now[s] != recorded[s])}
