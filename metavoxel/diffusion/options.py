"""A request's options as one value, validated once where it is made: `SamplingOptions` and `PointOptions`.

The CLI builds them from its flags, the workflows pass them on, and the engine's functions read them
(`metavoxel.diffusion.sampling.sample`, `metavoxel.diffusion.point.predict_point`), the habit of
k-diffusion's samplers (one signature over model, state and extra arguments) and diffusers' pipelines (inputs
checked once in ``check_inputs``). ``None`` means "the model's default" (its spec's ``diffusion`` section).
A bad value raises `OptionError`, which names the option by its API name; the CLI renders it with its flag.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metavoxel.diffusion.grid import check_grid
from metavoxel.errors import InputError, OptionError
from metavoxel.seeds import check_seed

__all__ = ["EDIT_OUTPUTS", "EditOptions", "METHODS", "PRECISIONS", "PointOptions", "SamplingOptions", "request_options"]

PRECISIONS = ("fp32", "bf16")
#: What an edit hands back (`EditOptions.output`): ``change``, the scan plus the decoded change
#: D(z_edited) - D(z_reconstructed); ``decoded``, the decoded edit D(z_edited) itself.
EDIT_OUTPUTS = ("change", "decoded")
#: How a request is answered: by sampling (`SamplingOptions`) or by point prediction (`PointOptions`).
METHODS = ("sample", "point")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seed(value: Any, option: str) -> int:
    """`metavoxel.seeds.check_seed`, as an OptionError naming ``option``."""
    try:
        return check_seed(value, "{" + option + "}")
    except InputError as exc:
        raise OptionError(str(exc), option) from None


def _seeds(value: Sequence[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise OptionError(f"{{seeds}} must be a list of integers (one per subject), got {value!r}", "seeds")
    return tuple(_seed(s, "seeds") for s in value)


@dataclass(frozen=True)
class SamplingOptions:
    """How one sampling request runs (`metavoxel.diffusion.sampling.sample`).

    Attributes:
        num_samples: samples per subject (S >= 1).
        steps: reverse steps on the strided grid (None: the spec's ``sampling_steps``).
        grid: the grid's spacing, ``uniform`` or ``quadratic`` (None: the spec's ``diffusion.grid``).
        seed: RNG seed (None: the spec's ``seed``); results are reproducible for the same seed and batch_size.
        seeds: one seed per subject instead of ``seed``: each subject draws from its own generator, so its
            samples do not depend on the other subjects or on ``batch_size``.
        eta: DDIM eta in [0, 1] for Gaussian kinds (None: the spec's ``eta``).
        batch_size: rows (subjects x samples) per network call (None: all at once).
        jump_length, jump_rounds: RePaint resampling (Lugmayr et al. 2022); ``jump_rounds = 1`` disables it.
        precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast.
        conditioning: ``repaint`` or ``clean`` (None: the spec's default; `metavoxel.diffusion.conditioning`).
        guidance: classifier-free guidance weight w >= 0 (Ho & Salimans 2022).
        impute: for an image known inside a mask only, complete the image first and sample the other free
            variables given the completion held whole, one completion per sample (`metavoxel.diffusion.imputation`;
            a second chain: twice the network calls). No effect on a request without such an image or without a
            free variable beside it. False: one joint chain (the answer is drawn beside the generated image,
            whose intervals do not widen as less of the image is kept: benchmarks/RESULTS.md).

    Raises:
        OptionError: on construction, for any value out of its range or choices.
    """

    num_samples: int = 1
    steps: int | None = None
    grid: str | None = None
    seed: int | None = None
    seeds: tuple[int, ...] | None = None
    eta: float | None = None
    batch_size: int | None = None
    jump_length: int = 1
    jump_rounds: int = 1
    precision: str = "fp32"
    conditioning: str | None = None
    guidance: float = 0.0
    impute: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.impute, bool):
            raise OptionError(f"{{impute}} must be true or false, got {self.impute!r}", "impute")
        for name in ("num_samples", "jump_length", "jump_rounds"):
            value = getattr(self, name)
            if not _integer(value) or value < 1:
                raise OptionError(f"{{{name}}} must be an integer >= 1, got {value!r}", name)
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not _integer(value) or value < 1):
                raise OptionError(f"{{{name}}} must be an integer >= 1, got {value!r}", name)
        check_grid(self.grid)
        if self.seed is not None:
            object.__setattr__(self, "seed", _seed(self.seed, "seed"))
        object.__setattr__(self, "seeds", _seeds(self.seeds))
        if self.eta is not None and not (isinstance(self.eta, (int, float)) and 0.0 <= self.eta <= 1.0):
            raise OptionError(f"{{eta}} must be a number in [0, 1], got {self.eta!r}", "eta")
        if self.precision not in PRECISIONS:
            raise OptionError(f"{{precision}} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                              "precision")
        from metavoxel.diffusion.conditioning import CONDITIONING_MODES

        if self.conditioning is not None and self.conditioning not in CONDITIONING_MODES:
            raise OptionError(f"{{conditioning}} must be one of {', '.join(CONDITIONING_MODES)}, got "
                              f"{self.conditioning!r}", "conditioning")
        if not isinstance(self.guidance, (int, float)) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise OptionError(f"{{guidance}} must be a finite number >= 0 (e.g. 1), got {self.guidance!r}",
                              "guidance")

    def replace(self, **changes: Any) -> SamplingOptions:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PointOptions:
    """How one point prediction runs (`metavoxel.diffusion.point.predict_point`).

    Attributes:
        seed, seeds, batch_size, precision: as in `SamplingOptions`.
        levels: integer steps read, T first, strictly decreasing; draws: per level (an int: the same at every
            level). Default (None): `metavoxel.diffusion.point.READ_LEVELS`.

    Raises:
        OptionError: on construction, for a bad seed, batch size or precision (the plan is checked against
            the model's T by `metavoxel.diffusion.point.point_plan`).
    """

    seed: int | None = None
    seeds: tuple[int, ...] | None = None
    batch_size: int | None = None
    precision: str = "fp32"
    levels: tuple[int, ...] | None = None
    draws: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            object.__setattr__(self, "seed", _seed(self.seed, "seed"))
        object.__setattr__(self, "seeds", _seeds(self.seeds))
        if self.batch_size is not None and (not _integer(self.batch_size) or self.batch_size < 1):
            raise OptionError(f"{{batch_size}} must be an integer >= 1, got {self.batch_size!r}", "batch_size")
        if self.precision not in PRECISIONS:
            raise OptionError(f"{{precision}} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                              "precision")
        if self.levels is not None:
            object.__setattr__(self, "levels", tuple(self.levels))
        if self.draws is not None and not _integer(self.draws):
            object.__setattr__(self, "draws", tuple(self.draws))

    def replace(self, **changes: Any) -> PointOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EditOptions:
    """How one edit runs (`metavoxel.diffusion.edit.edit`): DDIM inversion, then DDIM regeneration.

    Attributes:
        steps: DDIM steps each way on the strided grid (None: the spec's ``sampling_steps``).
        grid: the grid's spacing, ``uniform`` or ``quadratic`` (None: the spec's ``diffusion.grid``).
        refine: fixed-point iterations per inversion step (0: plain DDIM inversion; each adds one network call
            per step; `metavoxel.diffusion.inversion`).
        guidance: classifier-free guidance weight w >= 0 (Ho & Salimans 2022) of the regeneration and of the
            inversion, which walks the same guided ODE.
        output: ``change`` (the scan plus the decoded change) or ``decoded`` (the decoded edit), `EDIT_OUTPUTS`.
        seed: RNG seed (None: the spec's ``seed``) of the guidance marginal's noise and of the point prediction
            that infers values not given; the inversion and regeneration draw nothing.
        precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast.

    Raises:
        OptionError: on construction, for any value out of its range or choices.
    """

    steps: int | None = None
    grid: str | None = None
    refine: int = 1
    guidance: float = 0.0
    output: str = "change"
    seed: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.steps is not None and (not _integer(self.steps) or self.steps < 1):
            raise OptionError(f"{{steps}} must be an integer >= 1, got {self.steps!r}", "steps")
        if not _integer(self.refine) or not 0 <= self.refine <= 10:
            raise OptionError(f"{{refine}} must be an integer in [0, 10], got {self.refine!r}", "refine")
        check_grid(self.grid)
        if self.seed is not None:
            object.__setattr__(self, "seed", _seed(self.seed, "seed"))
        if not isinstance(self.guidance, (int, float)) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise OptionError(f"{{guidance}} must be a finite number >= 0 (e.g. 1), got {self.guidance!r}",
                              "guidance")
        if self.output not in EDIT_OUTPUTS:
            raise OptionError(f"{{output}} must be one of {', '.join(EDIT_OUTPUTS)}, got {self.output!r}", "output")
        if self.precision not in PRECISIONS:
            raise OptionError(f"{{precision}} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                              "precision")

    def replace(self, **changes: Any) -> EditOptions:
        return dataclasses.replace(self, **changes)


def request_options(method: str, **values: Any) -> SamplingOptions | PointOptions:
    """The options of a request answered by ``method``: `SamplingOptions` for ``sample``, `PointOptions` for
    ``point``, from ``values`` (None: the default). Each method's incompatibilities live here, once.

    Raises:
        OptionError: an unknown method, or an option given that the method does not take (e.g. ``num_samples``
            for a point prediction, which draws no samples), naming them all.
    """
    if method not in METHODS:
        raise OptionError(f"{{method}} must be one of {', '.join(METHODS)}, got {method!r}", "method")
    kind = PointOptions if method == "point" else SamplingOptions
    fields = {f.name for f in dataclasses.fields(kind)}
    given = {k: v for k, v in values.items() if v is not None}
    extra = [k for k in given if k not in fields]  # in the order given
    if extra:
        why = ("it reads the model's x0 prediction with the given variables clean, drawing no samples"
               if method == "point" else "they plan a point prediction")
        other = "sample" if method == "point" else "point"
        names = ", ".join("{" + e + "}" for e in extra)
        raise OptionError(f"{names} {'does' if len(extra) == 1 else 'do'} not apply to {{method}} {method} ({why}); "
                          f"drop {'it' if len(extra) == 1 else 'them'}, or use {{method}} {other}", *extra, "method")
    return kind(**given)
