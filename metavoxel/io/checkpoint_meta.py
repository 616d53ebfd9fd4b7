"""The JSON half of a safetensors + JSON checkpoint folder, read and checked with one-line errors.

The VAE (`metavoxel.vae.checkpoint`) and the baselines (`metavoxel.baselines.checkpoint`) keep their
metadata this way; each names its format, version and field checks, and this module says what is wrong
the same way for both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from metavoxel.errors import CheckpointError

__all__ = ["finite_number", "read_checkpoint_meta"]


def finite_number(v: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_checkpoint_meta(directory: Path, meta_file: str, *, fmt: str, version: int | tuple[int, ...], what: str,
                         writer: str,
                         checks: Callable[[dict[str, Any]], Mapping[str, Callable[[Any], bool]]]) -> dict[str, Any]:
    """``directory / meta_file`` as a dict, after checking it exists, parses, and has the format and version.

    Args:
        version: the format version this metavoxel reads, or the versions (any other is refused).
        what: the checkpoint's name in messages ("VAE", "baseline").
        writer: what writes such folders, for the remedy ("`metavoxel train-vae` (save_vae)").
        checks: given the parsed metadata, a validity test per required field.

    Raises:
        CheckpointError: one line naming the file, what is wrong and the fix.
    """
    path = directory / meta_file
    if not path.is_file():
        raise CheckpointError(f"no {meta_file} in {str(directory)!r}; expected a {what} checkpoint folder written "
                              f"by {writer}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is not readable JSON ({' '.join(str(exc).split())}); re-save the "
                              f"{what}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{str(path)!r} is not a metavoxel {what} checkpoint (expected format {fmt!r}, got "
                              f"{got!r}); point at the folder written by {writer}")
    versions = (version,) if isinstance(version, int) else tuple(version)
    if meta.get("version") not in versions or isinstance(meta.get("version"), bool):
        reads = " or ".join(str(v) for v in versions)
        raise CheckpointError(f"{str(path)!r} has format version {meta.get('version')!r}, this metavoxel reads "
                              f"version {reads}; use the metavoxel that wrote it or re-save the {what}")
    for key, ok in checks(meta).items():
        if not ok(meta.get(key)):
            raise CheckpointError(f"{str(path)!r}: field {key!r} is {meta.get(key)!r}, which is not valid; the file "
                                  f"was edited or is damaged — re-save the {what}")
    return meta
