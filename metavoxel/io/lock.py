"""One writer per folder: an OS lock (``fcntl.flock``) on a hidden lock file inside it.

`metavoxel train` holds the lock of its run directory from before it writes anything until it returns, so a
second ``train`` into the same ``--out`` is refused in one line instead of rewriting the run's files beside
the first. The kernel releases a ``flock`` when its process ends, however it ends, so a crashed or killed
run never leaves the folder locked; the lock file itself stays (it holds the holder's pid, for the message)
and is never the lock. Linux and macOS; on a system without ``fcntl`` the lock is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metavoxel.errors import InputError

__all__ = ["LOCK_FILE", "FolderLocked", "writer_lock"]

LOCK_FILE = ".metavoxel.lock"


class FolderLocked(InputError):
    """Another process holds the folder's writer lock."""


@contextmanager
def writer_lock(folder: str | Path, *, what: str) -> Iterator[Path]:
    """Hold the writer lock of ``folder`` (created if missing) for the block; yields the lock file.

    Args:
        folder: the folder one process at a time may write.
        what: the folder in messages, e.g. ``run directory 'runs/joint'``.

    Raises:
        FolderLocked: another living process holds the lock (named by its pid); nothing is waited for.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no OS lock to take
        yield Path(folder) / LOCK_FILE
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as any new file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderLocked(f"{what} is being written by another metavoxel process ({holder}); wait for it to "
                               "finish (or stop it), or choose another --out") from None
        try:  # the file may have been removed (and another made) between open and lock: lock the one at `path`
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
