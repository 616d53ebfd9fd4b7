"""A folder of outputs as one whole: written into a staging folder beside it, then swapped in when complete.

A command that writes a folder of files (``sample``, ``evaluate``, ``phantom``) writes them into a hidden
sibling ``.<name>.<random>.tmp`` and renames it onto the target at the end, so the target holds this run's
files or the previous run's, never a mix: a failure, a kill or Ctrl-C mid-write leaves the previous folder
as it was (and at most the hidden staging folder of a killed run). Files of an earlier run that this run does
not write go with the earlier folder instead of staying beside the new files.

Because the target is replaced as a whole, `check_replaceable` first makes sure it is the command's own: a
new or empty folder, or one holding the command's marker file (``samples.json``, ``metrics.json``,
``phantom.json``) and nothing the command would not have written. Anything else — a file, the user's folder
of scans, the current directory — is refused before any work, and `metavoxel.io.outputs.check_outputs`
refuses a target that holds one of the command's inputs.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from metavoxel.errors import InputError

__all__ = ["check_replaceable", "staged_folder", "swap_in"]


def check_replaceable(out: str | Path, *, marker: str, command: str, owned: Sequence[str] = (),
                      option: str = "--out") -> None:
    """Refuse an output folder this command may not replace (call it before any work).

    Args:
        out: the target folder.
        marker: the file every output of the command holds (its summary), e.g. ``samples.json``.
        command: the command, for messages (``metavoxel sample``).
        owned: `fnmatch` patterns of every other name the command writes into the folder; a folder holding any
            other entry is the user's, not an earlier output, and is refused. Empty: any entry is accepted
            beside the marker.
        option: the option that names ``out``.

    Raises:
        InputError: ``out`` is a file, a non-empty folder without ``marker``, or holds entries the command does
            not write; one line with the fix.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {str(out)!r} is a file; {command} writes a folder of files there: give a folder "
                         "path (new, or an earlier output of the command)")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if marker not in entries:
        raise InputError(f"{option} {str(out)!r} is a folder that {command} did not write (it has no {marker}; it "
                         f"holds {_some(entries)}); the output replaces the folder as a whole, so give a new or "
                         "empty folder")
    if owned:
        foreign = [e for e in entries if e != marker and not any(fnmatch.fnmatchcase(e, p) for p in owned)]
        if foreign:
            raise InputError(f"{option} {str(out)!r} holds {_some(foreign)}, which {command} does not write; the new "
                             "output replaces the folder as a whole, so move that out or give another folder")


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more


@contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """A new hidden folder beside ``out`` to write the outputs into; swapped in for ``out`` (`swap_in`) when the
    block completes, removed when it raises (also on KeyboardInterrupt), so ``out`` is never left half-written.

    The staging folder gets the mode any new folder gets (the umask's), unlike ``tempfile.mkdtemp``'s 0700. An
    ``out`` that is a symlink to a folder is written where it points (the link stays).
    """
    out = Path(out).expanduser()
    if out.is_symlink():
        out = Path(os.path.realpath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    staging.mkdir()
    try:
        yield staging
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap_in(staging: Path, out: Path) -> None:
    """Rename ``staging`` onto ``out``; an existing ``out`` is moved aside first and deleted after (restored if
    the second rename fails)."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.{secrets.token_hex(6)}.old"
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
