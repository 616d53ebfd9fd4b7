"""A whole zero-shot sampling run on the Triton kernels (interpreted on the CPU) equals the PyTorch path."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_specs import tiny_latent_spec_3d

import metavoxel as mv

pytestmark = pytest.mark.usefixtures("interpreter")


def _model(kernels: str) -> mv.JointModel:
    spec = copy.deepcopy(tiny_latent_spec_3d())
    spec["network"]["attention_backend"] = kernels  # the U-Net's attention
    spec["diffusion"]["kernels"] = kernels  # the fused noising, DDIM/RePaint and D3PM steps
    model = mv.JointModel(spec)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # give the zero-initialised output layers weights, so every path matters
        for p in model.net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_triton_sampling_equals_torch_sampling(eta):
    torch_model, triton_model = _model("torch"), _model("triton")
    images = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 8, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    kwargs = dict(fix={"image": images, "sex": ["F", None]}, masks={"image": mask}, num_samples=2, steps=4,
                  seed=3, eta=eta)
    expected = torch_model.sample(**kwargs)
    got = triton_model.sample(**kwargs)
    torch.testing.assert_close(got.samples["image"], expected.samples["image"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.samples["age"], expected.samples["age"], rtol=1e-4, atol=1e-3)
    assert torch.equal(got.samples["sex"], expected.samples["sex"])
    assert torch.equal(got.samples["image"][..., :4], images[:, None, ..., :4].expand(-1, 2, -1, -1, -1, -1))


def test_triton_training_loss_equals_torch():
    torch_model, triton_model = _model("torch"), _model("triton")
    batch = {"image": torch.rand(3, 1, 8, 8, 8), "age": [50.0, None, 80.0], "sex": ["F", "M", None]}
    a = torch_model.training_losses(batch, generator=torch.Generator().manual_seed(0))
    b = triton_model.training_losses(batch, generator=torch.Generator().manual_seed(0))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_categorical_group_steps_every_categorical_in_one_kernel_call(monkeypatch):
    from metavoxel.diffusion import fused
    from metavoxel.diffusion.known import Known

    model = _model("triton")
    assert not fused.CategoricalGroup(model.variables, "triton", model.device).paths  # off CUDA: own reverse_step
    group = fused.CategoricalGroup(model.variables, "triton", model.device, active=True)  # as on CUDA
    assert list(group.paths) == ["sex"]
    calls = []
    real = fused.kernels.categorical_step
    monkeypatch.setattr(fused.kernels, "categorical_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    b = 6
    z = {"sex": torch.tensor([0, 1, 0, 1, 1, 0])}
    out = {"sex": torch.randn(b, 2)}
    known = {"sex": Known(torch.ones(b, dtype=torch.long), torch.tensor([True, False] * 3), torch.ones(b, dtype=torch.long),
                          torch.tensor([True, False] * 3))}
    z_s = group.step(z, out, torch.full((b,), 30), torch.zeros(b, dtype=torch.long), known,
                     torch.Generator().manual_seed(0))
    assert calls == [1]
    assert z_s["sex"].dtype == torch.long and z_s["sex"].shape == (b,)
    assert z_s["sex"][::2].tolist() == [1, 1, 1]  # known classes at level 0 come back exactly
    assert set(z_s["sex"].tolist()) <= {0, 1}
