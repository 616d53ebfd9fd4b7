"""Deviation maps (`metavoxel.diffusion.deviation`) on a network whose eps is exact: the z-score is the known one.

The oracle's images, given age: z0 = mu(age) + s n voxelwise (mu = 0.4 z_age), so in values (the pixel kind maps
z to (z + 1) / 2) a voxel is N((mu + 1) / 2, (s / 2)^2), and the z-score of a scan x is (x - (mu + 1) / 2) / (s / 2).
"""

from __future__ import annotations

import pytest
import torch
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.deviation import deviation_map
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.errors import InputError
from metavoxel.presets import RECOMMENDED_TRAINING

SLOPE, S = 0.4, 0.2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    spec = tiny_spec_2d(diffusion={"timesteps": 1000, "sampling_steps": 20, "training": dict(RECOMMENDED_TRAINING),
                                   "conditioning": "clean"})
    return mv.JointModel(spec)


def oracle(model):
    process = model.variables["image"].process

    def net(z, levels, keep=None):
        t = levels["image"] if isinstance(levels, dict) else levels
        x = z["image"].double()
        a = process.abar[t.cpu()].to(x).reshape(-1, 1, 1, 1)
        mu = SLOPE * z["age"].double().reshape(-1, 1, 1, 1)
        eps = (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * S * S + 1 - a)
        return {"image": eps.float(), "age": torch.zeros_like(z["age"]), "group": torch.zeros(len(t), 3)}

    return net


def test_the_z_score_is_the_true_one(model):
    ages = [50.0, 85.0]
    x = torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    result = deviation_map(model.diffusion, oracle(model), {"image": x, "age": ages, "group": ["A", "B"]},
                           SamplingOptions(num_samples=400, steps=100, eta=0.0, seed=1), floor=1e-3)
    mu = SLOPE * model.variables["age"].encode(torch.tensor(ages)).reshape(-1, 1, 1, 1)
    truth = (x - (mu + 1) / 2) / (S / 2)
    # S = 400 samples know the SD to ~4 %; a strided sampler's spread is itself a little narrow (20 steps with
    # eta = 1: 20 % narrow here; 100 deterministic steps: 3 %), which inflates z as much
    assert (result.z - truth).abs().mean() < 0.15
    assert result.sd.mean().item() == pytest.approx(S / 2, rel=0.1)
    assert result.values == {"age": ages, "group": ["A", "B"]} and result.inferred == []


def test_values_not_given_are_inferred_and_the_floor_bounds_the_score(model):
    x = torch.full((1, 1, 8, 8), 0.5)
    result = deviation_map(model.diffusion, oracle(model), {"image": x, "age": [60.0]},
                           SamplingOptions(num_samples=3, steps=4), floor=10.0)
    assert result.inferred == ["group"] and result.z.abs().max() <= 0.1  # |x - mean| <= 1 over a floor of 10


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"options": SamplingOptions(num_samples=1)}, "at least 2 samples"),
    ({"floor": 0.0}, "floor must be > 0"),
    ({"reference": "atlas"}, "reference must be one of"),
])
def test_bad_requests_are_refused_in_one_line(model, kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        deviation_map(model.diffusion, oracle(model), {"image": torch.rand(1, 1, 8, 8), "age": [60.0]}, **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="give image"):
        deviation_map(model.diffusion, oracle(model), {"age": [60.0]})
