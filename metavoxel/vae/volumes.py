"""`VolumeSet`: the images a VAE trains or validates on — one tensor, or any indexable dataset of volumes —
read a minibatch at a time, checked once for shape and per batch for the [0, 1] intensity range."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from metavoxel.errors import InputError

__all__ = ["VolumeSet", "random_crop"]

_RANGE_TOLERANCE = 1e-3  # resampling can overshoot [0, 1] by rounding


class VolumeSet:
    """Uniform access to a set of same-shaped images with values in [0, 1].

    Args:
        images: a tensor (N, C, *shape), or an object with ``len`` and integer indexing whose items are
            tensors (C, *shape) (e.g. a ``torch.utils.data.Dataset`` or a list); items are read lazily.
        name: what the set is called in error messages (``"train_images"``).
    """

    def __init__(self, images: Any, name: str):
        self.name = name
        if isinstance(images, torch.Tensor):
            if images.ndim not in (4, 5):
                raise InputError(f"{name}: expected a tensor (N, C, X, Y[, Z]), got shape {tuple(images.shape)}; "
                                 "add the channel axis (images[:, None]) or stack the volumes")
            self._tensor: torch.Tensor | None = images
            self._items: Sequence[Any] | None = None
            self.item_shape = tuple(images.shape[1:])
        elif hasattr(images, "__len__") and hasattr(images, "__getitem__"):
            self._tensor, self._items = None, images
            self.item_shape = tuple(self._item(0).shape) if len(images) else ()
        else:
            raise InputError(f"{name}: expected a tensor (N, C, *shape) or an indexable dataset of (C, *shape) "
                             f"tensors, got {type(images).__name__}")
        if len(self) and len(self.item_shape) not in (3, 4):
            raise InputError(f"{name}: each image must be (C, X, Y[, Z]), got shape {self.item_shape}; add the "
                             "channel axis")

    def __len__(self) -> int:
        return len(self._tensor) if self._tensor is not None else len(self._items)

    @property
    def channels(self) -> int:
        return self.item_shape[0]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.item_shape[1:]

    def _item(self, i: int) -> torch.Tensor:
        item = self._items[i]
        if isinstance(item, (tuple, list)):  # (image, label)-style datasets: the image comes first
            item = item[0]
        if isinstance(item, dict):
            raise InputError(f"{self.name}: item {i} is a dict; give a dataset whose items are (C, *shape) tensors")
        return torch.as_tensor(item)

    def batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` as float32 (B, C, *shape), checked for shape and range.

        Raises:
            InputError: an image of another shape, or values outside [0, 1].
        """
        indices = [int(i) for i in indices]
        if self._tensor is not None:
            x = self._tensor[indices]
        else:
            items = [self._item(i) for i in indices]
            for i, item in zip(indices, items):
                if tuple(item.shape) != self.item_shape:
                    raise InputError(f"{self.name}: image {i} has shape {tuple(item.shape)}, image 0 has "
                                     f"{self.item_shape}; resample/crop every image to one grid")
            x = torch.stack(items)
        x = x.float()
        lo, hi = x.min().item(), x.max().item()
        if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
            raise InputError(f"{self.name}: intensities must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                             f"(images {indices[:4]}{'...' if len(indices) > 4 else ''}); rescale them first "
                             "(e.g. MONAI ScaleIntensityRangePercentiles with b_min=0, b_max=1, clip=True)")
        return x

    def head(self, n: int) -> VolumeSet:
        """The first ``n`` images (all of them when there are fewer), as a set of the same name."""
        n = min(n, len(self))
        if self._tensor is not None:
            return VolumeSet(self._tensor[:n], self.name)
        return VolumeSet([self._items[i] for i in range(n)], self.name)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every image once, in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))


def random_crop(x: torch.Tensor, size: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """An independent random crop of ``size`` from each image of a batch.

    Args:
        x: (B, C, *shape) images.
        size: spatial crop size, one entry per spatial axis, each <= the image's.
        generator: CPU generator drawing the corners.

    Returns:
        (B, C, *size) crops.
    """
    shape = x.shape[2:]
    crops = []
    for b in range(x.shape[0]):
        corner = [int(torch.randint(0, s - p + 1, (1,), generator=generator)) for s, p in zip(shape, size)]
        region = tuple(slice(c, c + p) for c, p in zip(corner, size))
        crops.append(x[(b, slice(None), *region)])
    return torch.stack(crops)  # (B, C, *size)
