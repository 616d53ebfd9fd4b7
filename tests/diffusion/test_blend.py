"""Seamless paste of known voxels into a decoded image (metavoxel.diffusion.blend)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metavoxel.diffusion.blend import seamless_paste
from metavoxel.evaluation.inpainting import border_layer, seam_ratio


@st.composite
def pastes(draw):
    """(decoded, known, mask) on a random 2D or 3D grid with a random keep-mask."""
    d = draw(st.sampled_from([2, 3]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *[draw(st.integers(2, 7)) for _ in range(d)])
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    decoded = torch.randn(shape, generator=g, dtype=torch.float64)
    known = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) < draw(st.floats(0.0, 1.0))
    return decoded, known, mask


@settings(max_examples=60)
@given(case=pastes(), sweeps=st.integers(0, 30))
def test_known_voxels_exact_and_corrections_within_the_border_errors(case, sweeps) -> None:
    decoded, known, mask = case
    out = seamless_paste(decoded, known, mask, sweeps=sweeps)
    assert out.shape == decoded.shape and out.dtype == decoded.dtype
    assert torch.equal(out[mask], known[mask])
    correction = (out - decoded)[~mask]
    error = (known - decoded)[mask]
    lo, hi = (min(0.0, float(error.min())), max(0.0, float(error.max()))) if error.numel() else (0.0, 0.0)
    assert bool((correction >= lo - 1e-12).all() and (correction <= hi + 1e-12).all()), "maximum principle"


@settings(max_examples=30)
@given(case=pastes())
def test_a_decoder_exact_on_the_known_voxels_leaves_the_rest_alone(case) -> None:
    decoded, _, mask = case
    torch.testing.assert_close(seamless_paste(decoded, decoded.clone(), mask), decoded, rtol=0, atol=0)


def test_a_decoder_offset_is_taken_off_next_to_the_border_and_the_seam_goes() -> None:
    """A decoder that adds 0.3 everywhere: the plain paste leaves a step of 0.3 along the border."""
    x = torch.linspace(0, 1, 16, dtype=torch.float64)
    truth = (x[:, None, None] + 0.5 * x[None, :, None] + 0.2 * x[None, None, :]).expand(16, 16, 16)[None, None]
    truth = truth + 0.05 * torch.sin(torch.arange(16.0, dtype=torch.float64) * 1.7)[None, None, None, None, :]
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[:, :, :8] = True
    decoded = truth + 0.3
    plain = torch.where(mask, truth, decoded)
    blended = seamless_paste(decoded, truth, mask)
    border = border_layer(mask)
    assert float((blended - truth)[border].abs().max()) < 0.1 < 0.29 < float((plain - truth)[border].abs().min())
    assert float(seam_ratio(truth, mask)) == pytest.approx(1.0)  # a ramp: the border is like the inside
    assert float(seam_ratio(blended, mask)) < 1.2 < 2 < float(seam_ratio(plain, mask))
    assert float((blended - truth)[~mask].abs().max()) <= 0.3 + 1e-12, "never further from the truth than the decoder"


def test_half_precision_does_not_overflow_and_integer_images_come_back_as_float() -> None:
    decoded = torch.zeros(1, 1, 8, 8, dtype=torch.float16)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    out = seamless_paste(decoded, torch.full_like(decoded, 30000.0), mask)  # six neighbours' sum > float16's max
    assert out.dtype == torch.float16 and bool(out.isfinite().all()) and float(out.max()) == 30000.0
    assert seamless_paste(decoded.int(), torch.ones(1, 1, 8, 8), mask).dtype == torch.float32


def test_zero_sweeps_is_a_plain_paste_and_bad_shapes_are_refused() -> None:
    decoded, known = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2] = True
    torch.testing.assert_close(seamless_paste(decoded, known, mask, sweeps=0), torch.where(mask, known, decoded))
    with pytest.raises(ValueError, match="one shape"):
        seamless_paste(decoded, known[..., :3], mask)
    with pytest.raises(ValueError, match=r"\(B, C, X, Y\)"):
        seamless_paste(decoded[0], known[0], mask[0])
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="sweeps must be a non-negative integer"):
            seamless_paste(decoded, known, mask, sweeps=bad)
