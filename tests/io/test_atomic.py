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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_a_writer_that_replaces_the_file_still_gets_the_mode(tmp_path, umask, mode):
    """safetensors' save_file writes a new file (mode 0600) over the temporary one: the mode is set after it."""
    import torch
    from safetensors.torch import save_file

    def replace(tmp: str) -> None:  # as save_file does
        fd = os.open(tmp + ".new", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        os.replace(tmp + ".new", tmp)

    old = os.umask(umask)
    try:
        written = [write_atomic(tmp_path / "a.bin", replace),
                   write_atomic(tmp_path / "w.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, tmp))]
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [mode] * 2
