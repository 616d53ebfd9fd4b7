"""The model spec (pydantic v2): which variables a model has, its diffusion and its network.

Specs are strict (``extra="forbid"``). The variables list is a discriminated union on ``kind`` built
from the plugin registry, so each kind validates its own parameters and a typo says which kinds exist
and where (``variables.2.kind``). Only this layer knows pydantic: the engine reads plain values.

One format, one table of defaults. Every spec metavoxel saves names its ``format_version`` (`SPEC_FORMAT`);
a saved spec of another format is refused (`ModelSpec.from_saved`), never guessed at or migrated. A
hand-written spec may leave the version out: it then means this one. Every field a spec leaves out takes its
value from `metavoxel.presets.RECOMMENDED`, whatever else the spec names (docs/spec.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, SerializeAsAny, TypeAdapter, ValidationError,
                      ValidationInfo, create_model, field_validator, model_validator)

from metavoxel.data.spec import DataSpec
from metavoxel.errors import PluginError, SpecError
from metavoxel.seeds import SEED_MAX
from metavoxel.plugins.registry import Registry, default_registry
from metavoxel.presets import RECOMMENDED, recommended
from metavoxel.processes.schedules import make_schedule

__all__ = ["DiffusionSpec", "ModelSpec", "NetworkSpec", "SPEC_FORMAT", "ScheduleSpec", "TrainingSpec", "VariableSpec",
           "spec_json_schema"]

#: The spec format this metavoxel reads and writes (``format_version``). It changes when a field's meaning
#: or default changes, so that a saved spec never silently means something else.
SPEC_FORMAT = 1

_STRICT = ConfigDict(extra="forbid")
_DIFFUSION, _NETWORK = "diffusion", "network"
_TRAINING = RECOMMENDED[_DIFFUSION]["training"]


class VariableSpec(BaseModel):
    """Fields every variable has. A kind's parameter model subclasses this with ``kind: Literal["name"]``."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Variable name, used in tables and --fix.")
    kind: str = Field(description="The variable kind (a registered plugin kind).")
    loss_weight: float = Field(1.0, ge=0.0, description="Weight of this variable's loss in the joint loss.")


class ScheduleSpec(BaseModel):
    """A noise schedule: see `metavoxel.processes.schedules`. A parameter left null takes the schedule's own."""

    model_config = _STRICT
    name: Literal["linear", "scaled_linear", "cosine"]
    beta_start: float | None = Field(None, gt=0, lt=1, description="First beta of a (scaled) linear schedule.")
    beta_end: float | None = Field(None, gt=0, lt=1, description="Last beta of a (scaled) linear schedule.")
    s: float | None = Field(None, gt=0, description="Offset of the cosine schedule.")

    @model_validator(mode="after")
    def _params_fit(self) -> ScheduleSpec:
        betas = self.beta_start is not None or self.beta_end is not None
        if self.name == "cosine" and betas:
            raise ValueError("the cosine schedule takes 's', not beta_start/beta_end")
        if self.name != "cosine" and self.s is not None:
            raise ValueError(f"the {self.name} schedule takes beta_start/beta_end, not 's'")
        return self

    def params(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump(exclude={"name"}).items() if v is not None}


class GaussianScheduleSpec(ScheduleSpec):
    """The Gaussian kinds' schedule; a section that names no schedule keeps `RECOMMENDED`'s."""

    name: Literal["linear", "scaled_linear", "cosine"] = recommended(_DIFFUSION, "gaussian")["name"]


class DiscreteScheduleSpec(ScheduleSpec):
    """The discrete kinds' schedule; a section that names no schedule keeps `RECOMMENDED`'s."""

    name: Literal["linear", "scaled_linear", "cosine"] = recommended(_DIFFUSION, "discrete")["name"]


