"""The VAEs shipped with metavoxel: VAE folders (``vae.json`` + ``vae.safetensors`` + ``MODEL_CARD.md``) under
``metavoxel/pretrained/<name>/``, found by name.

``phantom-32-sharp`` is the KL-VAE of the built-in phantom at its 32³ grid of 5.5 mm (both the demo's phantom and
the default one), 11000 steps, the last 2000 of each continuation with the patch adversarial term: 30.4 dB on held-out
brains, sulci kept. `metavoxel demo` and the small paper benchmark use it unless told to train their own. Its
``vae.json`` records, under ``provenance``, the phantom seeds of every brain it trained on and of the held-out
brains it was judged on, so a cohort can be checked for overlap (`check_unseen_phantom`); its model card says
how it was trained and what it measures. ``phantom-32`` is the same network after its first 2000 steps (22.8 dB,
the sulci blurred away), the earlier default, kept for the benchmark sections measured with it
(benchmarks/RESULTS.md, "The shipped phantom VAE").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metavoxel.errors import InputError

__all__ = ["PRETRAINED_ROOT", "check_unseen_phantom", "pretrained_vae", "pretrained_vaes"]

PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_vaes() -> dict[str, Path]:
    """Name -> folder of every VAE shipped with this metavoxel."""
    if not PRETRAINED_ROOT.is_dir():
        return {}
    return {p.name: p for p in sorted(PRETRAINED_ROOT.iterdir()) if (p / "vae.json").is_file()}


def pretrained_vae(name: str) -> Path:
    """The folder of the shipped VAE ``name``.

    Raises:
        InputError: no shipped VAE of that name (the message lists those there are).
    """
    found = pretrained_vaes()
    if name not in found:
        raise InputError(f"no pretrained VAE named {name!r} ships with this metavoxel; available: "
                         f"{', '.join(found) or 'none'}")
    return found[name]


def _provenance(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "vae.json").read_text()).get("provenance") or {}


def check_unseen_phantom(folder: Path, cohort: str | Path) -> str:
    """Refuse a phantom cohort whose brains the VAE in ``folder`` trained or was judged on.

    The cohort's ``phantom.json`` (written by `metavoxel.phantom.write_phantom`) gives its seed; the VAE's
    ``vae.json`` provenance gives the seeds of its training and held-out brains. Subject ``k`` of seed ``s``
    is drawn from ``SeedSequence([s, k])`` alone, so distinct seeds mean distinct brains.

    Returns:
        one line saying the cohort is unseen, for reports.

    Raises:
        InputError: the cohort shares a seed with the VAE's brains, or the VAE records no seeds.
    """
    seeds = _provenance(folder).get("phantom_seeds") or {}
    used = {int(s) for group in seeds.values() for s in group.values()} if seeds else set()
    if not used:
        raise InputError(f"{folder / 'vae.json'} records no phantom seeds, so a phantom cohort cannot be checked "
                         "against the brains it saw; train the VAE on the cohort instead (--train-vae)")
    config = json.loads((Path(cohort) / "phantom.json").read_text()).get("config", {})
    seed = int(config.get("seed", 0))
    if seed in used:
        raise InputError(f"the phantom cohort in {cohort} has seed {seed}, whose brains the VAE in {folder} saw "
                         f"(its seeds: {sorted(used)}); use another phantom seed or train the VAE on the cohort "
                         "(--train-vae)")
    return (f"the VAE never saw this cohort's brains (cohort phantom seed {seed}; the VAE's training and held-out "
            f"seeds {sorted(used)})")
