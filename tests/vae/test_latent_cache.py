"""LatentCache: encode once, re-encode exactly what changed (file content or VAE), keep it in safetensors
shards, and report corruption instead of serving it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from metavoxel.errors import CheckpointError, InputError
from metavoxel.vae import LatentCache


class CountingEncoder:
    """A fake VAE: a latent (2, 4, 4, 4) drawn from a seed made of the file's bytes; records every call."""

    def __init__(self):
        self.calls: list[list[str]] = []

    @property
    def encoded(self) -> list[str]:
        return [p for call in self.calls for p in call]

    def __call__(self, paths: list[str]) -> torch.Tensor:
        self.calls.append(list(paths))
        out = []
        for path in paths:
            with open(path, "rb") as handle:
                seed = int.from_bytes(hashlib.sha256(handle.read()).digest()[:6], "little")
            out.append(torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(out)  # (B, 2, 4, 4, 4)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(7):
        path = tmp_path / "images" / f"sub-{i}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * (100 + i))
        paths.append(str(path))
    return paths


def _no_temp_files(root) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_second_call_encodes_nothing_and_values_round_trip_exactly(tmp_path, images):
    cache, encoder = LatentCache(tmp_path / "cache"), CountingEncoder()
    first = cache.encode(images, encoder, "vaeA", batch_size=3)
    assert sorted(encoder.encoded) == sorted(images) and [len(c) for c in encoder.calls] == [3, 3, 1]
    expected = encoder(images)
    assert all(torch.equal(first[p], expected[i]) for i, p in enumerate(images))

    again = CountingEncoder()
    second = LatentCache(tmp_path / "cache").encode(images, again, "vaeA")
    assert again.calls == []
    assert list(second) == images and all(torch.equal(first[p], second[p]) for p in images)
    assert torch.equal(cache.get(images[4], "vaeA"), expected[4])
    assert _no_temp_files(tmp_path / "cache")


def test_changed_file_re_encodes_exactly_that_file(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    before = cache.encode(images, CountingEncoder(), "vaeA")
    with open(images[2], "ab") as handle:
        handle.write(b"one more byte")
    encoder = CountingEncoder()
    after = cache.encode(images, encoder, "vaeA")
    assert encoder.encoded == [images[2]]
    assert not torch.equal(before[images[2]], after[images[2]])
    assert all(torch.equal(before[p], after[p]) for p in images if p != images[2])


def test_new_vae_hash_re_encodes_all_and_keeps_the_old_entries(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    old = cache.encode(images, CountingEncoder(), "vaeA")
    encoder = CountingEncoder()
    cache.encode(images, encoder, "vaeB")
    assert sorted(encoder.encoded) == sorted(images)
    assert torch.equal(cache.get(images[0], "vaeA"), old[images[0]])
    assert cache.get(images[0], "vaeC") is None
    assert cache.stats()["vae_hashes"] == {"vaeA": 7, "vaeB": 7}


def test_identical_files_encode_once_and_renames_stay_cached(tmp_path, images):
    copy = tmp_path / "copy.nii.gz"
    copy.write_bytes(open(images[0], "rb").read())
    cache, encoder = LatentCache(tmp_path / "cache"), CountingEncoder()
    out = cache.encode([images[0], str(copy)], encoder, "vaeA")
    assert len(encoder.encoded) == 1 and torch.equal(out[images[0]], out[str(copy)])
    moved = tmp_path / "moved.nii.gz"
    (tmp_path / "images" / "sub-0.nii.gz").rename(moved)
    encoder = CountingEncoder()
    assert torch.equal(cache.encode([str(moved)], encoder, "vaeA")[str(moved)], out[images[0]])
    assert encoder.calls == []  # keyed by content, not path


def test_shards_are_safetensors_named_in_the_index(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    out = cache.encode(images, CountingEncoder(), "vaeA", shard_size=3, batch_size=3)  # 3 + 3 + 1
    shards = sorted((tmp_path / "cache" / "shards").iterdir())
    assert len(shards) == 3 and all(p.suffix == ".safetensors" for p in shards)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["format"] == "metavoxel-latent-cache" and len(index["entries"]) == 7
    stored = {}
    for shard in shards:
        stored.update(load_file(str(shard)))
    for path in images:
        key = f"{hashlib.sha256(open(path, 'rb').read()).hexdigest()}:vaeA"
        assert index["entries"][key]["shape"] == [2, 4, 4, 4]
        assert torch.equal(stored[key], out[path])
    stats = cache.stats()
    assert stats["entries"] == 7 and stats["shards"] == 3 and stats["bytes"] > 7 * 2 * 64 * 4
    assert stats["unindexed_shards"] == [] and stats["missing_shards"] == []


def test_corrupt_index_is_reported_and_repair_rebuilds_it(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    out = cache.encode(images, CountingEncoder(), "vaeA", shard_size=4)
    cache.index_path.write_text("{ broken")
    with pytest.raises(CheckpointError, match="index .* is corrupt.*repair") as info:
        cache.encode(images, CountingEncoder(), "vaeA")
    assert "\n" not in str(info.value)
    assert cache.repair() == {"entries": 7, "deleted_shards": []}
    encoder = CountingEncoder()
    again = cache.encode(images, encoder, "vaeA")
    assert encoder.calls == [] and all(torch.equal(out[p], again[p]) for p in images)


def test_corrupt_shard_is_reported_and_repair_re_encodes_only_its_entries(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    cache.encode(images, CountingEncoder(), "vaeA", shard_size=4)  # shards of 4 and 3 entries
    index = json.loads(cache.index_path.read_text())["entries"]
    damaged = sorted(cache.shard_dir.iterdir())[0]
    lost = sorted(e["source"] for e in index.values() if e["shard"] == damaged.name)
    damaged.write_bytes(damaged.read_bytes()[:-40])  # truncated data
    with pytest.raises(CheckpointError, match="shard .* is missing or corrupt.*repair"):
        cache.encode(images, CountingEncoder(), "vaeA")
    report = cache.repair()
    assert report["deleted_shards"] == [damaged.name] and report["entries"] == 7 - len(lost)
    encoder = CountingEncoder()
    cache.encode(images, encoder, "vaeA")
    assert sorted(encoder.encoded) == lost


def test_prune_keeps_only_the_current_entries(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    cache.encode(images, CountingEncoder(), "vaeA")
    cache.encode(images[:3], CountingEncoder(), "vaeB")
    assert cache.prune(images[:3], "vaeB") == 7
    assert cache.stats()["entries"] == 3 and cache.stats()["shards"] == 1
    assert cache.get(images[0], "vaeA") is None and cache.get(images[0], "vaeB") is not None


def test_bad_encoder_output_and_bad_inputs_are_refused(tmp_path, images):
    cache = LatentCache(tmp_path / "cache")
    with pytest.raises(InputError, match="expected a tensor \\(2, latent_C"):
        cache.encode(images[:2], lambda paths: torch.zeros(1, 2, 4, 4, 4), "vaeA")
    with pytest.raises(InputError, match="cannot read image"):
        cache.encode([str(tmp_path / "missing.nii.gz")], CountingEncoder(), "vaeA")
    with pytest.raises(InputError, match="vae_hash"):
        cache.encode(images, CountingEncoder(), "bad:hash")
    with pytest.raises(Exception, match="non-finite"):
        cache.encode(images[:1], lambda paths: torch.full((1, 2), float("nan")), "vaeA")
    assert not cache.index_path.exists() and _no_temp_files(tmp_path)
