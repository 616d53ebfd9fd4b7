"""What a MONAI bundle's preprocessing transforms say its autoencoder expects: grid, spacing, orientation and
intensity scaling (`declared_input`), read from the transforms' resolved arguments and, for what they leave
unstated, from ``metadata.json``'s ``network_data_format``.

Only deterministic transforms count (a ``Rand*`` crop is augmentation, not the input grid). The dictionary
(``...d``) and array forms read alike. The first transform of a kind wins: callers list the config holding the
network first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from metavoxel.vae.expected_input import ExpectedInput, IntensityScaling

__all__ = ["TRANSFORMS", "declared_input", "transform_name"]


def _numbers(value: Any, dims: int) -> list[float] | None:
    """A per-axis list from a scalar or a sequence of ``dims`` numbers; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return [float(value)] * dims
    if isinstance(value, (list, tuple)) and len(value) == dims and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def _pair(a: Any, b: Any) -> tuple[float, float] | None:
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return (float(a), float(b)) if ok else None


def _orientation(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
    codes = args.get("axcodes")
    return ("orientation", codes.upper()) if isinstance(codes, str) and len(codes) == dims else None


def _spacing(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
    pixdim = _numbers(args.get("pixdim"), dims)
    return ("spacing", pixdim) if pixdim and all(p > 0 for p in pixdim) else None


def _grid(argument: str) -> Callable[[dict[str, Any], int], tuple[str, Any] | None]:
    def read(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
        size = _numbers(args.get(argument), dims)
        if not size or any(s <= 0 or s != int(s) for s in size):  # -1 keeps an axis: the grid is not fixed
            return None
        return "shape", [int(s) for s in size]
    return read


def _scaling(method: str, lower: str, upper: str) -> Callable[[dict[str, Any], int], tuple[str, Any] | None]:
    """A reader of ``ScaleIntensityRangePercentiles`` (percentiles ``lower``/``upper`` -> [b_min, b_max]) or
    ``ScaleIntensityRange`` (the window ``a_min``/``a_max`` -> [b_min, b_max])."""
    def read(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
        source = _pair(args.get(lower), args.get(upper))
        if source is None:
            return None
        return "intensity", IntensityScaling(method=method, **{method: source}, clip=bool(args.get("clip", False)),
                                             range=_pair(args.get("b_min"), args.get("b_max")))
    return read


def _minmax(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
    bounds = _pair(args.get("minv", 0.0), args.get("maxv", 1.0))  # MONAI's defaults
    return ("intensity", IntensityScaling(method="minmax", range=bounds)) if bounds else None


def _zscore(args: dict[str, Any], dims: int) -> tuple[str, Any] | None:
    return "intensity", IntensityScaling(method="zscore")


#: MONAI transform (array form) -> reader of its resolved arguments: ``(field, value)`` or None.
TRANSFORMS: dict[str, Callable[[dict[str, Any], int], tuple[str, Any] | None]] = {
    "Orientation": _orientation,
    "Spacing": _spacing,
    "CenterSpatialCrop": _grid("roi_size"),
    "ResizeWithPadOrCrop": _grid("spatial_size"),
    "Resize": _grid("spatial_size"),
    "ScaleIntensityRangePercentiles": _scaling("percentiles", "lower", "upper"),
    "ScaleIntensityRange": _scaling("window", "a_min", "a_max"),
    "ScaleIntensity": _minmax,
    "NormalizeIntensity": _zscore,
}


def transform_name(target: str) -> str | None:
    """The `TRANSFORMS` entry a ``_target_`` names (``"monai.transforms.Spacingd"`` -> ``"Spacing"``), or None."""
    base = target.rsplit(".", 1)[-1]
    if base in TRANSFORMS:
        return base
    return base[:-1] if base.endswith("d") and base[:-1] in TRANSFORMS else None


def _image_format(metadata: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    formats = metadata.get("network_data_format")
    if not isinstance(formats, dict):
        return None
    for side in ("inputs", "outputs"):
        entries = formats.get(side)
        for name, entry in (entries.items() if isinstance(entries, dict) else ()):
            if isinstance(entry, dict) and entry.get("type") == "image":
                return f"network_data_format.{side}.{name}", entry
    return None


def declared_input(transforms: Iterable[tuple[str, str, dict[str, Any]]], metadata: dict[str, Any],
                   spatial_dims: int) -> ExpectedInput:
    """The expected input the transforms and metadata state.

    Args:
        transforms: ``(where, name, arguments)`` per transform in pipeline order: ``where`` names it in the
            record's ``sources`` (``"configs/inference.json: preprocessing::6 (Spacingd)"``), ``name`` is a
            `TRANSFORMS` key, ``arguments`` its resolved constructor arguments.
        metadata: the parsed metadata.json (``{}`` without one).
        spatial_dims: the network's, for scalar sizes and spacings.
    """
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for where, name, arguments in transforms:
        if name not in TRANSFORMS:
            continue
        read = TRANSFORMS[name](arguments, spatial_dims)
        if read is not None and read[0] not in found:
            found[read[0]], sources[read[0]] = read[1], where
    image = _image_format(metadata)
    if image is not None:
        where, entry = image
        shape = entry.get("spatial_shape")
        if "shape" not in found and isinstance(shape, list) and len(shape) == spatial_dims and all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            found["shape"], sources["shape"] = list(shape), f"configs/metadata.json: {where}.spatial_shape"
        value_range = entry.get("value_range")
        bounds = _pair(*value_range) if isinstance(value_range, list) and len(value_range) == 2 else None
        if "intensity" not in found and bounds is not None:
            found["intensity"] = IntensityScaling(method="stated", range=bounds)
            sources["intensity"] = f"configs/metadata.json: {where}.value_range"
    return ExpectedInput(**found, sources=sources)
