"""Property and statistical tests of UniformDiscreteProcess (D3PM, uniform transition, Austin et al. 2021).

The brute-force side never uses the code under test: it builds the one-step matrices
Q_i = (1 - b_i) I + b_i/K 11ᵀ, b_i = 1 - abar_i/abar_{i-1}, as explicit K×K float64 numpy arrays, multiplies
them out, and applies Bayes' rule and D3PM's reverse-step sum over x0 entry by entry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.processes import UniformDiscreteProcess, make_schedule

SCHEDULE_NAMES = ["linear", "scaled_linear", "cosine"]
Z = 6.0  # tolerance in binomial standard errors for the (fixed-seed) statistical checks


# -- brute-force reference ----------------------------------------------------------------------------

def one_step_matrices(abar: np.ndarray, K: int) -> list[np.ndarray]:
    """[Q_1, ..., Q_T], Q_i[x_{i-1}, x_i] = q(x_i | x_{i-1}); index 0 of the list holds Q_1."""
    mats = []
    for i in range(1, len(abar)):
        b = 1.0 - abar[i] / abar[i - 1]
        mats.append((1.0 - b) * np.eye(K) + b / K * np.ones((K, K)))
    return mats


def chain(mats: list[np.ndarray], s: int, t: int) -> np.ndarray:
    """Q_{s+1} ... Q_t: entry [x_s, x_t] = q(x_t | x_s) (the identity when s == t)."""
    out = np.eye(mats[0].shape[0])
    for i in range(s + 1, t + 1):
        out = out @ mats[i - 1]
    return out


def brute_posterior(mats, x0: int, x_t: int, s: int, t: int) -> np.ndarray:
    """q(x_s | x_t, x0) = q(x_t | x_s) q(x_s | x0) / q(x_t | x0), for every x_s."""
    q_s_given_0 = chain(mats, 0, s)[x0]  # (K,) over x_s
    q_t_given_s = chain(mats, s, t)[:, x_t]  # (K,) over x_s
    q_t_given_0 = chain(mats, 0, t)[x0, x_t]
    return q_t_given_s * q_s_given_0 / q_t_given_0


def brute_reverse(mats, x_t: int, p0: np.ndarray, s: int, t: int) -> np.ndarray:
    """D3PM: p(x_s | x_t) ∝ Σ_x0 q(x_s, x_t | x0) p̂(x0 | x_t), summed over x0 explicitly."""
    A, M = chain(mats, 0, s), chain(mats, s, t)
    K = len(p0)
    un = np.zeros(K)
    for x_s in range(K):
        for x0 in range(K):
            un[x_s] += A[x0, x_s] * M[x_s, x_t] * p0[x0]
    return un / un.sum()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@st.composite
def cases(draw, max_T: int = 300):
    """(process, abar as numpy, K, T, t, s) with 0 <= s < t <= T."""
    name = draw(st.sampled_from(SCHEDULE_NAMES))
    T = draw(st.integers(2, max_T))
    K = draw(st.integers(2, 12))
    t = draw(st.integers(1, T))
    s = draw(st.integers(0, t - 1))
    abar = make_schedule(name, T)
    return UniformDiscreteProcess(abar, K), abar.numpy(), K, T, t, s


def _long(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# -- forward marginal ---------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_q_probs_is_the_product_of_one_step_matrices(case) -> None:
    proc, abar, K, T, t, _ = case
    mats = one_step_matrices(abar, K)
    x0 = torch.arange(K)
    probs = proc.q_probs(x0, torch.full((K,), t)).numpy()
    assert probs.shape == (K, K)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs, chain(mats, 0, t), rtol=0, atol=1e-10)  # row x0 = e_x0ᵀ Q_1 ... Q_t


@pytest.mark.parametrize("T", [2, 10, 1000])
@pytest.mark.parametrize("K", [2, 7, 200])
def test_cosine_forward_reaches_the_uniform_prior(T: int, K: int) -> None:
    proc = UniformDiscreteProcess(make_schedule("cosine", T), K)
    probs = proc.q_probs(torch.arange(K), torch.full((K,), T))
    torch.testing.assert_close(probs, torch.full((K, K), 1.0 / K, dtype=torch.float64), rtol=0, atol=1e-12)


# -- exact posterior ----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(case=cases(), data=st.data())
def test_posterior_is_bayes_rule(case, data) -> None:
    proc, abar, K, T, t, s = case
    mats = one_step_matrices(abar, K)
    x0 = data.draw(st.lists(st.integers(0, K - 1), min_size=3, max_size=3))
    x_t = data.draw(st.lists(st.integers(0, K - 1), min_size=3, max_size=3))
    got = proc.posterior_log_probs(_long(*x_t), _long(*x0), torch.full((3,), t), torch.full((3,), s)).exp().numpy()
    expected = np.stack([brute_posterior(mats, a, b, s, t) for a, b in zip(x0, x_t)])
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-9)  # the reference itself is a distribution
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(case=cases(), data=st.data())
def test_one_step_posterior_uses_the_single_matrix_Q_t(case, data) -> None:
    proc, abar, K, T, t, _ = case
    Q_t = one_step_matrices(abar, K)[t - 1]
    q_prev = np.eye(K) if t == 1 else chain(one_step_matrices(abar, K), 0, t - 1)  # q(x_{t-1} | x0)
    x0, x_t = data.draw(st.integers(0, K - 1)), data.draw(st.integers(0, K - 1))
    un = Q_t[:, x_t] * q_prev[x0]
    expected = un / un.sum()
    got = proc.posterior_log_probs(_long(x_t), _long(x0), _long(t), _long(t - 1)).exp().numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


# -- reverse step -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(case=cases(), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_reverse_log_probs_is_d3pm_sum_over_x0(case, data, seed) -> None:
    proc, abar, K, T, t, s = case
    mats = one_step_matrices(abar, K)
    logits = np.random.default_rng(seed).normal(scale=3.0, size=(3, K))
    x_t = data.draw(st.lists(st.integers(0, K - 1), min_size=3, max_size=3))
    got = proc.reverse_log_probs(_long(*x_t), torch.from_numpy(logits), torch.full((3,), t), torch.full((3,), s))
    expected = np.stack([brute_reverse(mats, x, softmax(lg), s, t) for x, lg in zip(x_t, logits)])
    np.testing.assert_allclose(got.exp().numpy(), expected, rtol=0, atol=1e-9)


def test_reverse_step_is_not_the_average_of_exact_posteriors() -> None:
    """D3PM weights each x0 by q(x_t | x0); averaging the posteriors q(x_s | x_t, x0) over p̂ does not."""
    K, T, t, s, x_t = 3, 100, 50, 10, 0
    abar = make_schedule("linear", T)
    proc = UniformDiscreteProcess(abar, K)
    mats = one_step_matrices(abar.numpy(), K)
    p0 = np.array([0.1, 0.8, 0.1])
    d3pm = brute_reverse(mats, x_t, p0, s, t)
    averaged = sum(p0[x0] * brute_posterior(mats, x0, x_t, s, t) for x0 in range(K))
    assert np.abs(d3pm - averaged).max() > 0.3  # the two candidate formulas really differ here
    got = proc.reverse_log_probs(_long(x_t), torch.from_numpy(np.log(p0))[None], _long(t), _long(s)).exp()[0]
    np.testing.assert_allclose(got.numpy(), d3pm, rtol=0, atol=1e-12)
    assert np.abs(got.numpy() - averaged).max() > 0.3


@pytest.mark.parametrize("t,s", [(1000, 0), (1000, 999), (1, 0), (2, 1), (999, 998), (500, 250)])
@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_many_classes_and_extreme_levels_stay_finite_and_normalised(name: str, t: int, s: int) -> None:
    K, B, T = 200, 16, 1000
    proc = UniformDiscreteProcess(make_schedule(name, T), K)
    g = torch.Generator().manual_seed(t * 7 + s)
    logits = (torch.randint(0, 2, (B, K), generator=g) * 2 - 1).double() * 1e4  # ±1e4
    logits[0] = 0.0
    logits[1, :] = -1e4
    logits[1, 3] = 1e4
    x_t = torch.randint(0, K, (B,), generator=g)
    x0 = torch.randint(0, K, (B,), generator=g)
    x0[:4] = x_t[:4]  # some agreeing and some disagreeing pairs
    tt, ss = torch.full((B,), t), torch.full((B,), s)
    rev = proc.reverse_log_probs(x_t, logits, tt, ss)
    assert bool(torch.isfinite(rev).all())
    torch.testing.assert_close(rev.exp().sum(dim=1), torch.ones(B, dtype=torch.float64), rtol=0, atol=1e-9)
    post = proc.posterior_log_probs(x_t, x0, tt, ss)
    assert not bool(torch.isnan(post).any()) and not bool((post == float("inf")).any())
    torch.testing.assert_close(post.exp().sum(dim=1), torch.ones(B, dtype=torch.float64), rtol=0, atol=1e-9)
    if s == 0:  # q(x_0 | x_t, x0) puts all mass on x0
        assert torch.equal(post.argmax(dim=1), x0) and bool((post.exp().max(dim=1).values > 1 - 1e-12).all())
    samples = proc.reverse_step(x_t, logits, tt, ss, generator=g)
    assert samples.shape == (B,) and bool(((samples >= 0) & (samples < K)).all())
    assert bool(torch.isfinite(proc.loss(logits, x0)).all())


# -- sampling -----------------------------------------------------------------------------------------

def _check_frequencies(samples: torch.Tensor, probs: np.ndarray) -> None:
    n = samples.numel()
    freq = np.bincount(samples.numpy(), minlength=len(probs)) / n
    se = np.sqrt(probs * (1.0 - probs) / n) + 1e-12
    assert np.all(np.abs(freq - probs) <= Z * se + 1e-12), (freq, probs, se)


N_SAMPLES = 200_000


@pytest.mark.parametrize("name,T,K,t,x0", [("cosine", 100, 5, 30, 2), ("cosine", 100, 3, 100, 0),
                                           ("linear", 1000, 12, 200, 11), ("linear", 1000, 2, 1, 1)])
def test_q_sample_frequencies_match_q_probs(name: str, T: int, K: int, t: int, x0: int) -> None:
    proc = UniformDiscreteProcess(make_schedule(name, T), K)
    samples = proc.q_sample(torch.full((N_SAMPLES,), x0), torch.full((N_SAMPLES,), t),
                            generator=torch.Generator().manual_seed(11))
    _check_frequencies(samples, proc.q_probs(_long(x0), _long(t)).numpy()[0])


@pytest.mark.parametrize("name,T,K,s,t,x", [("cosine", 100, 4, 10, 60, 3), ("cosine", 100, 6, 99, 100, 0),
                                            ("linear", 1000, 9, 0, 400, 5)])
def test_undo_frequencies_match_the_jump_kernel(name: str, T: int, K: int, s: int, t: int, x: int) -> None:
    abar = make_schedule(name, T).numpy()
    proc = UniformDiscreteProcess(torch.from_numpy(abar), K)
    r = abar[t] / abar[s]
    expected = r * np.eye(K)[x] + (1.0 - r) / K
    samples = proc.undo(torch.full((N_SAMPLES,), x), torch.full((N_SAMPLES,), s), torch.full((N_SAMPLES,), t),
                        generator=torch.Generator().manual_seed(12))
    _check_frequencies(samples, expected)


@pytest.mark.parametrize("name,T,K,t,s,x_t", [("cosine", 100, 5, 40, 20, 1), ("cosine", 100, 4, 100, 99, 3),
                                              ("linear", 1000, 7, 300, 0, 6)])
def test_reverse_step_samples_follow_reverse_log_probs(name: str, T: int, K: int, t: int, s: int, x_t: int) -> None:
    proc = UniformDiscreteProcess(make_schedule(name, T), K)
    logits = torch.from_numpy(np.random.default_rng(K).normal(scale=2.0, size=K))[None]
    probs = proc.reverse_log_probs(_long(x_t), logits, _long(t), _long(s)).exp().numpy()[0]
    n = N_SAMPLES // 2
    samples = proc.reverse_step(torch.full((n,), x_t), logits.expand(n, K), torch.full((n,), t), torch.full((n,), s),
                                generator=torch.Generator().manual_seed(13))
    _check_frequencies(samples, probs)


# -- loss ---------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 8), K=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_loss_is_per_sample_cross_entropy(B: int, K: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(B, K))
    x0 = rng.integers(0, K, size=B)
    loss = UniformDiscreteProcess.loss(torch.from_numpy(logits), torch.from_numpy(x0))
    assert loss.shape == (B,)
    expected = -np.log(softmax(logits)[np.arange(B), x0])
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)
