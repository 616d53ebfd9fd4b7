"""The sampling grid decides whether an exact network's samples keep their spread (metavoxel.diffusion.grid).

Age is given a known Gaussian posterior N(m, s²) (z units) by an exact eps network; the image and the group
get zero outputs. The last reverse step returns E[x0 | z_{t_1}] and drops Var[x0 | z_{t_1}]: from t_1 = 20
(uniform, 50 steps of T = 1000) that is a large share of s²; from t_1 = 1 (quadratic) almost none.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.sampling import sample
from metavoxel.spec import ModelSpec

M, S_TRUE = 0.2, 0.15


@pytest.fixture(scope="module")
def model():
    return mv.JointModel(tiny_spec_2d(diffusion={"timesteps": 1000, "sampling_steps": 50}))


def exact_network(model):
    abar = model.variables["age"].process.abar.float()

    def net(z, t, keep=None):
        level = t["age"] if isinstance(t, dict) else t
        a = abar[level].reshape(-1, 1)
        eps = (1 - a).sqrt() * (z["age"] - a.sqrt() * M) / (a * S_TRUE ** 2 + 1 - a)  # E[eps | z_t], x0 ~ N(M, s²)
        return {"image": torch.zeros_like(z["image"]), "age": eps, "group": torch.zeros(len(level), 3)}

    return net


def drawn_sd(model, grid: str) -> tuple[float, float]:
    result = sample(model.diffusion, exact_network(model), {"image": torch.rand(1, 1, 8, 8)},
                    options=SamplingOptions(num_samples=2000, seed=0, steps=50, grid=grid))
    assert result.grid == grid and result.to_dict()["grid"] == grid
    z = model.variables["age"].encode(result.samples["age"].flatten()).double()
    return float(z.mean()), float(z.std())


def test_the_quadratic_grid_keeps_the_posterior_spread_the_uniform_grid_loses(model) -> None:
    mean_u, sd_u = drawn_sd(model, "uniform")
    mean_q, sd_q = drawn_sd(model, "quadratic")
    assert abs(mean_u - M) < 0.02 and abs(mean_q - M) < 0.02  # both centred on the posterior mean
    assert sd_u < 0.7 * S_TRUE, f"uniform grid: SD {sd_u:.3f} (expected well below {S_TRUE})"
    assert sd_q > 0.85 * S_TRUE, f"quadratic grid: SD {sd_q:.3f} (expected near {S_TRUE})"


def test_a_spec_samples_on_the_quadratic_grid_unless_it_names_the_uniform_one(model) -> None:
    assert ModelSpec.model_validate(tiny_spec_2d()).diffusion.grid == "quadratic"
    assert model.diffusion.grid == "quadratic"
    saved = json.loads(json.dumps(model.spec.to_dict()))
    assert saved["diffusion"]["grid"] == "quadratic"  # a saved spec names it, so it loads as written
    saved["diffusion"]["grid"] = "uniform"
    assert mv.JointModel(saved).diffusion.grid == "uniform"
