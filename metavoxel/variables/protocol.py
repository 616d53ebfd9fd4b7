"""The Variable protocol: everything the engine knows about a variable.

A *kind* (continuous, categorical, image, ... — supplied by a plugin) builds one `Variable` per
declared variable from its validated spec. The engine never looks further than this protocol, so a
third-party kind with its own forward process plugs in unchanged. Every kind, built-in or not, must pass
the conformance suite in `metavoxel.testing`.

Three spaces, three words:
- *raw*: what a user gives (``72.5``, ``"F"``, a voxel tensor, ``None``/NaN for missing).
- *values*: a canonical tensor in the variable's own units (float years, long class index, voxels).
- *z*: the diffusion space the process runs in (scaled scalar, class index, VAE latent). ``z0`` is clean.

Time follows `metavoxel.processes.schedules`: integer steps, ``t`` and ``s`` per sample of shape (B,).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["BuildContext", "ScalarHead", "SpatialHead", "Variable", "VariableKind", "missing_members", "protocol_members"]


@dataclass(frozen=True)
class SpatialHead:
    """A spatial variable: ``channels`` input channels on the diffusion grid ``shape``, read back from the decoder."""

    channels: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ScalarHead:
    """A scalar variable: constant input channels, one cross-attention token and a bottleneck head.

    A variable with this head also implements ``token_input(z_t) -> (B, token_features)``, the raw
    features of its cross-attention token.

    Args:
        channel_features: width of `Variable.channel_input` (broadcast as constant input channels).
        token_features: width of `Variable.token_input` (projected to one cross-attention token).
        out_features: width of the bottleneck head's output (1 for a continuous value, K logits, ...).
    """

    channel_features: int
    token_features: int
    out_features: int


SCALAR_MEMBERS = ("token_input",)  # scalar kinds also implement token_input(z_t) -> (B, token_features)


@runtime_checkable
class Variable(Protocol):
    """One variable of a joint model. Shapes: B records; ``*z`` is the per-record shape of z."""

    name: str
    kind: str
    head: SpatialHead | ScalarHead

    # -- encoder ------------------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """A raw value from command-line text (``"72.5"``, ``"F"``, ``"scan.nii.gz"``); InputError if bad."""

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw values for B records -> (values (B, ...), present (B,) bool). Missing records are marked absent."""

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """values (B, ...) -> z0 (B, *z)."""

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """z0 (B, *z) -> values (B, ...)."""

    def format(self, values: torch.Tensor) -> list[Any]:
        """values (B, ...) -> plain Python objects for reports (floats, labels, ...)."""

    def diffusion_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A known-region mask in value space (B, 1 or C, ...) -> a bool mask broadcastable to z (B, *z)."""

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n valid values, for the conformance suite and property tests."""

    # -- forward corruption -------------------------------------------------------------------
    def prior(self, n: int, *, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        """z_T for n records, drawn from the process's prior."""

    def corrupt(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> tuple[torch.Tensor, Any]:
        """(z_t, target) for training: the corrupted state and whatever `loss` compares the output with."""

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        """A known value brought to level t (a draw from q(z_t | z0)); ``t = 0`` returns z0 exactly."""

    def undo(self, z_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        """Jump forward from level s to level t > s (a draw from q(z_t | z_s)); used by RePaint resampling."""

    def reverse_step(self, z_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     eta: float, generator: torch.Generator | None) -> torch.Tensor:
        """One strided reverse step from level t to s < t given the network output for this variable."""

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, out: torch.Tensor, target: Any) -> torch.Tensor:
        """Per-record loss (B,) of the network output against the target from `corrupt`."""

    # -- head -----------------------------------------------------------------------------------
    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        """What enters the U-Net input: spatial (B, C, *grid); scalar (B, channel_features)."""

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        """Summaries over the sample axis of values (N, S, ...): ``{key: [N per-subject items]}``.

        The one summary contract (`metavoxel.variables.summaries`): one or more identifier keys, each a list
        of N items; an item is a finite number, a string, or a list of finite numbers (one length for all
        subjects). ``mean``/``median``/``majority``/``mode`` (the first present) is the point estimate and
        ``probs`` holds class probabilities; ``metavoxel sample`` and ``predict`` render any other key as it
        is. A summary outside the contract raises `metavoxel.PluginError` before anything is written.
        """

    def modules(self) -> dict[str, torch.nn.Module]:
        """Frozen sub-networks the variable owns (e.g. a VAE), so the model moves and saves them."""


def protocol_members() -> list[str]:
    """Every attribute and method a `Variable` must have."""
    methods = (n for n, v in vars(Variable).items() if callable(v) and not n.startswith("_"))
    return sorted({*Variable.__annotations__, *methods})


def missing_members(variable: object) -> list[str]:
    """The protocol members ``variable`` lacks, including ``token_input`` for scalar heads."""
    required = protocol_members()
    if isinstance(getattr(variable, "head", None), ScalarHead):
        required += SCALAR_MEMBERS
    return [m for m in required if not hasattr(variable, m)]


@dataclass(frozen=True)
class BuildContext:
    """What a kind needs from the model spec to build a variable: plain values, no pydantic.

    Args:
        timesteps: T, the number of diffusion steps.
        schedules: process family (``"gaussian"``, ``"discrete"``, ...) -> abar table (T + 1,) float64.
        spatial_dims: 2 or 3.
        seed: the model seed (for anything a kind initialises at random).
        load_weights: False when the model's weights come from a checkpoint afterwards, so kinds skip
            loading pretrained files named in their spec (e.g. a VAE's weights).
    """

    timesteps: int
    schedules: dict[str, torch.Tensor]
    spatial_dims: int
    seed: int = 0
    load_weights: bool = True

    def schedule(self, family: str) -> torch.Tensor:
        if family not in self.schedules:
            raise KeyError(f"no {family!r} schedule in the diffusion spec; known: {sorted(self.schedules)}")
        return self.schedules[family]


@dataclass(frozen=True)
class VariableKind:
    """A kind of variable that a plugin provides.

    Args:
        name: the value of ``kind:`` in a spec (e.g. ``"continuous"``).
        spec: pydantic model of the kind's parameters; subclasses `metavoxel.VariableSpec` with
            ``kind: Literal[name]``.
        build: ``build(spec, context) -> Variable``.
        description: one line for ``metavoxel plugins``.
        examples: parameter sets (without ``name``/``kind``) the conformance suite builds.
    """

    name: str
    spec: type
    build: Callable[[Any, BuildContext], Variable]
    description: str = ""
    examples: tuple[dict[str, Any], ...] = field(default_factory=tuple)
