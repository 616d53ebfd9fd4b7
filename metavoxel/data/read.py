"""One entry point for a cohort path: a BIDS root or a table file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from metavoxel.data.bids import read_bids
from metavoxel.data.records import Cohort
from metavoxel.data.spec import DataSpec
from metavoxel.data.table import read_table
from metavoxel.errors import InputError
from metavoxel.variables.protocol import Variable

__all__ = ["read_cohort"]


def read_cohort(path: str | Path, variables: Mapping[str, Variable], spec: DataSpec | None = None, *,
                use: str = "train") -> Cohort:
    """Read a cohort: a folder holding participants.tsv is a BIDS root (`read_bids`), a file a table
    (`read_table`). ``use`` (``train`` or ``predict``) words the note on records without an image.

    Raises:
        InputError: the path does not exist or is a folder without participants.tsv; and whatever the
            chosen reader raises.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "participants.tsv").is_file():
            return read_bids(path, variables, spec, use=use)
        raise InputError(f"{str(path)!r} is a folder without participants.tsv; give a BIDS root (with "
                         "participants.tsv) or a .tsv/.csv table file")
    if path.is_file():
        return read_table(path, variables, spec, use=use)
    raise InputError(f"cohort {str(path)!r} does not exist; give a .tsv/.csv table or a BIDS root folder")
