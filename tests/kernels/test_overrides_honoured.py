"""A plugin kind that subclasses a built-in kind and overrides the steps the fast path would replace is called.

The test distribution ``metavoxel-counting`` (tests/plugins/counting_plugin) is pip-installed offline like a
user's plugin; its kinds count every call of their ``corrupt``, ``renoise`` and ``reverse_step``. Each override
must be called while its variable is trained, sampled free and sampled fixed — on the CPU path and on the
CUDA path of the categorical group (forced on, under Triton's interpreter).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_specs import TINY_NET_2D

import metavoxel as mv
from metavoxel.diffusion import fused, process
from metavoxel.presets import PAPER_TRAINING

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "counting_plugin"


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    """The installed plugin module, its kinds reachable through the ``metavoxel`` entry-point group."""
    tmp = tmp_path_factory.mktemp("counting")
    source = shutil.copytree(SOURCE, tmp / "src")
    target = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    saved = list(sys.path)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield importlib.import_module("metavoxel_counting.plugin")
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.startswith("metavoxel_counting")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def model(counting):
    counting.CALLS.clear()
    spec = {
        "name": "counting",
        "variables": [
            {"name": "image", "kind": "image", "channels": 1, "shape": [8, 8]},
            {"name": "age", "kind": "counting_continuous", "range": [40.0, 95.0]},
            {"name": "sex", "kind": "counting_categorical", "categories": ["F", "M"]},
            {"name": "group", "kind": "categorical", "categories": ["A", "B", "C"]},
        ],
        "diffusion": {"timesteps": 50, "sampling_steps": 3, "training": dict(PAPER_TRAINING),
                      "conditioning": "repaint"},  # RePaint: renoise runs
        "network": TINY_NET_2D,
    }
    return mv.JointModel(spec, registry=mv.build_registry(strict=True))


def _calls(counting, kind: str) -> dict[str, int]:
    return {m: counting.CALLS[(kind, m)] for m in ("corrupt", "renoise", "reverse_step")}


def test_overrides_decline_the_fast_path_and_built_ins_keep_it(model):
    gaussian = fused.GaussianGroup(model.variables, "torch", torch.device("cpu"))
    categorical = fused.CategoricalGroup(model.variables, "torch", torch.device("cpu"), active=True)
    assert list(gaussian.paths) == ["image"] and list(categorical.paths) == ["group"]


def test_overrides_are_called_in_training(model, counting):
    model.training_losses({"image": torch.rand(3, 1, 8, 8), "age": [50.0, 60.0, 70.0], "sex": ["F", "M", "F"]})
    for kind in ("counting_continuous", "counting_categorical"):
        assert _calls(counting, kind)["corrupt"] == 1, kind


def test_overrides_are_called_when_free_and_when_fixed(model, counting):
    model.sample(num_subjects=2, seed=0)
    for kind in ("counting_continuous", "counting_categorical"):
        assert _calls(counting, kind)["reverse_step"] == 3, kind  # one per reverse step
    counting.CALLS.clear()
    model.sample(fix={"age": [50.0, 70.0], "sex": ["F", "M"]}, seed=0)
    for kind in ("counting_continuous", "counting_categorical"):
        assert _calls(counting, kind)["renoise"] == 4, kind  # at the start and after each of the 3 steps


@pytest.mark.usefixtures("interpreter")
def test_overrides_are_called_on_the_cuda_path_of_the_categorical_group(model, counting, monkeypatch):
    launches = []
    real = fused.kernels.categorical_step
    monkeypatch.setattr(fused.kernels, "categorical_step", lambda *a, **k: launches.append(1) or real(*a, **k))
    monkeypatch.setattr(process.JointDiffusion, "categorical_group",
                        lambda self: fused.CategoricalGroup(self.variables, "triton", self.device, active=True))
    model.sample(fix={"sex": ["F", None]}, num_subjects=2, seed=0)
    assert len(launches) == 3  # the built-in categorical took the fused kernel at every step...
    assert _calls(counting, "counting_categorical")["reverse_step"] == 3  # ...the override its own step
    assert _calls(counting, "counting_categorical")["renoise"] == 4
