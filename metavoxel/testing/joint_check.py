"""The conformance suite's end-to-end check: a kind trains a tiny `JointModel` and is sampled free and fixed.

Only the public engine API is used (`metavoxel.JointModel`, its ``training_losses`` and ``sample``), so the
check proves what a user of the kind relies on. A scalar kind is paired with a small private image kind
(`GRID`, a 2D 8×8 Gaussian pixel grid built here), because a joint model needs one image variable; a spatial
kind is modelled with a twin of itself on its own grid (one fixed, the other sampled).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from metavoxel.errors import InputError
from metavoxel.processes.gaussian import GaussianProcess
from metavoxel.spec import VariableSpec
from metavoxel.variables.gaussian import GaussianVariable
from metavoxel.variables.protocol import ScalarHead, SpatialHead, VariableKind
from metavoxel.variables.summary_contract import summary_problem

__all__ = ["GRID", "check_joint_model"]

TRAIN_STEPS, RECORDS, SAMPLE_STEPS = 3, 4, 3
GRID_NAME = "conformance_grid"


class GridSpec(VariableSpec):
    """The private image kind of the end-to-end check."""

    kind: Literal["conformance_grid"]


class Grid(GaussianVariable):
    """values (B, 1, 8, 8) in [0, 1] <-> z = 2 v - 1; pixel-space Gaussian diffusion."""

    kind = GRID_NAME

    def __init__(self, name: str, abar: torch.Tensor):
        self.name, self.process, self.z_shape = name, GaussianProcess(abar), (1, 8, 8)
        self.head = SpatialHead(channels=1, shape=(8, 8))

    def parse(self, text: str) -> Any:
        raise InputError(f"{self.name}: the conformance grid takes tensors only, got {text!r}")

    def values(self, raw: Any, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(raw, torch.Tensor):
            return raw.float().to(device), torch.ones(len(raw), dtype=torch.bool, device=device)
        present = torch.tensor([r is not None for r in raw], dtype=torch.bool)
        stacked = torch.stack([r if r is not None else torch.zeros(1, 8, 8) for r in raw]).float()
        return stacked.to(device), present.to(device)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return 2 * values.float() - 1

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        return (z0.float() + 1) / 2

    def format(self, values: torch.Tensor) -> list[Any]:
        return [tuple(v.shape) for v in values]

    def example_values(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((n, 1, 8, 8), generator=generator)

    def channel_input(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t

    def summarize(self, samples: torch.Tensor) -> dict[str, Any]:
        return {"mean": samples.mean(dim=1)}


GRID = VariableKind(name=GRID_NAME, spec=GridSpec, build=lambda spec, ctx: Grid(spec.name, ctx.schedule("gaussian")),
                    description="The conformance suite's 8x8 test image.", examples=({},))

_NETWORK = {"channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1, "num_head_channels": 8,
            "norm_num_groups": 4, "cross_attention_dim": 16}


def _registry(kind: VariableKind):
    from metavoxel.plugins.hookspecs import hookimpl
    from metavoxel.plugins.registry import PluginOrigin, build_registry

    class _Plugin:
        @staticmethod
        @hookimpl
        def metavoxel_register_kinds(registry) -> None:
            registry.add(kind)
            if kind.name != GRID_NAME:
                registry.add(GRID)

    return build_registry([(_Plugin(), PluginOrigin("conformance", "metavoxel.testing"))], entry_points=False)


def check_joint_model(case) -> None:
    """The kind trains a tiny JointModel a few steps (finite losses), is sampled free (values it accepts,
    a summary in the contract) and fixed (the given values come back)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads mostly wait for each other
    try:
        _check_joint_model(case)
    finally:
        torch.set_num_threads(threads)


def _check_joint_model(case) -> None:
    from metavoxel.diffusion import JointModel

    kind, var = case.kind, case.var
    spatial = isinstance(var.head, SpatialHead)
    variables = [{"name": "v", "kind": kind.name, **case.params}]
    # a joint model needs an image: a scalar kind gets the private grid; a spatial kind a twin on its own grid
    variables.append({"name": "w", "kind": kind.name, **case.params} if spatial else {"name": "grid", "kind": GRID_NAME})
    dims = len(case.params["shape"]) if spatial else 2
    spec = {"name": "conformance", "variables": variables, "diffusion": {"timesteps": 20, "sampling_steps": 3},
            "network": {**_NETWORK, "spatial_dims": dims}}
    torch.manual_seed(0)
    model = JointModel(spec, registry=_registry(kind))
    gen = torch.Generator().manual_seed(0)
    batch = {"v": model.variables["v"].example_values(RECORDS, gen)}
    batch["w" if spatial else "grid"] = (model.variables["w"].example_values(RECORDS, gen) if spatial else
                                         torch.rand((RECORDS, 1, 8, 8), generator=gen))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(TRAIN_STEPS):
        losses = model.training_losses(batch, generator=torch.Generator().manual_seed(step))
        loss = losses["loss"]
        assert loss.shape == (RECORDS,) and torch.isfinite(loss).all(), f"training loss at step {step}: {loss}"
        optimiser.zero_grad()
        loss.mean().backward()
        optimiser.step()
    model.eval()

    v = model.variables["v"]
    free = model.sample(num_subjects=2, num_samples=2, steps=SAMPLE_STEPS, seed=0)
    drawn = free.samples["v"]  # (N, S, ...)
    assert drawn.shape[:2] == (2, 2), f"free samples have shape {tuple(drawn.shape)}, expected (2, 2, ...)"
    _values, present = v.values(drawn.reshape(4, *drawn.shape[2:]))
    assert present.all(), "values() marks sampled values as missing; samples must be values the kind accepts"
    if isinstance(v.head, ScalarHead):
        problem = summary_problem(free.summary("v"), 2)
        assert problem is None, f"summary of sampled values: {problem}"
        assert len(free.labels("v")) == 2, "format must give one object per sampled record"

    given = batch["v"][:2]
    fixed = model.sample(fix={"v": given}, num_samples=1, steps=SAMPLE_STEPS, seed=0)
    assert fixed.is_fixed("v"), "a fixed variable must be reported as fixed"
    back = fixed.samples["v"][:, 0]
    values = v.values(given)[0]
    assert back.shape == values.shape, f"fixed values come back with shape {tuple(back.shape)}, not {tuple(values.shape)}"
    # the given value itself, or (a lossy kind without pasting back) its decode(encode(value))
    close = [torch.allclose(back.double(), x.double(), rtol=1e-4, atol=1e-4) for x in (values, v.decode(v.encode(values)))]
    assert any(close), (f"a fixed value must come back unchanged; largest difference "
                        f"{float((back.double() - values.double()).abs().max()):g}")
    assert fixed.samples["w" if spatial else "grid"].shape[:2] == (2, 1), "the free image was not sampled"
