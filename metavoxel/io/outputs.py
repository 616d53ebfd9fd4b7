"""Nothing a command reads is written over: the one check of what a command writes against what it reads.

Every command that writes calls `check_outputs` before any work, with the files (or folders) it reads — its
inputs, tables, masks, cohort files, the model's own files, the image files a table names — and the paths
it will write: files it replaces whole, and folders it replaces whole (`metavoxel.io.staging`). A path the
user gave is compared as written (absolute, normalised: ``a/../t.tsv`` is ``t.tsv``) and as resolved
(symlinks followed), and existing files by identity (`os.path.samefile`, so a hard link of an input is that
input). What would be written over is refused in one line naming both options, and nothing is written.

Example: ``metavoxel predict --data t20.tsv --out t20.tsv`` is refused before the model is loaded, and
``metavoxel sample --fix image=samples/image_sample00.nii.gz`` with the default ``--out samples`` is refused,
because the new samples replace the folder holding the scan being inpainted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from metavoxel.errors import InputError

__all__ = ["Labelled", "check_outputs"]

Labelled = tuple[str, "str | os.PathLike[str]"]  # (the option or file that names it, e.g. "--data", the path)


def _forms(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``path`` as written (absolute, normalised, links kept) and resolved (every symlink followed)."""
    return Path(os.path.abspath(path)), Path(os.path.realpath(path))


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of an existing file — hard links of one file share it — or None."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _shown(path: str | os.PathLike[str]) -> str:
    return repr(os.fspath(path))


def check_outputs(reads: Iterable[Labelled], files: Iterable[Labelled] = (), folders: Iterable[Labelled] = ()) -> None:
    """Refuse, before any work, to write over anything the command reads.

    Args:
        reads: ``(what, path)`` of every file — or folder, when its files are not known one by one — the command
            reads (a None path is skipped); ``what`` names the option (``"--data"``, ``"--fix image"``,
            ``"--model (spec.json)"``).
        files: ``(what, path)`` of every file the command writes: refused when it is one of ``reads`` (the same
            path, a symlink to it, or a hard link of it).
        folders: ``(what, path)`` of every folder the command replaces as a whole: refused when it holds (or
            is) one of ``reads``.

    Raises:
        InputError: one line naming the output, the input it would replace and the fix.
    """
    inputs = [(what, path, _forms(path)) for what, path in reads if path is not None]
    identities: dict[int, tuple[int, int] | None] = {}  # each input stat-ed once, and only when an output exists
    for out_what, out in files:
        out_forms, out_id = set(_forms(out)), _identity(out)
        for k, (what, path, forms) in enumerate(inputs):
            if out_id is not None and k not in identities:
                identities[k] = _identity(path)
            if out_forms.intersection(forms) or (out_id is not None and identities[k] == out_id):
                raise InputError(f"{out_what} {_shown(out)} is the file {what} reads ({_shown(path)}); writing there "
                                 f"would replace it: choose another {out_what}")
    for out_what, out in folders:
        out_forms = _forms(out)
        for what, path, forms in inputs:
            if any(p.is_relative_to(f) for p in forms for f in out_forms):
                raise InputError(f"{out_what} {_shown(out)} holds {what} {_shown(path)}, and this command replaces "
                                 f"that folder as a whole: choose another {out_what} (a new folder) or move the "
                                 "input out of it")
