"""The signal probe: ridge with exact leave-one-out, the feature views, and raw-vs-reconstructed scores."""

from __future__ import annotations

import math

import pytest
import torch
from metavoxel.errors import InputError
from metavoxel.vae.probe import ProbeResult, RidgeProbe, intensity_histogram, pooled_features, signal_probe


def planted(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(n, 1, size³) noise images whose left half brightens linearly with a value in [40, 95], and whose
    top half brightens by 0.3 for label "M": a linear signal the pooled features carry exactly."""
    generator = torch.Generator().manual_seed(seed)
    value = 40 + 55 * torch.rand(n, generator=generator, dtype=torch.float64)  # (n,)
    label = ["M" if b else "F" for b in (torch.rand(n, generator=generator) < 0.5).tolist()]
    images = 0.3 + 0.05 * torch.randn(n, 1, size, size, size, generator=generator)  # (n, 1, s, s, s)
    images[:, :, : size // 2] += 0.004 * (value - 40).float()[:, None, None, None, None]
    images[:, :, :, : size // 2] += 0.3 * torch.tensor([m == "M" for m in label]).float()[:, None, None, None, None]
    return images.clamp(0, 1), value, label


def test_ridge_leave_one_out_is_exact_for_fixed_features():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(17, 5, generator=generator, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)  # already standardised: the probe's own standardisation is the identity
    y = torch.randn(17, 1, generator=generator, dtype=torch.float64)
    probe = RidgeProbe(penalties=[0.2]).fit(x, y)
    residuals = []
    for i in range(len(x)):
        keep = [j for j in range(len(x)) if j != i]
        xs, ys = x[keep], y[keep]
        xc = xs - xs.mean(0)
        w = torch.linalg.solve(xc.T @ xc + 0.2 * len(x) * torch.eye(5, dtype=torch.float64), xc.T @ (ys - ys.mean(0)))
        residuals.append(y[i] - ((x[i] - xs.mean(0)) @ w + ys.mean(0)))
    # PRESS (Allen 1974) is exact for ridge with an unpenalised intercept: each refit centres its own N - 1
    assert probe.loo_error == pytest.approx(torch.stack(residuals).pow(2).mean().item(), rel=1e-9)


def test_probe_recovers_a_planted_linear_signal():
    train, value, label = planted(120, seed=0)
    test, test_value, test_label = planted(40, seed=1)
    result = signal_probe(train, {"age": value.tolist(), "sex": label}, test, test,
                          {"age": test_value.tolist(), "sex": test_label}, categorical=["sex"], grid=4)
    age, sex = result["age"], result["sex"]
    assert age.kind == "continuous" and age.raw < 0.25 * age.baseline  # far better than the training mean
    assert sex.kind == "categorical" and sex.raw >= 0.95 and sex.raw > sex.baseline + 0.3


def test_reconstruction_equal_to_raw_gives_ratio_one():
    train, value, label = planted(60, seed=0)
    test, test_value, test_label = planted(20, seed=1)
    result = signal_probe(train, {"age": value.tolist(), "sex": label}, test, test.clone(),
                          {"age": test_value.tolist(), "sex": test_label}, categorical=["sex"], grid=4)
    assert result["age"].ratio == 1.0 and result["age"].recon == result["age"].raw
    assert result["sex"].ratio == 1.0
    summary = result["age"].to_dict()
    assert {"mae_raw", "mae_recon", "mae_baseline", "ratio", "features"} <= set(summary) and summary["ratio"] == 1.0


def test_a_reconstruction_that_erases_the_signal_has_a_large_ratio():
    train, value, label = planted(60, seed=0)
    test, test_value, test_label = planted(20, seed=1)
    blank = test.mean(0, keepdim=True).expand_as(test).clone()  # every subject reconstructed as the mean image
    result = signal_probe(train, {"age": value.tolist(), "sex": label}, test, blank,
                          {"age": test_value.tolist(), "sex": test_label}, categorical=["sex"], grid=4)
    assert result["age"].ratio > 2
    assert result["sex"].recon < 0.8 < result["sex"].raw


def test_missing_values_are_left_out_per_variable():
    train, value, label = planted(30, seed=0)
    test, test_value, _ = planted(10, seed=1)
    values = value.tolist()
    values[:5] = [None, math.nan, None, math.nan, None]
    result = signal_probe(train, {"age": values, "sex": [None] * 30}, test, test,
                          {"age": test_value.tolist(), "sex": [None] * 10}, categorical=["sex"], grid=2)
    assert result["age"].train == 25 and result["age"].test == 10 and "sex" not in result


def test_intensity_histogram_counts_fractions_with_linear_binning():
    images = torch.tensor([0.125, 0.125, 0.25, 1.0]).reshape(1, 1, 2, 2, 1)  # 4 bins: centres 1/8, 3/8, 5/8, 7/8
    hist = intensity_histogram(images, bins=4)
    # 0.125 sits on bin 0's centre; 0.25 halfway between bins 0 and 1; 1.0 beyond the last centre
    assert hist.tolist() == [[pytest.approx(0.625), pytest.approx(0.125), 0.0, pytest.approx(0.25)]]
    assert intensity_histogram(torch.rand(3, 2, 5, 5, 5)).sum(1).tolist() == pytest.approx([2.0] * 3)


def test_pooled_features_shape_and_bad_input():
    assert pooled_features(torch.rand(3, 2, 8, 8, 8), 4).shape == (3, 2 * 64)
    assert pooled_features(torch.rand(3, 1, 8, 6), (2, 3)).shape == (3, 6)
    with pytest.raises(InputError, match="2 or 3 spatial axes"):
        pooled_features(torch.rand(8, 8), 2)


def test_mismatched_reconstructions_and_unknown_views_are_refused():
    train, value, _ = planted(10, seed=0)
    with pytest.raises(InputError, match="one reconstruction per held-out image"):
        signal_probe(train, {"age": value.tolist()}, train, train[:5], {"age": value.tolist()})
    with pytest.raises(InputError, match="choose from pooled, histogram, both"):
        signal_probe(train, {"age": value.tolist()}, train, train, {"age": value.tolist()}, views=["wavelet"])


def test_accuracy_ratio_is_the_error_rate_ratio():
    assert ProbeResult("categorical", 0.8, 0.7, 0.5, "both", 1.0, 10, 10).ratio == pytest.approx(1.5)
    assert ProbeResult("categorical", 1.0, 0.9, 0.5, "both", 1.0, 10, 10).ratio == math.inf
    assert ProbeResult("categorical", 1.0, 0.9, 0.5, "both", 1.0, 10, 10).to_dict()["ratio"] is None


def test_refit_on_reconstructions_separates_moved_intensities_from_lost_signal():
    train, value, label = planted(60, seed=0)
    test, test_value, test_label = planted(20, seed=1)
    values, test_values = {"age": value.tolist(), "sex": label}, {"age": test_value.tolist(), "sex": test_label}

    def shifted(x):  # keeps every signal, moves every intensity: what a blurring VAE does to a histogram
        return 0.5 * x + 0.2

    moved = signal_probe(train, values, test, shifted(test), test_values, categorical=["sex"], grid=4,
                         views=["pooled"], train_recon=shifted(train))
    assert moved["age"].ratio > 1.5  # the raw-fitted probe cannot read the moved intensities ...
    assert moved["age"].refit_ratio == pytest.approx(1.0, rel=1e-6)  # ... the signal is all there
    assert moved["sex"].refit == moved["sex"].raw
    summary = moved["age"].to_dict()
    assert summary["mae_refit"] == pytest.approx(summary["mae_raw"], rel=1e-6) and summary["refit_ratio"] > 0

    blank, blank_train = (x.mean(0, keepdim=True).expand_as(x).clone() for x in (test, train))
    gone = signal_probe(train, values, test, blank, test_values, categorical=["sex"], grid=4, train_recon=blank_train)
    assert gone["age"].refit == pytest.approx(gone["age"].baseline)  # nothing to refit on: the training mean
    assert gone["age"].refit_ratio > 2 and gone["sex"].refit == gone["sex"].baseline
    no_refit = signal_probe(train, {"age": value.tolist()}, test, test, test_values, grid=4)["age"]
    assert no_refit.refit is None and no_refit.to_dict()["refit_ratio"] is None
    with pytest.raises(InputError, match="one reconstruction per training image"):
        signal_probe(train, {"age": value.tolist()}, test, test, test_values, train_recon=train[:5])
