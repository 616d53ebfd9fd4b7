"""Property and statistical tests of GaussianProcess: the q(x_t | x0) marginal, DDIM (Song et al. 2021,
eq. 12) against an independent float64 numpy reference, the RePaint undo jump, and the per-sample loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.errors import SpecError
from metavoxel.processes import GaussianProcess, make_schedule

SCHEDULE_NAMES = ["linear", "scaled_linear", "cosine"]
# A Gaussian process needs abar_t > 0 at every level: its cosine table clips betas at 0.999 (as the spec does).
GAUSSIAN_PARAMS = {"linear": {}, "scaled_linear": {}, "cosine": {"max_beta": 0.999}}
N_STAT = 200_000  # samples for the statistical checks
Z = 6.0  # tolerance in standard errors (fixed seeds: deterministic, but wide enough not to pin a lucky draw)


@st.composite
def setups(draw, min_T: int = 2, max_T: int = 1000):
    name = draw(st.sampled_from(SCHEDULE_NAMES))
    T = draw(st.integers(min_T, max_T))
    return name, T, _process(name, T)


def _process(name: str, T: int) -> GaussianProcess:
    return GaussianProcess(make_schedule(name, T, **GAUSSIAN_PARAMS[name]))


def _np_randn(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -- q(x_t | x0) -------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(setup=setups(), batch=st.integers(1, 5), shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
       seed=st.integers(0, 2**31 - 1))
def test_q_sample_with_explicit_eps_is_the_closed_form(setup, batch, shape, seed) -> None:
    _, T, proc = setup
    abar = proc.abar.numpy()
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, *shape))
    eps = rng.standard_normal((batch, *shape))
    t = rng.integers(0, T + 1, size=batch)
    x_t, eps_out = proc.q_sample(torch.from_numpy(x0), torch.from_numpy(t), torch.from_numpy(eps))
    a = abar[t].reshape(-1, *([1] * len(shape)))
    expected = np.sqrt(a) * x0 + np.sqrt(1.0 - a) * eps
    np.testing.assert_allclose(x_t.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(eps_out, torch.from_numpy(eps))


@settings(max_examples=30, deadline=None)
@given(setup=setups(), seed=st.integers(0, 2**31 - 1))
def test_predict_x0_inverts_q_sample(setup, seed) -> None:
    _, T, proc = setup
    rng = np.random.default_rng(seed)
    x0 = torch.from_numpy(rng.standard_normal((4, 3, 2)))
    t = torch.from_numpy(rng.integers(0, T + 1, size=4))
    x_t, eps = proc.q_sample(x0, t, generator=torch.Generator().manual_seed(seed))
    a = proc.abar[t]
    # conditioning: the error of x0_hat grows like eps_machine * sqrt(1 - a) / sqrt(a)
    tol = 1e-12 * float((1 / a.sqrt()).max())
    torch.testing.assert_close(proc.predict_x0(x_t, eps, t), x0, rtol=0, atol=tol)


@settings(max_examples=30, deadline=None)
@given(setup=setups(), seed=st.integers(0, 2**31 - 1))
def test_v_target_reads_back_eps_and_x0_exactly(setup, seed) -> None:
    """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022): the true v gives back the noise and the
    clean value at every level, including t = T where the eps form divides by sqrt(abar_T)."""
    _, T, proc = setup
    rng = np.random.default_rng(seed)
    x0 = torch.from_numpy(rng.standard_normal((4, 3, 2)))
    t = torch.from_numpy(rng.integers(0, T + 1, size=4))
    t[0] = T
    x_t, eps = proc.q_sample(x0, t, generator=torch.Generator().manual_seed(seed))
    v = proc.target(x0, eps, t, "v")
    torch.testing.assert_close(proc.eps_from(x_t, v, t, "v"), eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(proc.x0_from(x_t, v, t, "v"), x0, rtol=0, atol=1e-12)
    assert proc.target(x0, eps, t, "eps") is eps and proc.eps_from(x_t, eps, t, "eps") is eps


def test_v_output_error_stays_bounded_in_x0_at_t_T_where_eps_is_amplified() -> None:
    """The reason to predict v: an output error e moves x0_hat by sqrt(1 - abar_T) e under v, but by
    sqrt((1 - abar_T) / abar_T) e under eps (over 50x with the paper's scaled_linear schedule)."""
    proc = _process("scaled_linear", 1000)
    x0 = torch.zeros(1, 8, dtype=torch.float64)
    t = torch.tensor([1000])
    x_t, eps = proc.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    err = 0.01
    a = proc.abar[1000]
    for prediction, factor in (("v", float((1 - a).sqrt())), ("eps", float((1 - a).sqrt() / a.sqrt()))):
        out = proc.target(x0, eps, t, prediction) + err
        x0_err = (proc.x0_from(x_t, out, t, prediction) - x0).abs()
        torch.testing.assert_close(x0_err, torch.full_like(x0_err, err * factor), rtol=1e-9, atol=0)
    assert float((1 - a).sqrt() / a.sqrt()) > 50


def test_an_unknown_prediction_is_refused() -> None:
    proc = _process("linear", 10)
    x, t = torch.zeros(1, 2), torch.tensor([3])
    for read in (proc.target, proc.eps_from, proc.x0_from):  # none reads an unknown output as v
        with pytest.raises(ValueError, match="prediction must be one of"):
            read(x, x, t, "x0")


@pytest.mark.parametrize("name,T,t", [("linear", 1000, 1), ("linear", 1000, 500), ("scaled_linear", 1000, 999),
                                      ("cosine", 1000, 700), ("cosine", 50, 50)])
def test_q_sample_marginal_moments(name: str, T: int, t: int) -> None:
    proc = _process(name, T)
    a = float(proc.abar[t])
    x0 = torch.tensor([-1.7, 0.0, 2.3], dtype=torch.float64)
    x0_b = x0.repeat(N_STAT // 3, 1)  # (n, 3): every row holds the same three fixed values
    t_b = torch.full((x0_b.shape[0],), t)
    x_t, _ = proc.q_sample(x0_b, t_b, generator=torch.Generator().manual_seed(1234))
    n = x0_b.shape[0]
    _check_moments(x_t, mean=np.sqrt(a) * x0.numpy(), var=1.0 - a, n=n)


def _check_moments(samples: torch.Tensor, mean: np.ndarray, var: float, n: int) -> None:
    """Column means and variances of (n, D) samples against N(mean, var), Z standard errors wide."""
    emp_mean = samples.mean(dim=0).numpy()
    emp_var = samples.var(dim=0).numpy()
    se_mean = np.sqrt(var / n) + 1e-12
    se_var = var * np.sqrt(2.0 / (n - 1)) + 1e-12
    assert np.all(np.abs(emp_mean - mean) < Z * se_mean), (emp_mean, mean, se_mean)
    assert np.all(np.abs(emp_var - var) < Z * se_var), (emp_var, var, se_var)


@pytest.mark.parametrize("name,T,s,t", [("linear", 1000, 0, 300), ("linear", 1000, 100, 101),
                                        ("scaled_linear", 1000, 250, 900), ("cosine", 200, 20, 200),
                                        ("cosine", 200, 199, 200)])
def test_undo_composes_with_the_marginal(name: str, T: int, s: int, t: int) -> None:
    """x_s ~ q(x_s | x0) then undo(x_s, s, t) ~ q(x_t | x0): mean sqrt(abar_t) x0, variance 1 - abar_t."""
    proc = _process(name, T)
    a_t = float(proc.abar[t])
    x0 = torch.tensor([0.8, -2.5, 0.0], dtype=torch.float64)
    x0_b = x0.repeat(N_STAT // 3, 1)
    n = x0_b.shape[0]
    g = torch.Generator().manual_seed(99)
    x_s, _ = proc.q_sample(x0_b, torch.full((n,), s), generator=g)
    x_t = proc.undo(x_s, torch.full((n,), s), torch.full((n,), t), generator=g)
    _check_moments(x_t, mean=np.sqrt(a_t) * x0.numpy(), var=1.0 - a_t, n=n)


@pytest.mark.parametrize("s,t", [(10, 400), (0, 1000)])
def test_undo_of_a_fixed_value_has_the_jump_variance(s: int, t: int) -> None:
    """q(x_t | x_s) = N(sqrt(abar_t/abar_s) x_s, 1 - abar_t/abar_s) for a fixed x_s."""
    proc = GaussianProcess(make_schedule("linear", 1000))
    r = float(proc.abar[t] / proc.abar[s])
    x_s = torch.tensor([1.5, -0.25], dtype=torch.float64).repeat(N_STAT // 2, 1)
    n = x_s.shape[0]
    out = proc.undo(x_s, torch.full((n,), s), torch.full((n,), t), generator=torch.Generator().manual_seed(5))
    _check_moments(out, mean=np.sqrt(r) * np.array([1.5, -0.25]), var=1.0 - r, n=n)


# -- DDIM ---------------------------------------------------------------------------------------------

def _ddim_reference(x_t: np.ndarray, eps: np.ndarray, a_t: np.ndarray, a_s: np.ndarray, eta: float,
                    z: np.ndarray) -> np.ndarray:
    """Song et al. 2021 eq. 12, written out in float64 numpy."""
    x0_pred = (x_t - np.sqrt(1.0 - a_t) * eps) / np.sqrt(a_t)
    sigma = eta * np.sqrt((1.0 - a_s) / (1.0 - a_t)) * np.sqrt(1.0 - a_t / a_s)
    direction = np.sqrt(np.maximum(1.0 - a_s - sigma**2, 0.0)) * eps
    return np.sqrt(a_s) * x0_pred + direction + sigma * z


@settings(max_examples=60, deadline=None)
@given(setup=setups(), eta=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_ddim_step_matches_song_eq12(setup, eta, seed, data) -> None:
    _, T, proc = setup
    abar = proc.abar.numpy()
    B, shape = 4, (3, 2)
    t = np.array([data.draw(st.integers(1, T)) for _ in range(B)])
    s = np.array([data.draw(st.integers(0, int(ti) - 1)) for ti in t])
    rng = np.random.default_rng(seed)
    x_t, eps = rng.standard_normal((B, *shape)), rng.standard_normal((B, *shape))
    out = proc.ddim_step(torch.from_numpy(x_t), torch.from_numpy(eps), torch.from_numpy(t), torch.from_numpy(s),
                         eta=eta, generator=torch.Generator().manual_seed(seed))
    z = np.zeros((B, *shape))
    if eta > 0:
        z = torch.randn((B, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    a_t = abar[t].reshape(-1, 1, 1)
    a_s = abar[s].reshape(-1, 1, 1)
    expected = _ddim_reference(x_t, eps, a_t, a_s, eta, z)
    scale = 1.0 + float(np.max(1.0 / np.sqrt(a_t)))  # x0_pred amplifies rounding by 1/sqrt(abar_t)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12 * scale)


@settings(max_examples=30, deadline=None)
@given(setup=setups(), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_ddim_step_to_zero_returns_predict_x0_exactly(setup, seed, data) -> None:
    _, T, proc = setup
    t = torch.tensor([data.draw(st.integers(1, T)) for _ in range(3)])
    s = torch.zeros(3, dtype=torch.long)
    rng = np.random.default_rng(seed)
    for dtype in (torch.float32, torch.float64):
        x_t = torch.from_numpy(rng.standard_normal((3, 5))).to(dtype)
        eps = torch.from_numpy(rng.standard_normal((3, 5))).to(dtype)
        assert torch.equal(proc.ddim_step(x_t, eps, t, s, eta=0.0), proc.predict_x0(x_t, eps, t))


def test_ddim_eta0_is_deterministic_and_consumes_no_randomness() -> None:
    proc = GaussianProcess(make_schedule("linear", 100))
    x, e = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = proc.ddim_step(x, e, torch.tensor([50, 60]), torch.tensor([40, 10]), eta=0.0, generator=g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(out, proc.ddim_step(x, e, torch.tensor([50, 60]), torch.tensor([40, 10]), eta=0.0))


@pytest.mark.parametrize("T", [2, 1000])
def test_a_level_with_abar_zero_is_rejected(T: int) -> None:
    """The unclipped cosine table ends at abar_T = 0, where eps-parameterised x0 = (x_t - ...)/sqrt(abar_T)
    is undefined; the Gaussian process refuses it instead of returning inf/nan from t = T."""
    with pytest.raises(SpecError, match="abar_t > 0"):
        GaussianProcess(make_schedule("cosine", T))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_from_T_is_finite_with_the_clipped_cosine_schedule(eta: float) -> None:
    """Sampling starts at t = T (time_grid); with betas clipped at 0.999 the first step stays finite."""
    T = 1000
    proc = _process("cosine", T)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x_T = proc.prior((4, 3), generator=g, dtype=dtype)
        eps = torch.randn(4, 3, generator=g, dtype=dtype)
        out = proc.ddim_step(x_T, eps, torch.full((4,), T), torch.full((4,), 980), eta=eta, generator=g)
        assert bool(torch.isfinite(out).all()), out


# -- loss ---------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 6), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       seed=st.integers(0, 2**31 - 1))
def test_loss_is_per_sample_mse(batch, shape, seed) -> None:
    # z always has per-record dims (z_shape is (1,) for a scalar), so (B,) alone is not a valid input
    rng = np.random.default_rng(seed)
    eps_hat, eps = rng.standard_normal((batch, *shape)), rng.standard_normal((batch, *shape))
    loss = GaussianProcess.loss(torch.from_numpy(eps_hat), torch.from_numpy(eps))
    assert loss.shape == (batch,)
    expected = ((eps_hat - eps) ** 2).reshape(batch, -1).mean(axis=1)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-6)
    # per-sample: perturbing sample 0 changes only loss[0]
    eps_hat2 = eps_hat.copy()
    eps_hat2[0] += 1.0
    loss2 = GaussianProcess.loss(torch.from_numpy(eps_hat2), torch.from_numpy(eps))
    assert torch.equal(loss2[1:], loss[1:]) and not torch.equal(loss2[:1], loss[:1])
