"""Per-variable noise levels for training: which variables are clean, noised or pure prior noise, per record.

The paper trains with one shared step t for every variable of a record. Models that condition well also
see some variables clean while others are noised: CSDI (Tashiro et al. 2021) trains with conditional
masks, UniDiffuser (Bao et al. 2023) draws one timestep per modality (t = 0 for a condition). A
`LevelMixture` declares how often each recipe is drawn; `draw_levels` draws them per record.

Levels are integer steps 0..T (`metavoxel.processes.schedules`): 0 is the clean value, T the prior. The
image variables share the U-Net's grid and therefore one level; they form one *group* here. A spatial
variable may also get a random keep-mask (`keep_mask`): known voxels, clean, shown to the network as
extra input channels while its state stays noised everywhere (the inpainting-model habit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["CLEAN_AT_T", "LevelMixture", "draw_levels", "keep_mask"]

CLEAN_AT_T = 0.2  # in the clean recipe, how often the noised rest sits exactly at T (what point predictions read)
COMPONENTS = ("shared", "clean", "independent", "prior")


@dataclass(frozen=True)
class LevelMixture:
    """Relative weights of the level recipes and the keep-mask probability (plain values of `TrainingSpec`).

    - shared: one t ~ U[1, T] for every variable (the paper's recipe).
    - clean: a random non-empty proper subset of groups at 0, the rest at one shared t ~ U[1, T] (T with
      extra probability `CLEAN_AT_T`).
    - independent: each group its own t ~ U[1, T].
    - prior: a random non-empty proper subset of groups at T, the rest either all clean or all at one t.
    - keep_masks: probability that a record's noised image variables get a random keep-mask.
    """

    shared: float = 1.0
    clean: float = 0.0
    independent: float = 0.0
    prior: float = 0.0
    keep_masks: float = 0.0

    @property
    def is_paper(self) -> bool:
        """Exactly the paper's recipe: shared t only, no keep-masks (training draws stay bit-identical)."""
        return self.clean == self.independent == self.prior == self.keep_masks == 0.0

    def weights(self) -> torch.Tensor:
        return torch.tensor([self.shared, self.clean, self.independent, self.prior], dtype=torch.float64)


def draw_levels(groups: Sequence[Sequence[str]], n: int, timesteps: int, mixture: LevelMixture,
                generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw each record's recipe and every group's level.

    Args:
        groups: the variables that share a level (all image variables form one group; each scalar its own).
        n: B, the number of records.
        timesteps: T.
        mixture: the recipe weights.
        generator: every draw, for reproducibility.
        device: where the levels go.

    Returns:
        ``(component (B,) long index into shared/clean/independent/prior, {name: (B,) long level})``.
    """
    T, g = int(timesteps), len(groups)
    rand = lambda *shape: torch.rand(shape, generator=generator, device=device)  # noqa: E731
    steps = lambda *shape: torch.randint(1, T + 1, shape, generator=generator, device=device)  # noqa: E731
    component = torch.multinomial(mixture.weights().to(device), n, replacement=True, generator=generator)  # (B,)
    shared = steps(n)  # (B,)
    shared = torch.where((component == 1) & (rand(n) < CLEAN_AT_T), torch.full_like(shared, T), shared)
    own = steps(n, g)  # (B, G)
    subset = _proper_subsets(n, g, generator, device)  # (B, G) bool, non-empty and not every group
    rest_clean = rand(n) < 0.5  # (B,) in the prior recipe: the others clean, or at the shared t
    level = shared[:, None].expand(n, g).clone()  # (B, G)
    level = torch.where((component == 1)[:, None] & subset, torch.zeros_like(level), level)
    level = torch.where((component == 2)[:, None], own, level)
    rest = torch.where(rest_clean[:, None], torch.zeros_like(level), shared[:, None].expand(n, g))
    prior = torch.where(subset, torch.full_like(level, T), rest)
    level = torch.where((component == 3)[:, None], prior, level)
    if g == 1:  # one group: no proper subset exists; clean/prior records fall back to the shared level
        level = shared[:, None]
    return component, {name: level[:, i] for i, members in enumerate(groups) for name in members}


def _proper_subsets(n: int, g: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(B, G) bool: a uniform random non-empty proper subset of G groups per record (all False when G < 2)."""
    if g < 2:
        return torch.zeros(n, g, dtype=torch.bool, device=device)
    code = torch.randint(1, 2**g - 1, (n,), generator=generator, device=device)  # (B,) in 1..2^G - 2
    bits = 2 ** torch.arange(g, device=device)  # (G,)
    return (code[:, None] & bits) > 0


def keep_mask(n: int, grid: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(B, 1, *grid) float random keep-masks, 1 = the voxel is known: a half, a box or a blob, equally often.

    Half: one side of the grid along a random axis. Box: a random box of 1/4 to 3/4 of each side.
    Blob: a random ball (centre inside the grid, radius 1/5 to 1/2 of the smallest side).
    """
    dims = len(grid)
    coords = torch.meshgrid(*(torch.arange(s, device=device, dtype=torch.float32) for s in grid), indexing="ij")
    sizes = torch.tensor(list(grid), device=device, dtype=torch.float32)  # (D,)
    u = torch.rand(n, 4 * dims + 3, generator=generator, device=device)  # every draw at once, fixed order
    kind = (u[:, 0] * 3).long().clamp(max=2)  # (B,) 0 half, 1 box, 2 blob
    axis = (u[:, 1] * dims).long().clamp(max=dims - 1)  # (B,)
    side = u[:, 2] < 0.5
    masks = []
    for i in range(n):
        if kind[i] == 0:
            x = coords[int(axis[i])]
            half = sizes[int(axis[i])] / 2
            m = x < half if side[i] else x >= half
        elif kind[i] == 1:
            extent = (0.25 + 0.5 * u[i, 3:3 + dims]) * sizes  # (D,)
            start = u[i, 3 + dims:3 + 2 * dims] * (sizes - extent)
            m = torch.ones(tuple(grid), dtype=torch.bool, device=device)
            for d in range(dims):
                m &= (coords[d] >= start[d].floor()) & (coords[d] < (start[d] + extent[d]).ceil())
        else:
            centre = u[i, 3 + 2 * dims:3 + 3 * dims] * sizes
            radius = (0.2 + 0.3 * u[i, 3 + 3 * dims]) * sizes.min()
            m = sum((coords[d] - centre[d]) ** 2 for d in range(dims)) <= radius ** 2
        masks.append(m)
    return torch.stack(masks)[:, None].float()  # (B, 1, *grid)
