"""What a refused command must look like: its exit code and one `error:` line on stderr, never a traceback."""

from __future__ import annotations

from metavoxel.cli import run


def one_line_error(argv: list, capsys, code: int = 2) -> str:
    """Run ``metavoxel argv`` (items made str); assert it exits ``code`` with one stderr line; return stderr."""
    got = run([str(a) for a in argv])
    err = capsys.readouterr().err
    assert got == code and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err
