"""Attention module and spatial transformer block: math against a hand computation, backend switch."""

from __future__ import annotations

import math

import pytest
import torch

import metavoxel.nn.attention as attention_module
from metavoxel.errors import InputError
from metavoxel.nn import Attention, SpatialTransformer


def _hand_attention(module: Attention, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Per-example, per-head softmax attention written out with explicit loops and exp / sum."""
    heads, d = module.num_heads, module.head_dim
    out = torch.zeros(x.shape[0], x.shape[1], heads * d, dtype=torch.float64)
    wq, wk, wv = (w.weight.double() for w in (module.to_q, module.to_k, module.to_v))
    for b in range(x.shape[0]):
        q, k, v = x[b].double() @ wq.T, context[b].double() @ wk.T, context[b].double() @ wv.T
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            logits = q[:, cols] @ k[:, cols].T / math.sqrt(d)  # (N, M)
            weights = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
            out[b, :, cols] = weights @ v[:, cols]
    return out @ module.to_out.weight.double().T + module.to_out.bias.double()


def test_self_attention_matches_hand_computation():
    module = Attention(query_dim=6, num_heads=2, head_dim=3, backend="torch")
    x = torch.randn(2, 5, 6)
    expected = _hand_attention(module, x, x)
    torch.testing.assert_close(module(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_cross_attention_matches_hand_computation():
    module = Attention(query_dim=8, num_heads=4, head_dim=2, context_dim=3, backend="torch")
    x, context = torch.randn(3, 7, 8), torch.randn(3, 2, 3)
    expected = _hand_attention(module, x, context)
    out = module(x, context)
    assert out.shape == (3, 7, 8)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_backend_reaches_the_kernel(monkeypatch):
    seen = []
    real = attention_module.attention

    def spy(q, k, v, *, scale=None, backend=None):
        seen.append(backend)
        return real(q, k, v, scale=scale, backend=backend)

    monkeypatch.setattr(attention_module, "attention", spy)
    module = Attention(4, 1, 4, backend="auto")
    module(torch.randn(1, 3, 4))
    module.backend = "torch"
    module(torch.randn(1, 3, 4))
    assert seen == ["auto", "torch"]


@pytest.mark.parametrize("name", ["flash", "TORCH", ""])
def test_invalid_backend_raises(name):
    with pytest.raises(InputError, match="auto, triton, torch"):
        Attention(4, 1, 4, backend=name)
    module = Attention(4, 1, 4)
    with pytest.raises(InputError, match=repr(name)):
        module.backend = name
    assert module.backend is None


@pytest.mark.parametrize("spatial", [(4, 6), (2, 4, 3)])
def test_spatial_transformer_starts_as_identity_and_keeps_shape(spatial, nudge):
    block = SpatialTransformer(channels=16, num_head_channels=8, norm_num_groups=4, context_dim=5)
    x, context = torch.randn(2, 16, *spatial), torch.randn(2, 3, 5)
    torch.testing.assert_close(block(x, context), x)
    nudge(block)
    out = block(x, context)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


def test_spatial_transformer_is_equivariant_to_voxel_order(nudge):
    # No positional encoding: permuting the voxels permutes the output the same way (catches reshapes that
    # mix the channel and voxel axes).
    block = nudge(SpatialTransformer(channels=8, num_head_channels=4, norm_num_groups=4, context_dim=3))
    x, context = torch.randn(2, 8, 3, 5), torch.randn(2, 2, 3)
    perm = torch.randperm(15)
    permuted = x.flatten(2)[..., perm].reshape(x.shape)  # (B, C, 3, 5) with voxels shuffled
    expected = block(x, context).flatten(2)[..., perm].reshape(x.shape)
    torch.testing.assert_close(block(permuted, context), expected, rtol=1e-5, atol=1e-5)


def test_spatial_transformer_attends_to_context(nudge):
    block = nudge(SpatialTransformer(channels=8, num_head_channels=4, norm_num_groups=4, context_dim=3))
    x, context = torch.randn(1, 8, 4, 4), torch.randn(1, 2, 3)
    assert not torch.allclose(block(x, context), block(x, context + 1.0))


def test_spatial_transformer_mixes_voxels(nudge):
    block = nudge(SpatialTransformer(channels=8, num_head_channels=4, norm_num_groups=4))
    x = torch.randn(1, 8, 4, 4)
    changed = x.clone()
    changed[..., 3, 3] += 1.0
    # Self-attention: a change at one voxel moves the output at a distant voxel.
    assert not torch.allclose(block(x)[..., 0, 0], block(changed)[..., 0, 0])


def test_spatial_transformer_with_cross_attention_requires_context():
    block = SpatialTransformer(channels=8, num_head_channels=4, norm_num_groups=4, context_dim=3)
    with pytest.raises(InputError, match="expected tokens"):
        block(torch.randn(1, 8, 2, 2))
