"""Property tests of the strided time grid and RePaint's resampling walk (metavoxel.diffusion.grid)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.diffusion.grid import repaint_walk, time_grid
from metavoxel.errors import InputError


@st.composite
def grid_sizes(draw):
    T = draw(st.integers(1, 5000))
    S = draw(st.integers(1, T))
    return T, S


@settings(max_examples=200, deadline=None)
@given(sizes=grid_sizes())
def test_time_grid_is_even_and_spans_0_to_T(sizes) -> None:
    T, S = sizes
    grid = time_grid(T, S).tolist()
    assert len(grid) == S + 1
    assert grid[0] == 0 and grid[S] == T
    gaps = [b - a for a, b in zip(grid, grid[1:])]
    assert all(g >= 1 for g in gaps), "strictly increasing"
    assert all(abs(g - T / S) < 1 for g in gaps), "each gap within 1 of T/S"
    assert all(abs(level - T * i / S) <= 0.5 for i, level in enumerate(grid)), "t_i = round(T i / S)"


@settings(max_examples=200, deadline=None)
@given(sizes=grid_sizes())
def test_quadratic_grid_spans_0_to_T_and_is_finest_near_0(sizes) -> None:
    T, S = sizes
    grid = time_grid(T, S, "quadratic").tolist()
    assert len(grid) == S + 1
    assert grid[0] == 0 and grid[S] == T
    gaps = [b - a for a, b in zip(grid, grid[1:])]
    assert all(g >= 1 for g in gaps), "strictly increasing"
    assert all(level >= round(T * (i / S) ** 2) - 1 for i, level in enumerate(grid)), "t_i >= T (i/S)^2 (rounded)"
    if S >= 2:  # the last reverse step starts no higher than the uniform grid's
        assert grid[1] <= time_grid(T, S)[1]


def test_quadratic_grid_values() -> None:
    assert time_grid(100, 5, "quadratic").tolist() == [0, 4, 16, 36, 64, 100]
    assert time_grid(1000, 50, "quadratic").tolist()[:6] == [0, 1, 2, 4, 6, 10]  # t = 0.4 -> 1, 1.6 -> 2, ...
    assert time_grid(7, 7, "quadratic").tolist() == list(range(8))


def test_time_grid_refuses_an_unknown_spacing() -> None:
    with pytest.raises(InputError, match="uniform, quadratic"):
        time_grid(100, 10, "cosine")


def test_time_grid_full_resolution_is_every_step() -> None:
    assert time_grid(7, 7).tolist() == list(range(8))
    assert time_grid(1000, 1).tolist() == [0, 1000]


@settings(max_examples=50, deadline=None)
@given(T=st.integers(1, 500), extra=st.integers(1, 100))
def test_time_grid_rejects_more_steps_than_T(T: int, extra: int) -> None:
    with pytest.raises(InputError):
        time_grid(T, T + extra)


@pytest.mark.parametrize("S", [0, -1])
def test_time_grid_rejects_fewer_than_one_step(S: int) -> None:
    with pytest.raises(InputError):
        time_grid(100, S)


@settings(max_examples=200, deadline=None)
@given(S=st.integers(1, 60), j=st.integers(1, 12), r=st.integers(1, 5))
def test_repaint_walk_structure(S: int, j: int, r: int) -> None:
    moves = repaint_walk(S, j, r)
    assert moves, "a grid of S >= 1 steps needs at least one move"
    assert moves[0][0] == S and moves[-1][1] == 0
    for (_, b), (c, _) in zip(moves, moves[1:]):
        assert b == c, "moves are contiguous"
    reverse = [m for m in moves if m[1] == m[0] - 1]
    undo = [m for m in moves if m[1] == m[0] + j]
    assert len(reverse) + len(undo) == len(moves), "every move is (i, i-1) or (i, i+j)"
    assert all(0 <= p <= S for move in moves for p in move)
    assert all(a > 0 for a, _ in undo), "never undo from position 0"
    assert len(reverse) == S + len(undo) * j
    # RePaint: at each p = S - j, S - 2j, ... > 0 the walk jumps back r - 1 times
    jump_points = [p for p in range(S - j, 0, -j)]
    assert sorted(a for a, _ in undo) == sorted(p for p in jump_points for _ in range(r - 1))


@settings(max_examples=50, deadline=None)
@given(S=st.integers(1, 200), j=st.integers(1, 20))
def test_repaint_walk_with_one_round_is_the_plain_walk(S: int, j: int) -> None:
    assert repaint_walk(S, j, 1) == [(i, i - 1) for i in range(S, 0, -1)]


def test_repaint_walk_small_example() -> None:
    # S = 4, j = 2, r = 2: down to 2, jump back up to 4 once, then down to 0 (position 0 never jumps)
    assert repaint_walk(4, 2, 2) == [(4, 3), (3, 2), (2, 4), (4, 3), (3, 2), (2, 1), (1, 0)]


@pytest.mark.parametrize("j,r", [(0, 1), (-1, 2), (1, 0), (2, -3), (0, 0)])
def test_repaint_walk_rejects_bad_jumps(j: int, r: int) -> None:
    with pytest.raises(InputError):
        repaint_walk(10, j, r)
