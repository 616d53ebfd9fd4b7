"""Row packing of many variables into one (B, F) buffer."""

from __future__ import annotations

import pytest
import torch

from metavoxel.kernels import RowLayout
from metavoxel.kernels.rows import block_table


def test_pack_and_unpack_round_trip_without_copies_on_unpack():
    xs = [torch.randn(2, 3, 4, 5), torch.randn(2, 1), torch.randn(2, 7)]
    layout = RowLayout.of(xs)
    assert layout.sizes == (60, 1, 7) and layout.width == 68
    rows = layout.pack(xs)
    assert rows.shape == (2, 68) and rows.is_contiguous()
    back = layout.unpack(rows)
    for x, b in zip(xs, back):
        assert torch.equal(x, b)
        assert b.data_ptr() >= rows.data_ptr()  # a view into the packed buffer
    back[1].fill_(3.0)
    assert torch.equal(rows[:, 60], torch.full((2,), 3.0))


def test_unpack_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        RowLayout.flat([3, 5]).unpack(torch.zeros(2, 9))


def test_block_table_keeps_blocks_inside_one_variable():
    table = block_table((5, 1, 9), 4, torch.device("cpu"))
    var, start, end = table.tolist()
    assert var == [0, 0, 1, 2, 2, 2]
    assert start == [0, 4, 5, 6, 10, 14]
    assert end == [4, 5, 6, 10, 14, 15]
