"""The preview font draws every character it claims, in the documented size."""

import numpy as np
import pytest

from metavoxel.io.font import _GLYPHS, render_text


def test_each_glyph_is_three_by_five_and_distinct():
    shapes = {tuple(map(len, g)) for g in _GLYPHS.values()}
    assert shapes == {(3, 3, 3, 3, 3)}
    drawn = {k: render_text(k).tobytes() for k in _GLYPHS if k != " "}
    assert len(set(drawn.values())) == len(drawn), "two characters render alike"


@pytest.mark.parametrize("scale", [1, 3])
def test_text_size_and_ink(scale):
    pixels = render_text("age=70.5", scale=scale)
    assert pixels.shape == (5 * scale, 4 * 8 * scale) and pixels.dtype == np.uint8
    assert set(np.unique(pixels)) == {0, 255}
    assert not render_text(" ").any() and render_text("a").tobytes() == render_text("A").tobytes()