class TrainingSpec(BaseModel):
    """How training draws each variable's noise level: a mixture of recipes, one drawn per record.

    The weights are relative (they need not sum to one). A weight left out takes its value from
    `metavoxel.presets.RECOMMENDED_TRAINING`, which won conditional generation and inpainting on the toy and
    enables clean conditioning, guidance and point predictions (``benchmarks/RESULTS.md``,
    ``docs/conditioning.md``); `metavoxel.presets.PAPER_TRAINING` (shared 1, every other weight and keep_masks
    0, each named) is the MetaVoxel paper's recipe. Per-variable levels follow UniDiffuser (Bao et al. 2023:
    one timestep per modality, t = 0 for a condition) and CSDI (Tashiro et al. 2021: conditional masks); see
    `metavoxel.diffusion.mixture`.
    """

    model_config = _STRICT
    shared: float = Field(_TRAINING["shared"], ge=0.0, description=(
        "Weight of the paper's recipe: one t ~ U[1, T] for every variable of the record. Keep it a large share: "
        "RePaint sampling walks this shared diagonal."))
    clean: float = Field(_TRAINING["clean"], ge=0.0, description=(
        "Weight of 'some variables given': a random non-empty proper subset of the variables at t = 0 (clean), "
        "the rest at one shared t ~ U[1, T], which is T itself 20% of the time (a target from prior noise "
        "given clean conditions, what point predictions read). Needed for clean conditioning."))
    independent: float = Field(_TRAINING["independent"], ge=0.0, description=(
        "Weight of independent levels: every variable (the image variables together) draws its own t ~ U[1, T]."))
    prior: float = Field(_TRAINING["prior"], ge=0.0, description=(
        "Weight of 'some variables unknown': a random non-empty proper subset at t = T (prior noise, as for a "
        "missing value), the rest either all clean or all at one shared t. Needed for guidance (the marginal)."))
    keep_masks: float = Field(_TRAINING["keep_masks"], ge=0.0, le=1.0, description=(
        "Probability that a record's noised image gets a random keep-mask (a half, a box or a blob of known, "
        "clean voxels shown to the network as extra [mask, mask * z0] input channels, as inpainting models "
        "and CSDI do). Above 0 the network has those channels; needed to condition on partly known images in "
        "clean mode."))

    @model_validator(mode="after")
    def _some_weight(self) -> TrainingSpec:
        if self.shared + self.clean + self.independent + self.prior <= 0:
            raise ValueError("the weights shared, clean, independent and prior must not all be 0; "
                             "give at least one a positive weight (shared: 1 is the paper's recipe)")
        return self

    @property
    def is_paper(self) -> bool:
        """Whether this is exactly the paper's recipe (one shared t, no keep-masks)."""
        return self.clean == self.independent == self.prior == self.keep_masks == 0.0



