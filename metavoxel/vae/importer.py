"""`import_vae`: a pretrained autoencoder from a MONAI bundle or a MAISI config + weights, as metavoxel's own VAE
folder (``vae.safetensors`` + ``vae.json``, `metavoxel.vae.checkpoint`).

The steps: read the network definition, its weights file and the declared preprocessing (`read_bundle`); map the
``_target_`` and its arguments onto a `VAESpec` (`TARGETS`; arguments the config leaves out take the class's
defaults, not VAESpec's); load the weights with ``torch.load(weights_only=True)`` (or safetensors), unwrapping a
checkpoint dict that holds the state dict under a key; load them into the network built by `build_vae`, mapping
MONAI GenerativeModels' key names with MONAI's ``AutoencoderKL.load_old_state_dict`` when the names are not
MONAI core's; write the folder with no latent scale factor (`encode`/`train` compute it on the user's cohort) and
with what the autoencoder expects and where it came from. Every refusal is one line, and nothing is written
until everything has passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from metavoxel.errors import InputError
from metavoxel.vae.architecture import VAESpec, build_vae
from metavoxel.vae.bundle import WEIGHT_SUFFIXES, read_bundle
from metavoxel.vae.checkpoint import META_FILE, save_vae
from metavoxel.vae.expected_input import ExpectedInput

__all__ = ["ImportedVAE", "TARGETS", "import_vae"]

_CORE = "monai.networks.nets.AutoencoderKL"
_MAISI = "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi"
#: The class's constructor argument -> the VAESpec field it sets (spatial dims and channels are the geometry).
_FIELDS = {"channels": "channels", "num_channels": "channels", "latent_channels": "latent_channels",
           "num_res_blocks": "num_res_blocks", "attention_levels": "attention_levels",
           "norm_num_groups": "norm_num_groups", "norm_eps": "norm_eps", "use_convtranspose": "use_convtranspose",
           "include_fc": "include_fc", "use_combined_linear": "use_combined_linear",
           "use_flash_attention": "use_flash_attention", "use_checkpoint": "use_checkpoint",
           "use_checkpointing": "use_checkpoint", "num_splits": "num_splits", "dim_split": "dim_split",
           "norm_float16": "norm_float16", "print_info": "print_info", "save_mem": "save_mem"}
_GEOMETRY = {"spatial_dims", "in_channels", "out_channels", "with_encoder_nonlocal_attn", "with_decoder_nonlocal_attn"}
#: MONAI GenerativeModels' AutoencoderKL (not installed here): MONAI core's class, defaults included, under
#: two older argument names.
_GENERATIVE_NAMES = {"num_channels": "channels", "use_checkpointing": "use_checkpoint"}
#: ``_target_`` -> (VAESpec network, the MONAI class that gives the signature and defaults, config name -> its name).
TARGETS: dict[str, tuple[str, str, dict[str, str]]] = {
    _CORE: ("AutoencoderKL", _CORE, {}),
    "monai.networks.nets.autoencoderkl.AutoencoderKL": ("AutoencoderKL", _CORE, {}),
    "AutoencoderKL": ("AutoencoderKL", _CORE, {}),  # MONAI resolves bare names in its own modules
    "generative.networks.nets.AutoencoderKL": ("AutoencoderKL", _CORE, _GENERATIVE_NAMES),
    "generative.networks.nets.autoencoderkl.AutoencoderKL": ("AutoencoderKL", _CORE, _GENERATIVE_NAMES),
    _MAISI: ("AutoencoderKlMaisi", _MAISI, {}),
    "AutoencoderKlMaisi": ("AutoencoderKlMaisi", _MAISI, {}),
}
_STATE_KEYS = ("state_dict", "model", "model_state_dict", "autoencoder", "autoencoder_state_dict", "net", "network")


@dataclass
class ImportedVAE:
    """What `import_vae` wrote: the folder, the architecture, what the autoencoder expects, where it came from."""

    folder: Path
    spatial_dims: int
    channels: int
    spec: VAESpec
    expects: ExpectedInput
    provenance: dict[str, Any]


def _class(path: str):
    import importlib

    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def vae_spec_from_arguments(target: str, arguments: dict[str, Any], where: str) -> tuple[VAESpec, int, int]:
    """The `VAESpec`, spatial dims and image channels of a network definition; arguments the config leaves out
    take the class's own defaults.

    Raises:
        InputError: an unknown ``_target_``, an argument the class does not take, a required argument missing,
            in_channels != out_channels, or values VAESpec refuses (one line each).
    """
    if target not in TARGETS:
        known = ", ".join(sorted(t for t in TARGETS if "." in t))
        raise InputError(f"{where}: _target_ {target!r} is not an autoencoder metavoxel imports; it reads {known}")
    network, class_path, renames = TARGETS[target]
    parameters = {n: p for n, p in inspect.signature(_class(class_path)).parameters.items() if n != "self"}
    spelled = {renames.get(k, k): k for k in arguments}  # the class's name -> the config's
    unknown = sorted(k for name, k in spelled.items() if name not in parameters or k in renames.values())
    if unknown:
        taken = sorted({next((c for c, n in renames.items() if n == name), name) for name in parameters})
        raise InputError(f"{where}: {target} takes no argument {unknown[0]!r} (it takes {', '.join(taken)}); check "
                         "that _target_ names the class the weights were trained as")
    values: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in spelled:
            values[name] = arguments[spelled[name]]
        elif parameter.default is not inspect.Parameter.empty:
            values[name] = parameter.default
        else:
            raise InputError(f"{where}: {target} needs argument {name!r}, which the config does not give")
    if values["in_channels"] != values["out_channels"]:
        raise InputError(f"{where}: the autoencoder maps {values['in_channels']} channels to {values['out_channels']}; "
                         "metavoxel needs an image autoencoder whose in_channels equal its out_channels")
    fields = {_FIELDS[name]: list(v) if isinstance(v, tuple) else v for name, v in values.items() if name in _FIELDS}
    fields["nonlocal_attention"] = (bool(values["with_encoder_nonlocal_attn"]),
                                    bool(values["with_decoder_nonlocal_attn"]))
    leftover = sorted(set(values) - set(_FIELDS) - _GEOMETRY)
    if leftover:  # a MONAI release with an argument this metavoxel cannot record
        raise InputError(f"{where}: {target} argument {leftover[0]!r} is not one metavoxel records; use the MONAI "
                         "version metavoxel pins")
    try:
        spec = VAESpec(network=network, **fields)
    except Exception as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        raise InputError(f"{where}: {'.'.join(map(str, first['loc'])) or 'arguments'}: {first['msg']}") from None
    return spec, int(values["spatial_dims"]), int(values["in_channels"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _brief(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]


def _unreadable(path: Path, exc: Exception) -> InputError:
    what = ".safetensors file" if path.suffix == ".safetensors" else "PyTorch checkpoint"
    return InputError(f"{str(path)!r} is not a readable {what} ({_brief(exc)}); give a {'/'.join(WEIGHT_SUFFIXES)} "
                      "file holding the autoencoder's state dict")


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state(path: Path, state_key: str | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict in a weights file, and the checkpoint key it was found under (None: the file is one).

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``, which
    refuses a pickle holding anything but tensors and plain containers. A checkpoint dict holding the state dict
    under a key is unwrapped: ``state_key`` if given, else the only state dict in it, else the first of the usual
    names (``state_dict``, ``model``, ``autoencoder``, ...); a ``module.`` prefix on every key (DDP) is dropped.

    Raises:
        InputError: a missing or unreadable file, a pickle that is not a plain state dict, or no state dict in it.
    """
    if not path.is_file():
        raise InputError(f"weights file {str(path)!r} does not exist; give it with --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a damaged header
            raise _unreadable(path, exc) from None
    else:
        import pickle
        import re

        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            pickled = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if pickled is None:  # not a pickle of objects: not a PyTorch file at all
                raise _unreadable(path, exc) from None
            raise InputError(f"{str(path)!r} is not a plain state dict: torch.load(weights_only=True) refuses the "
                             f"objects pickled in it (it pickles {pickled.group(1)}); metavoxel never unpickles code "
                             "— re-save it as torch.save(model.state_dict(), path) where it was made") from None
        except Exception as exc:
            raise _unreadable(path, exc) from None
    found = None
    if state_key is not None:
        if not isinstance(obj, dict) or state_key not in obj:
            keys = ", ".join(map(repr, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
            raise InputError(f"{str(path)!r} has no {state_key!r} (it holds {keys}); name the state dict's key "
                             "with --state-key")
        obj, found = obj[state_key], state_key
    elif isinstance(obj, dict) and not _is_state(obj):
        nested = [k for k, v in obj.items() if _is_state(v)]
        usual = [k for k in _STATE_KEYS if k in nested]
        if len(nested) == 1 or usual:
            found = nested[0] if len(nested) == 1 else usual[0]
            obj = obj[found]
        elif nested:
            raise InputError(f"{str(path)!r} holds several state dicts ({', '.join(map(repr, nested))}); name the "
                             "autoencoder's with --state-key")
    if not _is_state(obj):
        what = f"a dict of {', '.join(map(repr, list(obj)[:6]))}" if isinstance(obj, dict) else type(obj).__name__
        raise InputError(f"{str(path)!r} holds {what}, not a state dict of tensors; give the autoencoder's weights "
                         "(or name the key holding them with --state-key)")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, found


def _names(missing: list[str], unexpected: list[str]) -> str:
    parts = ([f"{len(missing)} missing tensors (e.g. {missing[0]!r})"] if missing else []) + \
            ([f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})"] if unexpected else [])
    return ", ".join(parts)


def load_weights(vae: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> str:
    """Load ``state`` into ``vae``: as it is when its names are the network's, else through MONAI's
    ``load_old_state_dict`` (GenerativeModels' names). Returns which names the file used.

    Raises:
        InputError: missing or unexpected tensors, or shapes that do not fit (one line naming the first).
    """
    own = vae.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if not missing and not unexpected:
        wrong = [k for k in sorted(own) if tuple(own[k].shape) != tuple(state[k].shape)]
        if wrong:
            raise InputError(f"{what}: tensor {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)} but the network "
                             f"has {tuple(own[wrong[0]].shape)}; the weights do not fit the architecture the config "
                             "declares (check --network and --weights belong together)")
        vae.load_state_dict(state)
        return "MONAI"
    with torch.no_grad():  # MONAI keeps a tensor the file lacks at its random init: mark them to find them
        for tensor in own.values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    left = dict(state)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MONAI prints a line when every name matches
            vae.load_old_state_dict(left)
    except (KeyError, RuntimeError) as exc:
        raise InputError(f"{what}: the weights do not fit the architecture the config declares "
                         f"({_names(missing, unexpected)}; nor under MONAI GenerativeModels' names: {_brief(exc)}); "
                         "check --network and --weights belong together") from None
    unset = sorted(k for k, t in vae.state_dict().items() if t.is_floating_point() and bool(torch.isnan(t).all()))
    if unset:
        raise InputError(f"{what}: the weights do not fit the architecture the config declares ({len(unset)} missing "
                         f"tensors, e.g. {unset[0]!r}, under MONAI's or GenerativeModels' names); the file holds "
                         "another network")
    if left:
        raise InputError(f"{what}: {len(left)} unexpected tensors (e.g. {sorted(left)[0]!r}) beyond the network's; "
                         "the weights belong to another architecture")
    return "GenerativeModels"


def import_vae(source: str | Path, out: str | Path, *, config: str | Path | None = None, network: str | None = None,
               weights: str | Path | None = None, state_key: str | None = None,
               expects: dict[str, Any] | None = None, overwrite: bool = False,
               command: str | None = None) -> ImportedVAE:
    """Import a bundle's (or a config's) autoencoder into a metavoxel VAE folder.

    Args:
        source: a MONAI bundle folder (configs/, models/), or a config file (JSON/YAML) with the network
            definition, e.g. MAISI's ``configs/config_maisi.json`` (then give ``weights``).
        out: the VAE folder to write (``vae.safetensors`` + ``vae.json``).
        config: within a bundle, the config file to read (default: all, inference first).
        network: the network's config item (default ``autoencoder_def``, else ``network_def``).
        weights: the weights file (default: the one the config loads into the network, else the only file in
            ``models/``).
        state_key: the key of the state dict inside a checkpoint dict (default: found, see `load_state`).
        expects: `ExpectedInput` fields to record where the bundle's config does not state them (shape,
            spacing, orientation); what the config states wins.
        overwrite: replace a VAE folder already at ``out``.
        command: the command line, for the provenance record.

    Returns:
        `ImportedVAE`; the folder records no scale factor (`encode`/`train` compute it on the cohort).

    Raises:
        InputError: one line for each refusal (see the module docstring); nothing is written.
    """
    out = Path(out)
    try:
        given = ExpectedInput.model_validate(expects or {})
    except Exception as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        raise InputError(f"{'.'.join(map(str, first['loc'])) or 'expects'}: {first['msg']}") from None
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder for the VAE")
    if (out / META_FILE).exists() and not overwrite:
        raise InputError(f"{str(out)!r} already holds a VAE ({META_FILE}); pass --overwrite to replace it or choose "
                         "another --out")
    bundle = read_bundle(source, config=config, key=network)
    where = f"{bundle.config}::{bundle.key}"
    spec, spatial_dims, channels = vae_spec_from_arguments(bundle.target, bundle.arguments, where)
    path = Path(weights) if weights is not None else bundle.weights
    if path is None:
        raise InputError(f"{where}: the config loads no weights file into {bundle.key!r} and models/ does not hold "
                         f"exactly one {'/'.join(WEIGHT_SUFFIXES)} file; give it with --weights")
    state, found_key = load_state(path, state_key if state_key is not None else
                                  (bundle.state_key if weights is None else None))
    vae = build_vae(spatial_dims, channels, spec)
    names = load_weights(vae, state, str(path))
    stated = bundle.expects.model_dump(exclude_unset=True)
    recorded = ExpectedInput.model_validate({**given.model_dump(exclude_unset=True), **stated})
    recorded.sources.update({k: "given to import-vae" for k in given.model_fields_set if k not in stated})
    provenance = {
        "source": "monai-bundle" if Path(source).is_dir() else "config",
        "bundle": bundle.name, "bundle_version": bundle.version, "bundle_root": str(bundle.root.resolve()),
        "config": _relative(bundle.config, bundle.root), "network": bundle.key, "target": bundle.target,
        "weights_file": _relative(path, bundle.root), "weights_file_sha256": _sha256(path), "state_key": found_key,
        "key_names": names, "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or "metavoxel.vae.import_vae", "metavoxel": _version(),
    }
    _write_folder(out, vae, spec, recorded, provenance)
    return ImportedVAE(folder=out, spatial_dims=spatial_dims, channels=channels, spec=spec, expects=recorded,
                       provenance=provenance)


def _relative(path: Path, root: Path) -> str:
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _version() -> str:
    import metavoxel

    return metavoxel.__version__


def _write_folder(out: Path, vae: torch.nn.Module, spec: VAESpec, expects: ExpectedInput,
                  provenance: dict[str, Any]) -> None:
    """Write the folder; a new one is written beside ``out`` and renamed into place, so a failure leaves nothing."""
    arguments = {"unscaled": True, "expects": expects.model_dump(mode="json"), "provenance": provenance}
    if out.is_dir():  # --overwrite: each file is replaced atomically
        save_vae(out, vae, spec, **arguments)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()  # the mode any new folder gets (mkdtemp's would be 0700)
    try:
        save_vae(staging, vae, spec, **arguments)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

