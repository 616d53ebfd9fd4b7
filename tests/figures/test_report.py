"""Report figures: written as PNG + PDF, non-empty, with the expected panels; rank (PIT) histogram maths."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

import metavoxel.figures.report as report
from metavoxel.errors import InputError
from metavoxel.figures import conditioning_panels, pit_ranks, predicted_vs_true, rank_histogram, reliability_diagram


@pytest.fixture
def drawn(monkeypatch):
    """The figures each report function saves, to count their panels and read their legends."""
    figures = []
    real = report.save_figure

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return real(fig, path, **kwargs)

    monkeypatch.setattr(report, "save_figure", keep)
    return figures


def _written(paths) -> None:
    png, pdf = paths
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, "the figure is not blank"
    assert pdf.suffix == ".pdf" and pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000


def _legend(fig) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def test_predicted_vs_true_one_colour_per_model_with_mae(tmp_path, drawn):
    truth = np.array([40.0, 50.0, 60.0, 70.0, np.nan])
    paths = predicted_vs_true(tmp_path / "age.png", {"MetaVoxel": (truth, truth + 2.0),
                                                     "DenseNet121": (truth, truth - 4.0)},
                              name="age", unit="years", limits=(40, 95))
    _written(paths)
    (fig,) = drawn
    (ax,) = fig.axes
    legend = _legend(fig)
    assert legend[0].startswith("identity")
    assert "MetaVoxel: MAE 2.00 years (n = 4)" in legend and "DenseNet121: MAE 4.00 years (n = 4)" in legend
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in ax.collections}
    assert len(colours) == 2
    with pytest.raises(InputError, match="one prediction per subject"):
        predicted_vs_true(tmp_path / "bad.png", {"m": (truth, truth[:2])}, name="age")


def test_reliability_diagram_shows_the_bin_counts(tmp_path, drawn):
    curves = {"samples": [(0.55, 0.5, 10), (0.95, 0.9, 30)], "likelihood": [(0.75, 0.75, 40)]}
    _written(reliability_diagram(tmp_path / "sex.png", curves, name="sex", min_confidence=0.5))
    (fig,) = drawn
    top, bottom = fig.axes
    assert _legend(fig) == ["perfectly calibrated", "samples: ECE 0.050", "likelihood: ECE 0.000"]
    assert sorted(int(round(p.get_height())) for p in bottom.patches) == [10, 30, 40]
    assert sorted(t.get_text() for t in bottom.texts) == ["10", "30", "40"]


def test_pit_ranks_count_the_samples_below_the_truth():
    samples = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    ranks = pit_ranks(samples, np.array([0.0, 2.5, 9.0, 5.0]))
    assert ranks[:3].tolist() == [0, 2, 3] and 0 <= ranks[3] <= 3
    ties = pit_ranks(np.full((3000, 3), 5.0), np.full(3000, 5.0))
    assert np.array_equal(ties, pit_ranks(np.full((3000, 3), 5.0), np.full(3000, 5.0)))  # seeded
    assert np.all(np.abs(np.bincount(ties, minlength=4) / 3000 - 0.25) < 0.04)  # ties split evenly
    with pytest.raises(InputError, match="expected samples"):
        pit_ranks(np.zeros(3), np.zeros(3))


def test_calibrated_samples_give_a_flat_rank_histogram(tmp_path, drawn):
    rng = np.random.default_rng(0)
    centre = rng.normal(size=4000)
    samples = centre[:, None] + rng.normal(size=(4000, 4))  # truth and samples from one distribution
    truth = centre + rng.normal(size=4000)
    counts = np.bincount(pit_ranks(samples, truth), minlength=5)
    assert np.all(np.abs(counts / 4000 - 0.2) < 0.03)
    overconfident = np.bincount(pit_ranks(centre[:, None] + 0.1 * rng.normal(size=(4000, 4)), truth), minlength=5)
    assert overconfident[0] + overconfident[-1] > 0.7 * 4000  # a U shape
    _written(rank_histogram(tmp_path / "rank.png", samples[:200], truth[:200], name="age"))
    (fig,) = drawn
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) >= 5


def test_table2_has_one_panel_per_conditioning_set(tmp_path, drawn):
    rng = np.random.default_rng(1)
    truth = rng.uniform(40, 95, 30)
    sets = {"I,C": truth[:, None] + rng.normal(0, 3, (30, 3)), "I": truth[:, None] + rng.normal(0, 3, (30, 3)),
            "C": rng.uniform(40, 95, (30, 3)), "none": rng.uniform(40, 95, (30, 3))}
    _written(conditioning_panels(tmp_path / "t2.png", sets, truth, name="age", unit="years", population_mean=67.0))
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 and titles[0].startswith("given image + sex") and titles[3].startswith("given nothing")
    with pytest.raises(InputError, match="has 2 subjects"):
        conditioning_panels(tmp_path / "bad.png", {"I": np.zeros((2, 3))}, truth, name="age")
