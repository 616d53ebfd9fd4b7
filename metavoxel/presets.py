"""The recipes: `RECOMMENDED`, the one table of defaults, and `PAPER`, the MetaVoxel paper's recipe as a preset.

A spec names only what it changes. Every field of the ``diffusion`` and ``network`` sections and the top level
that a spec leaves out takes its value from `RECOMMENDED`, and from nothing else: no field's value changes
another field's default (``tests/test_spec_defaults.py`` writes every documented field by hand, one at a time,
to check). The table is the recommended recipe — noise levels per variable drawn from a mixture in training,
clean conditioning, the quadratic sampling grid — together with each Gaussian kind's ``prediction`` default,
which the kind declares beside its parameters (`metavoxel.prediction_field`: ``image_latent`` predicts v,
``image`` and ``continuous`` eps). docs/spec.md shows the table and why each value.

`PAPER` is the MetaVoxel paper's recipe as the fields it sets: one shared noise level (``PAPER_TRAINING``),
RePaint conditioning, the uniform grid and eps for every Gaussian variable. `with_recipe` writes a recipe into
a spec; ``schemas/examples/t1w_age_sex_latent_paper.yaml`` is the paper's model written that way, and
``schemas/examples/t1w_age_sex_latent.yaml`` the same model on the recommended recipe.

This module is plain data and imports nothing of metavoxel at import time: `metavoxel.spec` reads its field
defaults from it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["PAPER", "PAPER_TRAINING", "RECOMMENDED", "RECOMMENDED_TRAINING", "with_recipe"]

#: ``diffusion.training`` of the recommended recipe: the level mixture measured in benchmarks/RESULTS.md. It
#: enables clean conditioning, guidance and point predictions (docs/conditioning.md).
RECOMMENDED_TRAINING: dict[str, float] = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15,
                                          "keep_masks": 0.25}

#: ``diffusion.training`` of the MetaVoxel paper: one shared t for every variable, no keep-masks.
PAPER_TRAINING: dict[str, float] = {"shared": 1.0, "clean": 0.0, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0}

#: The one table of defaults: what every field a spec leaves out becomes (the sections mirror `ModelSpec`).
#: A schedule parameter left null takes the schedule's own published value (`metavoxel.processes.schedules`).
RECOMMENDED: dict[str, Any] = {
    "name": "metavoxel-model",
    "seed": 0,
    "diffusion": {
        "timesteps": 1000,
        "gaussian": {"name": "scaled_linear", "beta_start": None, "beta_end": None, "s": None},
        "discrete": {"name": "cosine", "beta_start": None, "beta_end": None, "s": None},
        "kernels": "auto",
        "sampling_steps": 50,
        "grid": "quadratic",
        "eta": 1.0,
        "training": RECOMMENDED_TRAINING,
        "conditioning": "clean",
    },
    "network": {
        "spatial_dims": 3,
        "channels": [64, 128, 256],
        "attention_levels": [False, True, True],
        "num_res_blocks": 2,
        "num_head_channels": 32,
        "norm_num_groups": 32,
        "cross_attention_dim": 256,
        "attention_backend": "auto",
    },
}

#: The MetaVoxel paper's recipe: the fields it sets (``variables`` applies to every variable whose kind has
#: the field). Its Gaussian schedule is the default's (scaled_linear, beta 0.0015 -> 0.0195).
PAPER: dict[str, Any] = {
    "diffusion": {"grid": "uniform", "training": PAPER_TRAINING, "conditioning": "repaint"},
    "variables": {"prediction": "eps"},
}


def recommended(section: str, field: str) -> Any:
    """A fresh copy of ``RECOMMENDED[section][field]`` (for a pydantic ``default_factory``)."""
    return copy.deepcopy(RECOMMENDED[section][field])


def with_recipe(spec: Mapping[str, Any], recipe: Mapping[str, Any], *, registry: Any = None) -> dict[str, Any]:
    """A copy of the plain spec mapping ``spec`` with ``recipe``'s fields written over its own.

    Sections (``diffusion``, ``network``) are merged field by field, whole fields replaced (``training`` is
    replaced as a whole); ``variables`` sets each named field on every variable whose kind's spec model has
    it (``prediction`` on Gaussian kinds, not on ``categorical``). E.g. ``with_recipe(spec, PAPER)``.

    Args:
        spec: a spec as a plain mapping (as read from YAML), not yet validated.
        recipe: `PAPER` or a mapping of the same shape.
        registry: where the variables' kinds are looked up; default the installed plugins.

    Raises:
        SpecError: a variable's kind is not installed (the message lists the known kinds).
    """
    out = copy.deepcopy(dict(spec))
    for key, value in recipe.items():
        if key == "variables":
            out["variables"] = [_with_fields(entry, value, registry) for entry in out.get("variables", [])]
        elif isinstance(value, Mapping):
            out[key] = {**out.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_fields(entry: Mapping[str, Any], fields: Mapping[str, Any], registry: Any) -> dict[str, Any]:
    """One variable's spec mapping with each of ``fields`` its kind's spec model has."""
    from metavoxel.errors import PluginError, SpecError
    from metavoxel.plugins.registry import default_registry

    registry = default_registry() if registry is None else registry
    try:
        own = registry.get(entry["kind"]).spec.model_fields
    except PluginError as exc:
        raise SpecError(f"variable {entry.get('name')!r}: {exc}") from None
    return {**entry, **{k: copy.deepcopy(v) for k, v in fields.items() if k in own}}
