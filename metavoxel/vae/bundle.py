"""A MONAI bundle's autoencoder as its config declares it: the network definition, the weights file the config loads
into it, the preprocessing its transforms apply, and the bundle's name and version.

A bundle (https://docs.monai.io/en/stable/mb_specification.html) is a folder with ``configs/`` (JSON or YAML) and
``models/`` (weights), and ``configs/metadata.json``. The config is read with `monai.bundle.ConfigParser`, which
resolves ``@id`` references, ``%file::id`` macros and ``$`` expressions the way ``python -m monai.bundle run``
does, with ``bundle_root`` set to the bundle's folder. Only the items the autoencoder needs are evaluated; like
running the bundle, that may evaluate Python expressions written in its config, so import bundles you trust.

- The network is the config item ``autoencoder_def`` (else ``network_def``, or the key given): a mapping whose
  ``_target_`` names the class.
- The weights are the file the config itself loads into that network: an item calling
  ``@<network>.load_state_dict(...)`` or ``.load_old_state_dict(...)`` (directly, through an alias such as
  ``"$@autoencoder_def.to(@device)"``, or through a function item) on ``torch.load(@<path item>)``; a
  ``['key']`` after the loaded checkpoint names the state dict inside it. Failing that, the only weights file in
  ``models/``.
- The preprocessing is read from the deterministic transforms in the configs (``Orientation[d]``,
  ``Spacing[d]``, ``CenterSpatialCrop[d]``/``ResizeWithPadOrCrop[d]``/``Resize[d]``,
  ``ScaleIntensityRangePercentiles[d]``/``ScaleIntensityRange[d]``/``ScaleIntensity[d]``/``NormalizeIntensity[d]``),
  first from the config holding the network, then the others; what they leave unstated is taken from
  ``metadata.json``'s ``network_data_format`` (its image ``spatial_shape`` and ``value_range``) when given.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metavoxel.errors import InputError
from metavoxel.vae.bundle_transforms import declared_input, transform_name
from metavoxel.vae.expected_input import ExpectedInput

__all__ = ["BundleNetwork", "CONFIG_SUFFIXES", "NETWORK_KEYS", "WEIGHT_SUFFIXES", "read_bundle"]

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
NETWORK_KEYS = ("autoencoder_def", "network_def")
_NOT_CONFIGS = {"metadata.json"}
_REF = r"@([A-Za-z0-9_]+(?:(?:::|#)[A-Za-z0-9_]+)*)"
_TORCH_LOAD = re.compile(r"torch\.load\(\s*" + _REF)


@dataclass
class BundleNetwork:
    """The autoencoder a bundle's config declares.

    Attributes:
        target: the ``_target_`` class name as written.
        arguments: its constructor arguments, references resolved (no ``_target_``).
        root: the bundle folder (``bundle_root``).
        config: the config file the definition was read from; ``key`` its id there.
        weights: the weights file the config loads into it, or None when it names none.
        state_key: the key of the state dict inside that checkpoint, when the config indexes it.
        expects: the preprocessing the configs and metadata declare.
        name, version: from metadata.json (name: the folder's name when it has none).
        configs: every config file read.
    """

    target: str
    arguments: dict[str, Any]
    root: Path
    config: Path
    key: str
    weights: Path | None
    state_key: str | None
    expects: ExpectedInput
    name: str
    version: str | None
    configs: list[Path] = field(default_factory=list)


def _configs(source: Path, config: Path | None) -> tuple[Path, list[Path]]:
    """The bundle root and its config files, the network's likeliest first (inference, then the rest)."""
    if source.is_file():
        root = source.parent.parent if source.parent.name == "configs" else source.parent
        return root, [source]
    if not source.is_dir():
        raise InputError(f"{str(source)!r} does not exist; give a MONAI bundle folder (with configs/) or a config file")
    found = sorted(p for p in (source / "configs").rglob("*") if p.is_file() and p.suffix in CONFIG_SUFFIXES
                   and p.name not in _NOT_CONFIGS) if (source / "configs").is_dir() else []
    if config is not None:
        chosen = config if config.is_absolute() else source / config
        if not chosen.is_file():
            raise InputError(f"--config {str(config)!r} is not a file in {str(source)!r}; configs there: "
                             f"{', '.join(str(p.relative_to(source)) for p in found) or 'none'}")
        return source, [chosen]
    if not found:
        raise InputError(f"{str(source)!r} has no configs/*.json or *.yaml; a MONAI bundle keeps its network "
                         "definition there — give the bundle folder, or the config file with --weights")
    found.sort(key=lambda p: (len(p.relative_to(source / "configs").parts), not p.stem.startswith("inference"),
                              p.name))
    return source, found


def _parser(path: Path, root: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(path))
    except Exception as exc:  # json/yaml raise their own types
        raise InputError(f"{str(path)!r} is not a readable JSON/YAML config ({' '.join(str(exc).split())[:200]}); "
                         "fix or remove it, or name another with --config") from None
    if not isinstance(parser.get(), dict):
        raise InputError(f"{str(path)!r} holds a {type(parser.get()).__name__}, not a config mapping")
    parser["bundle_root"] = str(root.resolve())  # absolute: items are resolved inside the bundle folder
    return parser


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    """``contextlib.chdir`` (Python 3.11) for 3.10: MONAI opens ``%file`` macros relative to the working folder."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _resolve(parser, item: str, where: str) -> Any:
    try:
        with _working_directory(Path(parser["bundle_root"])):  # %macros and relative paths start at the bundle
            return parser.get_parsed_content(item, instantiate=False)
    except Exception as exc:
        raise InputError(f"{where}: cannot resolve {item!r} ({' '.join(str(exc).split())[:200]}); the config "
                         "refers to something missing here — name the network with --network or give its "
                         "arguments in a config of their own") from None


def _strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(id, text) for every string in a config tree; ids joined with ``::`` as MONAI does."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        ident = f"{prefix}::{key}" if prefix else str(key)
        if isinstance(value, str):
            yield ident, value
        else:
            yield from _strings(value, ident)


def _normal(ident: str) -> str:
    return ident.replace("#", "::")


def _weights_item(config: dict, key: str) -> tuple[str, str | None] | None:
    """The id of the item holding the path the config loads into network ``key``, and the state dict's key inside
    the checkpoint when the config indexes it (see the module docstring)."""
    strings = {_normal(i): s for i, s in _strings(config)}
    aliases, grew = {key}, True
    while grew:  # "@autoencoder_def", "$@autoencoder_def.to(@device)", and aliases of those
        new = {i for i, s in strings.items() if i not in aliases and any(
            re.fullmatch(rf"\$?@{re.escape(a)}(\.to\([^()]*\))?", s.strip()) for a in aliases)}
        aliases, grew = aliases | new, bool(new)
    loads = rf"@(?:{'|'.join(re.escape(a) for a in aliases)})\.load_(?:old_)?state_dict"
    calls = [s for s in strings.values() if re.search(loads + r"\(", s)]
    functions = [i for i, s in strings.items() if re.search(loads + r"(?!\w|\()", s)]
    calls += [s for s in strings.values() for f in functions if f"@{f}(" in s]
    for call in calls:
        direct = _TORCH_LOAD.search(call)
        if direct:
            return _normal(direct.group(1)), None
        for ref in re.findall(_REF, call):
            loaded = _TORCH_LOAD.search(strings.get(_normal(ref), ""))
            if loaded:
                index = re.search(rf"@{re.escape(ref)}\[\s*['\"]([^'\"]+)['\"]\s*\]", call)
                return _normal(loaded.group(1)), index.group(1) if index else None
    return None


def _find_network(configs: list[Path], root: Path, key: str | None):
    for path in configs:
        parser = _parser(path, root)
        raw = parser.get()
        keys = [key] if key is not None else [k for k in NETWORK_KEYS if k in raw]
        for k in keys:
            if k not in raw:
                continue
            while isinstance(raw[k], str) and re.fullmatch(r"@\w+", raw[k].strip()) and raw[k].strip()[1:] in raw:
                k = raw[k].strip()[1:]  # "network_def": "@autoencoder_def"
            return parser, path, k
    names = f"{key!r}" if key is not None else " or ".join(repr(k) for k in NETWORK_KEYS)
    raise InputError(f"no {names} in {', '.join(repr(str(p)) for p in configs)}; name the autoencoder's config item "
                     "with --network")


def read_bundle(source: str | Path, *, config: str | Path | None = None, key: str | None = None) -> BundleNetwork:
    """Read the autoencoder a MONAI bundle (or one config file) declares; nothing is instantiated or loaded.

    Args:
        source: the bundle folder, or a config file (JSON/YAML) holding the network definition.
        config: within a bundle, the config file to read (default: every config, inference first).
        key: the network's config item (default: ``autoencoder_def``, else ``network_def``).

    Raises:
        InputError: no folder or config, a config that does not parse, no network item, an item that is not a
            ``_target_`` mapping, or references that do not resolve (one line each).
    """
    source = Path(source)
    root, configs = _configs(source, None if config is None else Path(config))
    parser, path, key = _find_network(configs, root, key)
    where = f"{path}::{key}"
    component = _resolve(parser, key, where)
    definition = component.get_config() if hasattr(component, "get_config") else component
    if not isinstance(definition, dict) or not isinstance(definition.get("_target_"), str):
        raise InputError(f"{where} is not a network definition (a mapping with _target_), got "
                         f"{type(definition).__name__}; name the autoencoder's item with --network")
    arguments = {k: v for k, v in definition.items() if not k.startswith("_")}
    weights, state_key = None, None
    found = _weights_item(parser.get(), key)
    if found is not None:
        value = _resolve(parser, found[0], str(path))
        if isinstance(value, (str, Path)):
            weights = Path(value) if Path(value).is_absolute() else (root / value)
            state_key = found[1]
    if weights is None:
        files = sorted(p for p in (root / "models").glob("*") if p.suffix in WEIGHT_SUFFIXES) \
            if (root / "models").is_dir() else []
        weights = files[0] if len(files) == 1 else None
    metadata = _metadata(root)
    spatial_dims = arguments.get("spatial_dims")
    expects = declared_input(_transforms([path] + [p for p in configs if p != path], root), metadata,
                             spatial_dims if isinstance(spatial_dims, int) else 3)
    return BundleNetwork(target=definition["_target_"], arguments=arguments, root=root, config=path, key=key,
                         weights=weights, state_key=state_key, expects=expects,
                         name=str(metadata.get("name") or root.name), version=metadata.get("version"),
                         configs=configs)


def _metadata(root: Path) -> dict[str, Any]:
    path = root / "configs" / "metadata.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{str(path)!r} is not readable JSON; fix it or remove it") from None
    return data if isinstance(data, dict) else {}


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """(id, mapping) for every ``_target_`` mapping in a config tree, in document order."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        ident = f"{prefix}::{key}" if prefix else str(key)
        if isinstance(value, dict) and isinstance(value.get("_target_"), str):
            yield ident, value
        if isinstance(value, (dict, list)):
            yield from _targets(value, ident)


def _transforms(configs: list[Path], root: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(where, name, resolved arguments)`` of every preprocessing transform metavoxel reads, config by config; a
    transform whose arguments do not resolve here (an expression needing the bundle's scripts) is passed over."""
    for path in configs:
        parser = _parser(path, root)
        for ident, node in _targets(parser.get()):
            name = transform_name(node["_target_"])
            if name is None:
                continue
            try:
                component = _resolve(parser, ident, str(path))
            except InputError:
                continue
            arguments = component.get_config() if hasattr(component, "get_config") else component
            if isinstance(arguments, dict):
                where = f"{path.relative_to(root) if path.is_relative_to(root) else path}: {ident} " \
                        f"({node['_target_'].rsplit('.', 1)[-1]})"
                yield where, name, arguments
