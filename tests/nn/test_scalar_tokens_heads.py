"""Token embedding (scalar variables → cross-attention tokens) and bottleneck scalar heads."""

from __future__ import annotations

import pytest
import torch

from metavoxel.errors import InputError
from metavoxel.nn import ScalarHead, TokenEmbedding


def test_tokens_have_one_row_per_variable():
    embed = TokenEmbedding([1, 3, 2], time_embed_dim=8, cross_attention_dim=5)
    tokens = [torch.randn(4, 1), torch.randn(4, 3), torch.randn(4, 2)]
    assert embed(tokens, torch.randn(4, 8)).shape == (4, 3, 5)


def test_identity_tells_variables_apart():
    embed = TokenEmbedding([1, 1], time_embed_dim=8, cross_attention_dim=5)
    with torch.no_grad():  # make both projections identical: only the identity embedding differs
        embed.projections[1].load_state_dict(embed.projections[0].state_dict())
    value = torch.ones(2, 1)
    out = embed([value, value], torch.randn(2, 8))
    assert not torch.allclose(out[:, 0], out[:, 1])
    with torch.no_grad():
        embed.identity.zero_()
    out = embed([value, value], torch.randn(2, 8))
    torch.testing.assert_close(out[:, 0], out[:, 1])


def test_tokens_depend_on_value_and_time():
    embed = TokenEmbedding([1, 2], time_embed_dim=8, cross_attention_dim=5)
    tokens, temb = [torch.zeros(1, 1), torch.tensor([[1.0, 0.0]])], torch.randn(1, 8)
    base = embed(tokens, temb)
    moved = embed([torch.ones(1, 1), tokens[1]], temb)
    assert not torch.allclose(base[:, 0], moved[:, 0])
    assert not torch.allclose(base, embed(tokens, temb + 1.0))


@pytest.mark.parametrize(
    "tokens, match",
    [
        ([torch.randn(2, 1)], "expected 2 scalar tokens"),
        ([torch.randn(2, 1), torch.randn(2, 2)], r"scalar token 1 must have shape \(B=2, 3\), got \(2, 2\)"),
        ([torch.randn(3, 1), torch.randn(2, 3)], r"scalar token 0 must have shape \(B=2, 1\)"),
    ],
)
def test_bad_tokens_raise(tokens, match):
    embed = TokenEmbedding([1, 3], time_embed_dim=8, cross_attention_dim=5)
    with pytest.raises(InputError, match=match):
        embed(tokens, torch.randn(2, 8))


@pytest.mark.parametrize("spatial_dims, out_features", [(2, 1), (2, 4), (3, 3)])
def test_head_width_and_zero_start(spatial_dims, out_features, nudge):
    head = ScalarHead(spatial_dims, in_channels=16, out_features=out_features, temb_channels=8, norm_num_groups=4)
    h, temb = torch.randn(2, 16, *([4] * spatial_dims)), torch.randn(2, 8)
    out = head(h, temb)
    assert out.shape == (2, out_features)
    assert torch.count_nonzero(out) == 0
    nudge(head)
    out = head(h, temb)
    assert torch.count_nonzero(out) == out.numel()
    assert not torch.allclose(out, head(h.flip(-1) * 2.0, temb))


def test_head_hidden_width_uses_a_projected_skip():
    head = ScalarHead(2, in_channels=8, out_features=2, temb_channels=4, norm_num_groups=4, hidden_channels=12)
    assert isinstance(head.block.skip_connection, torch.nn.Module)
    assert not isinstance(head.block.skip_connection, torch.nn.Identity)
    assert head(torch.randn(1, 8, 2, 2), torch.randn(1, 4)).shape == (1, 2)
