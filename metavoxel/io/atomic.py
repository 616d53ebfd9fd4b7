"""Atomic writes: every file metavoxel writes goes to a temporary name in the same folder, then is renamed.

A crash or kill mid-write leaves either the old file or the new one, never half a file. The file gets the
mode an ordinary ``open()`` would give it (0666 less the process umask: 0644 under the usual umask 022), so
colleagues can read a shared run; ``tempfile.mkstemp`` alone would leave it 0600. The mode is set after the
writer has run: a writer may replace the temporary file with one of its own (``safetensors.torch.save_file``
does, with mode 0600), so a mode set before would be lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "write_json", "write_text"]


def _default_mode() -> int:
    """0666 less the current umask: the mode ``open(path, "w")`` gives a new file."""
    umask = os.umask(0o022)  # reading the umask means setting it; restored on the next line
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then rename it onto ``path`` (fsynced).

    The file ends with mode 0666 less the umask, like any file ``open()`` creates (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())  # after writing: mkstemp creates 0600, and a writer may replace the file
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
