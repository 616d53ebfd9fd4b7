"""Property tests of the noise schedules (metavoxel.processes.schedules): abar tables of length T + 1."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.errors import SpecError
from metavoxel.processes.schedules import SCHEDULES, make_schedule

NAMES = sorted(SCHEDULES)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 2000))
def test_schedule_table_shape_and_range(name: str, T: int) -> None:
    abar = make_schedule(name, T)
    assert abar.dtype == torch.float64
    assert abar.shape == (T + 1,)
    assert abar[0].item() == 1.0
    assert bool(((abar >= 0) & (abar <= 1)).all())
    assert bool((abar[1:] <= abar[:-1]).all()), "abar must be monotone non-increasing"
    assert bool((abar[:T] > 0).all()), "abar must stay strictly positive before T"
    if name == "cosine":
        assert abar[T].item() == 0.0
    else:
        assert abar[T].item() > 0.0


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 2000), max_beta=st.sampled_from([0.5, 0.9, 0.999]))
def test_clipped_cosine_keeps_every_level_positive(T: int, max_beta: float) -> None:
    """cosine(max_beta=b): betas min(1 - abar_t/abar_{t-1}, b) of the unclipped table (Nichol & Dhariwal)."""
    abar = make_schedule("cosine", T, max_beta=max_beta)
    assert abar.dtype == torch.float64 and abar.shape == (T + 1,)
    assert abar[0].item() == 1.0
    assert bool((abar > 0).all()), "every level positive, abar_T included"
    assert bool((abar[1:] <= abar[:-1]).all()) and bool((abar <= 1).all())
    plain = make_schedule("cosine", T).tolist()
    expected = [1.0]
    for i in range(1, T + 1):
        expected.append(expected[-1] * (1.0 - min(1.0 - plain[i] / plain[i - 1], max_beta)))
    torch.testing.assert_close(abar, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_schedule_accepts_one_step(name: str) -> None:
    abar = make_schedule(name, 1)
    assert abar.shape == (2,) and abar[0].item() == 1.0 and abar[1].item() < 1.0


def test_beta_schedules_match_their_definition() -> None:
    # Independent float64 recomputation of DDPM's linear betas and LDM's sqrt-linear betas.
    T = 37
    for name, b0, b1, sqrt_space in (("linear", 1e-4, 2e-2, False), ("scaled_linear", 0.0015, 0.0195, True)):
        expected = [1.0]
        for i in range(T):
            if sqrt_space:
                beta = (b0**0.5 + (b1**0.5 - b0**0.5) * i / (T - 1)) ** 2
            else:
                beta = b0 + (b1 - b0) * i / (T - 1)
            expected.append(expected[-1] * (1.0 - beta))
        torch.testing.assert_close(make_schedule(name, T), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-14)


def test_unknown_schedule_raises_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown schedule"):
        make_schedule("cosinus", 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("T", [0, -1, -1000])
def test_non_positive_T_raises_spec_error(name: str, T: int) -> None:
    with pytest.raises(SpecError):
        make_schedule(name, T)
