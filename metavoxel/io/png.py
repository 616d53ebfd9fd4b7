"""Grayscale PNG previews with the standard library only (zlib), written atomically."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from metavoxel.io.atomic import write_atomic

__all__ = ["montage", "write_png"]


def montage(images: list[np.ndarray], *, columns: int, pad: int = 1, zoom: int = 4) -> np.ndarray:
    """Tile 2D arrays (each scaled to its own [min, max]) into one uint8 image, enlarged ``zoom`` times."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = -(-len(images) // columns)
    canvas = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.float64)
    for k, img in enumerate(images):
        lo, hi = float(img.min()), float(img.max())
        scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img, dtype=np.float64)
        r, c = divmod(k, columns)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + img.shape[0], pad + c * (w + pad):pad + c * (w + pad) + img.shape[1]] = scaled
    canvas = np.kron(canvas, np.ones((zoom, zoom)))
    return (canvas * 255).round().astype(np.uint8)


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a (H, W) uint8 array as an 8-bit grayscale PNG (temporary name, then rename)."""
    path = Path(path)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))  # filter byte 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
    return path
