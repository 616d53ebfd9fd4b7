"""Fused categorical k-step (interpreter) against `categorical_step_reference`, and its Gumbel-max sampling."""

from __future__ import annotations

import pytest
import torch

from metavoxel.kernels import categorical_step, categorical_step_reference
from metavoxel.kernels.categorical.reference import gumbel_like

# log(0) at the final step (a_s = 1) is intended; NumPy (the interpreter) warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CLASSES = [3, 7, 2]


def _case(gen, dtype=torch.float32, batch=5):
    logits = [torch.randn(batch, k, generator=gen).to(dtype) for k in CLASSES]
    x_t = [torch.randint(0, k, (batch,), generator=gen) for k in CLASSES]
    known = [torch.randint(0, k, (batch,), generator=gen) for k in CLASSES[:2]] + [None]
    mask = [torch.rand(batch, generator=gen) > 0.5, torch.ones(batch, dtype=torch.bool), None]
    a_t = torch.rand(batch, generator=gen) * 0.5 + 0.05
    a_s = a_t + 0.3
    a_s[0] = 1.0  # the final step
    return logits, x_t, known, mask, a_t, a_s


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_list_form_matches_reference(interpreter, gen, dtype):
    logits, x_t, known, mask, a_t, a_s = _case(gen, dtype)
    g1 = [gumbel_like(x, gen) for x in logits]
    g2 = [gumbel_like(x, gen) for x in logits]
    x_s, log_p = categorical_step(logits, x_t, a_t, a_s, known=known, mask=mask, gumbel=g1, gumbel_known=g2,
                                  return_log_probs=True, backend="triton")
    for i in range(len(CLASSES)):
        want_x, want_p = categorical_step_reference(logits[i], x_t[i], a_t, a_s, g1[i], known=known[i],
                                                    mask=mask[i], gumbel_known=g2[i])
        assert x_s[i].dtype == torch.int64 and torch.equal(x_s[i], want_x), f"x_s[{i}]"
        torch.testing.assert_close(log_p[i], want_p, atol=1e-5, rtol=1e-5, msg=lambda m, i=i: f"log_p[{i}]: {m}")


def test_single_variable_with_per_variable_levels(interpreter, gen):
    logits, x_t, *_ = _case(gen)
    a_t, a_s = torch.full((5, 1), 0.2), torch.full((5, 1), 0.6)
    g1 = gumbel_like(logits[1], gen)
    x_s, log_p = categorical_step(logits[1], x_t[1], a_t, a_s, gumbel=g1, backend="triton")
    assert log_p is None
    assert torch.equal(x_s, categorical_step_reference(logits[1], x_t[1], a_t[:, 0], a_s[:, 0], g1)[0])


def test_drawn_samples_follow_the_posterior(interpreter, gen):
    batch = 1000
    logits = torch.tensor([[1.0, -0.5, 0.3, 2.0]]).expand(batch, -1)
    x_t = torch.full((batch,), 2)
    a_t, a_s = torch.full((batch,), 0.3), torch.full((batch,), 0.5)
    x_s, log_p = categorical_step(logits, x_t, a_t, a_s, seed=3, return_log_probs=True, backend="triton")
    p = log_p[0].exp()
    freq = torch.bincount(x_s, minlength=4).double() / batch
    assert torch.all((freq - p).abs() < 5 * (p * (1 - p) / batch).sqrt()), (freq, p)
    again, _ = categorical_step(logits, x_t, a_t, a_s, seed=3, backend="triton")
    assert torch.equal(x_s, again), "the same seed must give the same samples"


def test_torch_backend_matches_reference(gen):
    logits, x_t, known, mask, a_t, a_s = _case(gen)
    g1 = [gumbel_like(x, gen) for x in logits]
    g2 = [gumbel_like(x, gen) for x in logits]
    x_s, _ = categorical_step(logits, x_t, a_t, a_s, known=known, mask=mask, gumbel=g1, gumbel_known=g2,
                              backend="torch")
    for i in range(len(CLASSES)):
        want = categorical_step_reference(logits[i], x_t[i], a_t, a_s, g1[i], known=known[i], mask=mask[i],
                                          gumbel_known=g2[i])[0]
        assert torch.equal(x_s[i], want), f"x_s[{i}]"


def test_mask_without_known_is_rejected(gen):
    logits, x_t, _, _, a_t, a_s = _case(gen)
    with pytest.raises(ValueError, match="known"):
        categorical_step(logits, x_t, a_t, a_s, mask=[None, torch.ones(5, dtype=torch.bool), None])