class DiffusionSpec(BaseModel):
    """One shared time axis of T integer steps; one schedule per process family. Defaults: `RECOMMENDED`."""

    model_config = _STRICT
    timesteps: int = Field(recommended(_DIFFUSION, "timesteps"), ge=2,
                           description="T: number of diffusion steps (t = 0..T).")
    gaussian: GaussianScheduleSpec = Field(
        default_factory=lambda: GaussianScheduleSpec(**recommended(_DIFFUSION, "gaussian")),
        description="Schedule of the Gaussian kinds (images, continuous values).")
    discrete: DiscreteScheduleSpec = Field(
        default_factory=lambda: DiscreteScheduleSpec(**recommended(_DIFFUSION, "discrete")),
        description="Schedule of the discrete kinds (categorical values).")
    kernels: Literal["auto", "triton", "torch"] = Field(recommended(_DIFFUSION, "kernels"), description=(
        "Backend of the fused diffusion kernels (training noise, the DDIM/RePaint and D3PM steps): auto runs "
        "Triton on CUDA and PyTorch elsewhere; METAVOXEL_KERNELS sets the default."))
    sampling_steps: int = Field(recommended(_DIFFUSION, "sampling_steps"), ge=1,
                                description="Default number of reverse steps (a strided grid over T).")
    grid: Literal["uniform", "quadratic"] = Field(recommended(_DIFFUSION, "grid"), description=(
        "Spacing of the sampling grid's levels: quadratic = t_i = T (i/S)^2 (DDIM's quadratic steps, Song et al. "
        "2021), whose last reverse step starts at t = 1 and so keeps a scalar's sample spread; uniform = "
        "t_i = T i / S, the paper's strided sampler."))
    eta: float = Field(recommended(_DIFFUSION, "eta"), ge=0.0, le=1.0, description=(
        "DDIM eta for Gaussian kinds: 1 = ancestral (DDPM-like, the default: it predicts scalars far better "
        "than the deterministic 0 on the toy benchmark), 0 = deterministic DDIM."))
    training: TrainingSpec = Field(default_factory=TrainingSpec, description=(
        "How training draws each variable's noise level (a mixture of recipes). The default {shared: 0.5, "
        "clean: 0.25, independent: 0.1, prior: 0.15, keep_masks: 0.25} enables clean conditioning, guidance and "
        "point predictions; {shared: 1, clean: 0, independent: 0, prior: 0, keep_masks: 0} is exactly the paper's "
        "recipe (docs/conditioning.md)."))
    conditioning: Literal["repaint", "clean"] = Field(recommended(_DIFFUSION, "conditioning"), description=(
        "Default way sampling holds fixed variables: clean = feed the known value clean, at level 0, at every "
        "step (needs training.clean > 0); repaint = re-noise it to the current level at every step (Lugmayr et "
        "al. 2022, the paper's method, which any training supports)."))

    @model_validator(mode="after")
    def _steps_fit(self) -> DiffusionSpec:
        if self.sampling_steps > self.timesteps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) cannot exceed timesteps ({self.timesteps})")
        if self.conditioning == "clean" and self.training.clean <= 0:
            given = "" if "conditioning" in self.model_fields_set else " (the default)"
            raise ValueError(f"conditioning 'clean'{given} needs a model trained with clean subsets, but "
                             "training.clean is 0; set conditioning: repaint (as the paper's recipe does) or give "
                             "training.clean a weight")
        return self

    def schedules(self) -> dict[str, Any]:
        """Process family -> abar table (T + 1,). A Gaussian cosine schedule clips betas at 0.999."""
        gaussian_extra = {"max_beta": 0.999} if self.gaussian.name == "cosine" else {}
        return {"gaussian": make_schedule(self.gaussian.name, self.timesteps, **self.gaussian.params(), **gaussian_extra),
                "discrete": make_schedule(self.discrete.name, self.timesteps, **self.discrete.params())}


class NetworkSpec(BaseModel):
    """The joint U-Net (see `metavoxel.nn.JointUNet`)."""

    model_config = _STRICT
    spatial_dims: Literal[2, 3] = Field(recommended(_NETWORK, "spatial_dims"), description="2D or 3D images.")
    channels: list[int] = Field(default_factory=lambda: recommended(_NETWORK, "channels"), min_length=1,
                                description="Feature channels of each U-Net level.")
    attention_levels: list[bool] = Field(default_factory=lambda: recommended(_NETWORK, "attention_levels"),
                                         min_length=1, description="Self-attention at each level (one flag each).")
    num_res_blocks: int = Field(recommended(_NETWORK, "num_res_blocks"), ge=1, description="Residual blocks per level.")
    num_head_channels: int = Field(recommended(_NETWORK, "num_head_channels"), ge=1,
                                   description="Channels per attention head.")
    norm_num_groups: int = Field(recommended(_NETWORK, "norm_num_groups"), ge=1,
                                 description="GroupNorm groups; every channel count must be divisible by it.")
    cross_attention_dim: int = Field(recommended(_NETWORK, "cross_attention_dim"), ge=1,
                                     description="Width of the scalar variables' cross-attention tokens.")
    attention_backend: Literal["auto", "triton", "torch"] = Field(recommended(_NETWORK, "attention_backend"), description=(
        "Backend of the U-Net's attention: auto runs the fused Triton kernel on CUDA and PyTorch elsewhere."))

    @field_validator("channels")
    @classmethod
    def _positive(cls, channels: list[int]) -> list[int]:
        if any(c < 1 for c in channels):
            raise ValueError(f"channels must be positive, got {channels}")
        return channels

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels has {len(self.attention_levels)} entries but channels has "
                             f"{len(self.channels)}; give one flag per level")
        for c in self.channels:
            if c % self.norm_num_groups:
                raise ValueError(f"every channel count must be divisible by norm_num_groups={self.norm_num_groups}, "
                                 f"got {c}")
        return self

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


