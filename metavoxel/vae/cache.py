"""`LatentCache`: VAE latents of image files, computed once and kept in safetensors shards.

An entry is keyed by ``(sha256 of the image file's bytes, vae_hash)`` — never by the path — so a changed
scan or a different encoder invalidates exactly its own entries (``vae_hash`` must identify everything that
changes a latent: `metavoxel.workflows.encode.cache_key` folds in the VAE weights and architecture, the latent
scale factor, the grid and the preprocessing), a moved or renamed file stays cached, and two
identical files are encoded once. Layout::

    root/index.json                     {"format": "metavoxel-latent-cache", "version": 1,
                                         "entries": {"<content sha256>:<vae_hash>":
                                                     {"shard": "shard-<id>.safetensors", "shape": [...],
                                                      "dtype": "float32", "source": "<last path seen>"}}}
    root/shards/shard-<id>.safetensors  one tensor per entry, named by its key; the metadata repeats the
                                        sources, so the index can always be rebuilt from the shards

Each `encode` call appends new shards (one per ~``shard_size`` new entries) and rewrites the index; every
file is written to a temporary name and renamed, shard before index, so a crash loses at most the entries
of the shard being written (an unindexed shard is harmless and `repair` re-indexes it).

Corruption is *reported*, not silently healed: an unreadable index or shard raises `CheckpointError`
naming the file and pointing at `LatentCache.repair`, which rebuilds the index from the readable shards
and deletes unreadable ones (their entries are re-encoded by the next `encode`). One writer at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import CheckpointError, InputError, MetavoxelError
from metavoxel.io.atomic import write_atomic, write_text

__all__ = ["CACHE_FORMAT", "LatentCache", "content_hash"]

CACHE_FORMAT, CACHE_VERSION = "metavoxel-latent-cache", 1
_log = logging.getLogger("metavoxel.vae")
_HASH = re.compile(r"[0-9A-Za-z_.-]+")

Encoder = Callable[[list[str]], torch.Tensor]


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"cannot read image {str(path)!r} to hash it ({exc.strerror}); expected an existing, "
                         "readable file — fix the path in the table") from None
    return digest.hexdigest()


class LatentCache:
    """Latents of image files keyed by (file content, VAE weights); see the module docstring.

    Args:
        root: the cache folder (created on the first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.shard_dir = self.root / "shards"

    # ---- index ------------------------------------------------------------------------------------------
    def _repair_hint(self) -> str:
        return (f"run LatentCache({str(self.root)!r}).repair() (`metavoxel encode --repair`) to rebuild the index "
                "from the readable shards, or delete the folder to re-encode everything")

    def _load_index(self) -> dict[str, dict[str, Any]]:
        if not self.index_path.is_file():
            return {}
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
            entries = index["entries"]
            ok = (index.get("format") == CACHE_FORMAT and index.get("version") == CACHE_VERSION
                  and isinstance(entries, dict)
                  and all(isinstance(e, dict) and isinstance(e.get("shard"), str) and isinstance(e.get("shape"), list)
                          for e in entries.values()))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            ok, entries = False, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if not ok:
            detail = entries if isinstance(entries, str) else "unexpected format or version"
            raise CheckpointError(f"latent cache index {str(self.index_path)!r} is corrupt ({detail}); expected the "
                                  f"{CACHE_FORMAT!r} v{CACHE_VERSION} JSON; {self._repair_hint()}")
        return entries

    def _save_index(self, entries: dict[str, dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries},
                          indent=1, sort_keys=True)
        write_text(self.index_path, text + "\n")

    @staticmethod
    def _key(content: str, vae_hash: str) -> str:
        return f"{content}:{vae_hash}"

    @staticmethod
    def _check_vae_hash(vae_hash: str) -> None:
        if not isinstance(vae_hash, str) or not _HASH.fullmatch(vae_hash):
            raise InputError(f"vae_hash must be a non-empty string of letters, digits, '_', '.', '-' (e.g. "
                             f"weights_hash(vae)), got {vae_hash!r}")

    # ---- shards -----------------------------------------------------------------------------------------
    def _read(self, wanted: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The tensors of index entries ``{key: entry}``, opening each shard once."""
        from safetensors import safe_open

        by_shard: dict[str, list[str]] = {}
        for key, entry in wanted.items():
            by_shard.setdefault(entry["shard"], []).append(key)
        out = {}
        for shard, keys in by_shard.items():
            path = self.shard_dir / shard
            try:
                with safe_open(str(path), framework="pt") as handle:
                    for key in keys:
                        out[key] = handle.get_tensor(key)
            except Exception as exc:  # missing file, damaged header, missing tensor
                raise CheckpointError(f"latent cache shard {str(path)!r} is missing or corrupt "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())}); "
                                      f"{self._repair_hint()}") from None
            for key in keys:
                if list(out[key].shape) != list(wanted[key]["shape"]):
                    raise CheckpointError(f"latent cache shard {str(path)!r}: tensor {key!r} has shape "
                                          f"{list(out[key].shape)}, the index says {wanted[key]['shape']}; "
                                          f"{self._repair_hint()}")
        return out

    def _write_shard(self, tensors: dict[str, torch.Tensor], sources: dict[str, str]) -> str:
        from safetensors.torch import save_file

        self.shard_dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex[:16]}.safetensors"
        metadata = {"format": CACHE_FORMAT, "version": str(CACHE_VERSION), "sources": json.dumps(sources)}
        write_atomic(self.shard_dir / name, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        return name

    # ---- public -----------------------------------------------------------------------------------------
    def encode(self, paths: Sequence[str], encoder: Encoder, vae_hash: str, *, batch_size: int = 4,
               shard_size: int = 256, progress: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
        """Latents of every file in ``paths``, encoding only those not cached for ``vae_hash``.

        Args:
            paths: image files; each is hashed (its bytes) on every call.
            encoder: ``encoder(batch_paths) -> (B, latent_C, *grid)``; loads, preprocesses and encodes the files
                (the caller owns preprocessing — fold its settings into ``vae_hash`` if they may change).
            vae_hash: identifies the VAE weights, e.g. ``weights_hash(vae)``.
            batch_size: files per ``encoder`` call.
            shard_size: a shard is written (and indexed) as soon as this many new entries are pending, and at
                the end; a crash loses at most the pending entries.
            progress: called as ``progress(done, total)`` after each encoder call (``total`` = files to encode).

        Returns:
            ``{str(path): latent (latent_C, *grid)}`` for every path, on the CPU, bit-exact as ``encoder`` gave them.

        Raises:
            InputError: an unreadable file, a bad ``vae_hash``, or an encoder output of the wrong batch size.
            CheckpointError: a corrupt index or shard (see `repair`).
            MetavoxelError: the encoder returned non-finite values.
        """
        self._check_vae_hash(vae_hash)
        if batch_size < 1 or shard_size < 1:
            raise InputError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
        keys = {str(p): self._key(content_hash(p), vae_hash) for p in paths}
        entries = self._load_index()
        found = self._read({k: entries[k] for k in set(keys.values()) if k in entries})
        todo: dict[str, str] = {}  # key -> first path with that content
        for path, key in keys.items():
            if key not in found:
                todo.setdefault(key, path)
        pending: dict[str, torch.Tensor] = {}
        sources: dict[str, str] = {}
        items = list(todo.items())
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch_paths = [path for _key, path in chunk]
            latents = encoder(batch_paths)
            if not isinstance(latents, torch.Tensor) or latents.ndim < 2 or latents.shape[0] != len(chunk):
                got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise InputError(f"the encoder returned {got} for {len(chunk)} files; expected a tensor "
                                 f"({len(chunk)}, latent_C, *grid) — one latent per file, in order")
            if latents.is_floating_point() and not torch.isfinite(latents).all():
                raise MetavoxelError(f"the encoder returned non-finite latents for {batch_paths}; expected finite "
                                     "values — check those images and the VAE weights")
            for i, (key, path) in enumerate(chunk):
                pending[key] = latents[i].detach().cpu().contiguous().clone()  # own storage: safetensors needs it
                sources[key] = path
            if len(pending) >= shard_size:
                found.update(pending)
                self._flush(entries, pending, sources)
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))
        if pending:
            found.update(pending)
            self._flush(entries, pending, sources)
        return {path: found[key] for path, key in keys.items()}

    def _flush(self, entries: dict[str, dict[str, Any]], pending: dict[str, torch.Tensor],
               sources: dict[str, str]) -> None:
        """Write ``pending`` as one shard, add it to ``entries``, save the index, and empty ``pending``."""
        shard = self._write_shard(pending, {k: sources[k] for k in pending})
        for key, tensor in pending.items():
            entries[key] = {"shard": shard, "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix(
                "torch."), "source": sources[key]}
        self._save_index(entries)
        _log.info("latent cache: wrote %d entries to %s", len(pending), shard)
        pending.clear()

    def get(self, path: str | Path, vae_hash: str) -> torch.Tensor | None:
        """The cached latent of ``path``'s current content under ``vae_hash``, or None if not cached."""
        self._check_vae_hash(vae_hash)
        key = self._key(content_hash(path), vae_hash)
        entries = self._load_index()
        return self._read({key: entries[key]})[key] if key in entries else None

    def _shard_files(self) -> list[Path]:
        return sorted(self.shard_dir.glob("shard-*.safetensors")) if self.shard_dir.is_dir() else []

    def stats(self) -> dict[str, Any]:
        """Counts for humans: entries (per vae_hash), shards, bytes on disk, unindexed and missing shards."""
        entries = self._load_index()
        files = {p.name: p.stat().st_size for p in self._shard_files()}
        used = {e["shard"] for e in entries.values()}
        per_vae: dict[str, int] = {}
        for key in entries:
            per_vae[key.split(":", 1)[1]] = per_vae.get(key.split(":", 1)[1], 0) + 1
        return {"root": str(self.root), "entries": len(entries), "vae_hashes": per_vae, "shards": len(files),
                "bytes": sum(files.values()), "unindexed_shards": sorted(set(files) - used),
                "missing_shards": sorted(used - set(files))}

    def prune(self, paths: Iterable[str | Path], vae_hash: str) -> int:
        """Drop every entry except those of the current contents of ``paths`` under ``vae_hash``; delete the
        shards left with no entry. Returns the number of entries dropped."""
        self._check_vae_hash(vae_hash)
        keep = {self._key(content_hash(p), vae_hash) for p in paths}
        entries = self._load_index()
        kept = {k: e for k, e in entries.items() if k in keep}
        self._save_index(kept)
        used = {e["shard"] for e in kept.values()}
        for path in self._shard_files():
            if path.name not in used:
                path.unlink()
        return len(entries) - len(kept)

    def repair(self) -> dict[str, Any]:
        """Rebuild ``index.json`` from the shards: readable shards are re-indexed, unreadable ones and leftover
        temporary files are deleted (their entries are re-encoded by the next `encode`).

        Returns:
            ``{"entries": n, "deleted_shards": [names]}``.
        """
        from safetensors import safe_open

        entries: dict[str, dict[str, Any]] = {}
        deleted = []
        for path in self._shard_files():
            try:
                with safe_open(str(path), framework="pt") as handle:
                    sources = json.loads((handle.metadata() or {}).get("sources", "{}"))
                    found = {}
                    for key in handle.keys():
                        tensor = handle.get_tensor(key)  # reads the data: a truncated shard fails here
                        found[key] = {"shard": path.name, "shape": list(tensor.shape), "source": sources.get(key, ""),
                                      "dtype": str(tensor.dtype).removeprefix("torch.")}
            except Exception as exc:  # damaged header or data
                _log.warning("latent cache: deleting unreadable shard %s (%s)", path, type(exc).__name__)
                path.unlink()
                deleted.append(path.name)
                continue
            entries.update(found)
        for tmp in list(self.root.glob(".*.tmp")) + list(self.shard_dir.glob(".*.tmp")):  # left by a crash
            tmp.unlink()
        self._save_index(entries)
        return {"entries": len(entries), "deleted_shards": deleted}
