"""Atomic writes: colleagues can read what metavoxel writes (mode 0666 less the umask, not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from metavoxel.io.atomic import write_atomic, write_json, write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = [write_text(tmp_path / "a.txt", "x"), write_json(tmp_path / "b.json", {"a": 1}),
                   write_atomic(tmp_path / "c.bin", lambda tmp: open(tmp, "wb").write(b"\0"))]
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [mode] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.bin"]  # no temporary left


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(tmp: str) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.bin", fail)
    assert list(tmp_path.iterdir()) == []
