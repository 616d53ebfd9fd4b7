"""JointUNet: shapes in 2D/3D, validation, influence of every input, gradients, learning, backend switch."""

from __future__ import annotations

import pytest
import torch

import metavoxel.nn.attention as attention_module
from metavoxel.errors import InputError
from metavoxel.nn import JointUNet

TINY = dict(channels=(16, 32, 32), attention_levels=(False, True, True), num_head_channels=16, norm_num_groups=8,
            cross_attention_dim=16)  # fmt: skip


def _tokens(features, batch):
    return [torch.randn(batch, f) for f in features]


@pytest.mark.parametrize(
    "spatial_dims, spatial, token_features, head_features, overrides",
    [
        (2, (16, 16), [1, 3], [1, 3], {}),
        (2, (8, 16), [], [], {}),
        (2, (16, 12), [2], [5], dict(channels=(8, 16), attention_levels=(True, False), num_head_channels=8)),
        (2, (8, 8), [1], [1], dict(num_res_blocks=2)),
        (3, (8, 8, 8), [1, 2], [1, 2], dict(channels=(8, 16, 16), num_head_channels=8)),
        (3, (4, 8, 4), [], [], dict(channels=(8, 16), attention_levels=(False, False), num_head_channels=8)),
    ],
)
def test_output_shapes(spatial_dims, spatial, token_features, head_features, overrides):
    config = {**TINY, **overrides}
    net = JointUNet(spatial_dims, 3, 2, token_features, head_features, **config)
    x = torch.randn(2, 3, *spatial)
    out, scalars = net(x, torch.tensor([0, 999]), _tokens(token_features, 2))
    assert out.shape == (2, 2, *spatial)
    assert [tuple(s.shape) for s in scalars] == [(2, f) for f in head_features]
    # Zero-initialised output layers: every prediction starts at exactly 0 (diffusion-friendly).
    assert torch.count_nonzero(out) == 0 and all(torch.count_nonzero(s) == 0 for s in scalars)


def test_image_only_model_has_no_cross_attention_and_rejects_tokens():
    net = JointUNet(2, 1, 1, [], [], **TINY)
    assert net.token_embedding is None and len(net.heads) == 0
    assert all(m.to_k.in_features == m.to_q.in_features for m in net.attention_modules())
    with pytest.raises(InputError, match="without scalar variables"):
        net(torch.randn(1, 1, 8, 8), torch.tensor([1]), [torch.randn(1, 1)])


@pytest.mark.parametrize("spatial_dims, spatial, bad", [(2, (18, 16), "(18, 16)"), (3, (8, 8, 6), "(8, 8, 6)")])
def test_indivisible_shape_raises_with_the_fix(spatial_dims, spatial, bad):
    net = JointUNet(spatial_dims, 1, 1, [], [], **TINY)
    with pytest.raises(InputError) as info:
        net(torch.randn(1, 1, *spatial), torch.tensor([3]))
    message = str(info.value)
    assert bad in message and "divisible by 4" in message
    assert "crop or pad" in message and "network.channels" in message


def test_wrong_input_channels_and_timesteps_raise():
    net = JointUNet(2, 3, 1, [1], [1], **TINY)
    with pytest.raises(InputError, match=r"expected input \(B, 3, S0, S1\), got shape \(1, 2, 8, 8\)"):
        net(torch.randn(1, 2, 8, 8), torch.tensor([1]), [torch.randn(1, 1)])
    with pytest.raises(InputError, match=r"t must have shape \(B,\) = \(2,\), got \(3,\)"):
        net(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3]), [torch.randn(2, 1)])
    with pytest.raises(InputError, match="expected 1 scalar tokens"):
        net(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), [])


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(spatial_dims=4), "spatial_dims must be 2 or 3"),
        (dict(channels=(16, 32), attention_levels=(False, True, True)), "one flag per entry of channels"),
        (dict(channels=(16, 20, 32)), r"divisible by norm_num_groups=8.*\[20\]"),
        (dict(channels=(16, 24, 32)), r"divisible by num_head_channels=16.*\[24\]"),
        (dict(channels=()), "non-empty list"),
        (dict(head_features=[1]), "one entry per scalar variable"),
        (dict(token_features=[1, 0], head_features=[1, 1]), "token_features entries must be positive"),
        (dict(in_channels=0), "in_channels must be a positive integer"),
        (dict(num_res_blocks=0), "num_res_blocks must be a positive integer"),
        (dict(attention_backend="cuda"), "attention backend must be one of auto, triton, torch"),
    ],
)
def test_bad_constructor_arguments_raise(overrides, match):
    args = dict(spatial_dims=2, in_channels=2, out_channels=1, token_features=[1, 2], head_features=[1, 2], **TINY)
    args.update(overrides)
    with pytest.raises(InputError, match=match):
        JointUNet(**args)