class ModelSpec(BaseModel):
    """A joint model: its variables, diffusion, network and seed.

    Validate with the installed plugins via ``ModelSpec.model_validate(data)`` or `ModelSpec.from_file`;
    pass ``context={"registry": registry}`` to validate against another registry.
    """

    model_config = _STRICT
    format_version: Literal[SPEC_FORMAT] = Field(SPEC_FORMAT, description=(  # type: ignore[valid-type]
        "The spec format. Every saved spec names it; a hand-written spec may leave it out (it then means this "
        "metavoxel's format); a saved spec of another format is refused."))
    name: str = Field(RECOMMENDED["name"], description="A short name for the model.")
    variables: list[SerializeAsAny[VariableSpec]] = Field(min_length=1)
    diffusion: DiffusionSpec = Field(default_factory=DiffusionSpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    data: DataSpec | None = Field(None, description="How a cohort table or BIDS tree maps onto the variables.")
    seed: int = Field(RECOMMENDED["seed"], ge=0, le=SEED_MAX,
                      description="Seed for initialisation and default sampling.")

    @model_validator(mode="before")
    @classmethod
    def _validate_kinds(cls, data: Any, info: ValidationInfo) -> Any:
        """Each variable validated by its kind (a discriminated union built from the registry)."""
        if not isinstance(data, dict) or not isinstance(data.get("variables"), list):
            return data
        if all(isinstance(v, VariableSpec) and type(v) is not VariableSpec for v in data["variables"]):
            return data
        registry = (info.context or {}).get("registry")
        registry = default_registry() if registry is None else registry
        raw = [v.model_dump() if isinstance(v, BaseModel) else v for v in data["variables"]]
        for i, v in enumerate(raw):  # a kind of an installed plugin that failed or is blocked: say so
            kind = v.get("kind") if isinstance(v, dict) else None
            if isinstance(kind, str) and kind not in registry:
                reason = registry.unavailable(kind, distribution=kind)
                if reason:
                    raise PluginError(f"variables.{i}.kind: {kind!r} is not available: {reason}")
        try:
            variables = _variables_adapter(registry).validate_python(raw, context=info.context)
        except ValidationError as err:
            details = [{"type": e["type"], "loc": ("variables", *e["loc"]), "input": e["input"], "ctx": e.get("ctx", {})}
                       for e in err.errors(include_url=False)]
            raise ValidationError.from_exception_data(cls.__name__, details) from None
        return {**data, "variables": variables}

    @model_validator(mode="after")
    def _unique_names(self) -> ModelSpec:
        names = [v.name for v in self.variables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variable names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def variable(self, name: str) -> VariableSpec:
        for v in self.variables:
            if v.name == name:
                return v
        raise SpecError(f"no variable {name!r} in this model; variables are {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, registry: Registry | None = None, source: str = "spec",
                  spec_dir: str | Path | None = None) -> ModelSpec:
        """Validate a plain mapping; `SpecError` carrying every field path on failure.

        The mapping is a spec as a person writes it: fields left out take `metavoxel.presets.RECOMMENDED`'s
        values, and a missing ``format_version`` means `SPEC_FORMAT`. A saved spec goes through `from_saved`.

        Args:
            spec_dir: the folder of the spec file the mapping was read from: relative paths in it (e.g. an
                image_latent variable's ``weights``) resolve against it, and kinds check files it names (a
                scale factor against the VAE's record). Given by `from_file`; None for a stored run's spec.

        Raises:
            SpecError: a field that does not validate (with its path), or a ``format_version`` of another format.
        """
        _check_format(data, source)
        context: dict[str, Any] = {}
        if registry is not None:
            context["registry"] = registry
        if spec_dir is not None:
            context["spec_dir"] = str(spec_dir)
        try:
            return cls.model_validate(data, context=context or None)
        except ValidationError as err:
            note = ""
            if any(e["type"] == "union_tag_invalid" for e in err.errors(include_url=False)):
                reason = (registry or default_registry()).unavailable()
                note = f"; a plugin that is installed but unavailable may provide it: {reason}" if reason else ""
            raise SpecError(f"{source} is not a valid model spec: {format_errors(err)}{note}") from None

    @classmethod
    def from_saved(cls, data: dict[str, Any], *, registry: Registry | None = None, source: str = "saved spec",
                   written_by: str | None = None) -> ModelSpec:
        """A spec metavoxel saved (`to_dict`, a run's spec.json): it must name this format's ``format_version``.

        Args:
            written_by: the metavoxel version that saved it (named in the refusal), if known.

        Raises:
            SpecError: one line when the saved spec is of another format (or of none: saved before formats
                were numbered), saying what to do: retrain with this metavoxel, or use the one that saved it.
        """
        _check_format(data, source, written_by=written_by, saved=True)
        return cls.from_dict(data, registry=registry, source=source)

    @classmethod
    def from_file(cls, path: str | Path, *, registry: Registry | None = None) -> ModelSpec:
        """Load a spec from YAML (``.yaml``/``.yml``) or JSON — also a run directory's spec.json, so a run can be
        resumed with its own spec; relative paths in it are relative to its folder."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"spec file {str(path)!r} does not exist; give the path of a .yaml or .json spec")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SpecError(_syntax_error(path, exc)) from None
        if not isinstance(data, dict):
            raise SpecError(f"{path} must hold a mapping with 'variables', got {type(data).__name__}")
        if isinstance(data.get("spec"), dict) and "metavoxel" in data:  # a run directory's spec.json (save_spec)
            data = data["spec"]
        return cls.from_dict(data, registry=registry, source=str(path), spec_dir=path.parent)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _syntax_error(path: Path, exc: Exception) -> str:
    """``spec.yaml:LINE:COL: what the parser found; fix ...`` (1-based, as editors count) for a syntax error."""
    language = "JSON" if path.suffix == ".json" else "YAML"
    if isinstance(exc, json.JSONDecodeError):
        where, what = f"{exc.lineno}:{exc.colno}", exc.msg
    else:
        mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if context:
            start = getattr(exc, "context_mark", None)
            what += f" ({context}" + (f" at {start.line + 1}:{start.column + 1})" if start is not None else ")")
    place = f"{path}:{where}" if where else str(path)
    return f"{place}: invalid {language}: {what}; fix the syntax there"


def _check_format(data: Any, source: str, *, written_by: str | None = None, saved: bool = False) -> None:
    """Refuse a spec of another format in one line; a missing version is this format unless ``saved``."""
    import metavoxel

    if not isinstance(data, dict) or (data.get("format_version", None if saved else SPEC_FORMAT) == SPEC_FORMAT):
        return
    version = data.get("format_version")
    by = f"metavoxel {written_by}" if written_by else "another metavoxel"
    what = (f"was saved by {by} before spec formats were numbered" if version is None
            else f"is in spec format {version!r}" + (f" (saved by {by})" if written_by else ""))
    raise SpecError(f"{source} {what}; this metavoxel ({metavoxel.__version__}) reads spec format {SPEC_FORMAT} "
                    "only: retrain the model with this metavoxel, or load it with the metavoxel that wrote it")


def format_errors(err: ValidationError) -> str:
    """'path: message' for every error, joined on one line."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _variables_adapter(registry: Registry) -> TypeAdapter:
    models = [kind.spec for kind in registry.kinds()]
    if not models:
        raise SpecError("no variable kinds are installed; reinstall metavoxel (its built-in kinds are plugins) "
                        "or check METAVOXEL_DISABLE_PLUGINS")
    return TypeAdapter(list[_variable_union(models)])


def _variable_union(models: list[type]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Discriminator("kind")]  # noqa: UP007 - runtime-built union


def spec_json_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of `ModelSpec` with the variables union of ``registry``'s kinds."""
    concrete = create_model("ModelSpec", __base__=ModelSpec,
                            variables=(list[_variable_union([k.spec for k in registry.kinds()])], Field(min_length=1)))
    schema = concrete.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "metavoxel ModelSpec"
    return schema
