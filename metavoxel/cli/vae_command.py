"""``metavoxel import-vae``: a pretrained autoencoder from a MONAI bundle or a MAISI config, as a VAE folder.

A thin command over `metavoxel.vae.import_vae`: bad input (an unknown ``_target_``, weights that do not fit, a
pickle that is not a plain state dict, a folder without a config) is one ``error:`` line and exit code 2, with
nothing written.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from metavoxel.errors import InputError


def _numbers(text: str | None, option: str, kind: type) -> list | None:
    if text is None:
        return None
    try:
        return [kind(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r} is not a comma-separated list of numbers, e.g. 160,224,160") from None


def import_vae(
    source: Annotated[Path, typer.Argument(help="A MONAI bundle folder (configs/, models/), or a config file (JSON/"
                                                "YAML) holding the autoencoder's definition, e.g. MAISI's "
                                                "configs/config_maisi.json (then give --weights).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The VAE folder to write (vae.safetensors + vae.json).")]
    = Path("vae"),
    config: Annotated[Path | None, typer.Option(help="Within a bundle, the config file holding the network "
                                                     "(default: every config, inference first).")] = None,
    network: Annotated[str | None, typer.Option(help="The network's config item (default: autoencoder_def, else "
                                                     "network_def).")] = None,
    weights: Annotated[Path | None, typer.Option(help="The weights file (.pt/.pth/.safetensors; default: the one the "
                                                      "config loads into the network, else the only one in "
                                                      "models/).")] = None,
    state_key: Annotated[str | None, typer.Option(help="Key of the state dict inside a checkpoint dict (default: "
                                                       "found).")] = None,
    shape: Annotated[str | None, typer.Option(help="The input grid the VAE expects, e.g. 160,224,160, where the "
                                                   "bundle's config does not state it.")] = None,
    spacing: Annotated[str | None, typer.Option(help="The voxel spacing in mm it expects, e.g. 1,1,1, where the "
                                                     "config does not state it.")] = None,
    orientation: Annotated[str | None, typer.Option(help="The orientation it expects, e.g. RAS, where the config "
                                                         "does not state it.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a VAE folder already at --out.")] = False,
) -> None:
    """Import a pretrained autoencoder (MONAI AutoencoderKL or MAISI AutoencoderKlMaisi) as a metavoxel VAE folder."""
    from metavoxel.cli.display import console
    from metavoxel.vae.importer import import_vae as run_import

    given = {"shape": _numbers(shape, "--shape", int), "spacing": _numbers(spacing, "--spacing", float),
             "orientation": orientation}
    words = ["metavoxel", "import-vae", str(source), "--out", str(out)]
    for flag, value in (("--config", config), ("--network", network), ("--weights", weights),
                        ("--state-key", state_key), ("--shape", shape), ("--spacing", spacing),
                        ("--orientation", orientation)):
        words += [flag, str(value)] if value is not None else []
    words += ["--overwrite"] if overwrite else []
    result = run_import(source, out, config=config, network=network, weights=weights, state_key=state_key,
                        expects={k: v for k, v in given.items() if v is not None}, overwrite=overwrite,
                        command=shlex.join(words))
    p, spec = result.provenance, result.spec
    version = f" {p['bundle_version']}" if p.get("bundle_version") else ""
    names = "GenerativeModels key names mapped" if p["key_names"] == "GenerativeModels" else "MONAI key names"
    print_ = lambda text: console().print(text, markup=False, highlight=False)  # noqa: E731
    print_(f"imported {spec.network} from {p['bundle']}{version} ({p['config']}::{p['network']}, weights "
           f"{p['weights_file']}, {names}) into {out}")
    stated = result.expects.stated()
    missing = [k for k in ("shape", "spacing", "orientation", "intensity") if k not in stated]
    print_(f"latent: {spec.latent_channels} channels at 1/{spec.downsample_factor} of the grid; the VAE expects "
           + (", ".join(f"{k} {v}" for k, v in stated.items()) or "nothing the bundle states")
           + (f"; not stated: {', '.join(missing)} (see docs/vae.md)" if missing else ""))
    console().print(f"next: set weights: {escape(str(out))} on an image_latent variable of your spec (its "
                    f"architecture is read from {escape(str(out))}/vae.json); `metavoxel encode` or `metavoxel "
                    "train` computes the latent scale factor on your cohort's training split and records it there")