def test_head_divisibility_only_checked_where_attention_runs():
    # 24 is not a multiple of 16 but level 1 has no attention: allowed.
    net = JointUNet(2, 1, 1, [], [], channels=(16, 24, 32), attention_levels=(False, False, True), num_head_channels=16)
    assert net(torch.randn(1, 1, 8, 8), torch.tensor([0]))[0].shape == (1, 1, 8, 8)


@pytest.fixture
def nudged_net(nudge):
    net = nudge(JointUNet(2, 2, 2, [1, 3], [1, 3], **TINY)).eval()
    x = torch.randn(2, 2, 16, 16)
    t = torch.tensor([10, 500])
    tokens = [torch.randn(2, 1), torch.eye(3)[[0, 2]]]
    return net, x, t, tokens


def _differs(a, b):
    out_a, scalars_a = a
    out_b, scalars_b = b
    return [not torch.allclose(out_a, out_b, atol=1e-6)] + [
        not torch.allclose(sa, sb, atol=1e-6) for sa, sb in zip(scalars_a, scalars_b)
    ]


@pytest.mark.parametrize("which", [0, 1])
def test_each_token_influences_image_and_heads(nudged_net, which):
    net, x, t, tokens = nudged_net
    changed = list(tokens)
    changed[which] = tokens[which] + 1.0
    with torch.no_grad():
        assert _differs(net(x, t, tokens), net(x, t, changed)) == [True, True, True]


def test_image_influences_heads_and_timestep_influences_everything(nudged_net):
    net, x, t, tokens = nudged_net
    with torch.no_grad():
        base = net(x, t, tokens)
        assert _differs(base, net(x.flip(-1), t, tokens)) == [True, True, True]
        assert _differs(base, net(x, t + 100, tokens)) == [True, True, True]


def test_examples_do_not_mix_and_float_steps_equal_integer_steps(nudged_net):
    net, x, t, tokens = nudged_net
    with torch.no_grad():
        out, scalars = net(x, t, tokens)
        other = net(torch.stack([x[0], -x[1]]), t, [tok.clone() for tok in tokens])
        torch.testing.assert_close(other[0][0], out[0])
        assert not torch.allclose(other[0][1], out[1])
        float_out, float_scalars = net(x, t.float(), tokens)
        torch.testing.assert_close(float_out, out)
        torch.testing.assert_close(net(x[:1], t[0], [tok[:1] for tok in tokens])[0], out[:1])


def test_every_parameter_gets_a_finite_nonzero_gradient(nudged_net):
    net, x, t, tokens = nudged_net
    out, scalars = net(x, t, tokens)
    loss = out.square().mean() + sum(s.square().mean() for s in scalars)
    loss.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_scalar_losses_train_the_shared_trunk(nudged_net):
    net, x, t, tokens = nudged_net
    _, scalars = net(x, t, tokens)
    sum(s.square().mean() for s in scalars).backward()
    assert net.conv_in.conv.weight.grad.any() and net.token_embedding.identity.grad.any()
    assert all(p.grad is None for p in net.decoder.parameters())


def test_loss_decreases_from_zero_initialisation():
    net = JointUNet(2, 2, 2, [1, 2], [1, 2], **TINY)
    x, t = torch.randn(4, 2, 8, 8), torch.randint(0, 1000, (4,))
    tokens = [torch.randn(4, 1), torch.eye(2)[[0, 1, 1, 0]]]
    target, target_scalars = torch.randn(4, 2, 8, 8), [torch.randn(4, 1), torch.randn(4, 2)]
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss_fn():
        out, scalars = net(x, t, tokens)
        return (out - target).square().mean() + sum((s - y).square().mean() for s, y in zip(scalars, target_scalars))

    first = loss_fn().item()
    for _ in range(30):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    assert loss_fn().item() < 0.8 * first


def test_set_attention_backend(monkeypatch):
    net = JointUNet(2, 1, 1, [1], [1], **TINY)
    modules = list(net.attention_modules())
    # Transformer blocks: 1 + 1 in the encoder, 1 in the middle, 2 + 2 in the decoder; each self + cross.
    assert len(modules) == 2 * (2 + 1 + 4)
    assert net.attention_backend is None
    net.set_attention_backend("torch")
    assert net.attention_backend == "torch" and all(m.backend == "torch" for m in modules)
    with pytest.raises(InputError, match="'fast'"):
        net.set_attention_backend("fast")
    assert all(m.backend == "torch" for m in modules)

    seen = []
    real = attention_module.attention
    def spy(q, k, v, *, scale=None, backend=None):
        seen.append(backend)
        return real(q, k, v, scale=scale, backend=backend)

    monkeypatch.setattr(attention_module, "attention", spy)
    net(torch.randn(1, 1, 8, 8), torch.tensor([0]), [torch.randn(1, 1)])
    assert seen and set(seen) == {"torch"} and len(seen) == len(modules)


def test_constructor_backend_reaches_every_module():
    net = JointUNet(3, 1, 1, [], [], channels=(8, 16), attention_levels=(True, True), num_head_channels=8,
                    attention_backend="auto")  # fmt: skip
    assert {m.backend for m in net.attention_modules()} == {"auto"}
