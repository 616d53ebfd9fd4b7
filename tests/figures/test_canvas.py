"""Saving figures: PNG + vector copy, atomic, no dates (same figure, same bytes), the outputs' file mode."""

from __future__ import annotations

import pytest

from metavoxel.errors import InputError
from metavoxel.figures import figure, save_figure
from metavoxel.io.atomic import write_json


def _draw(fig) -> None:
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 2], label="a line")
    ax.set_title("title")
    ax.legend()


@pytest.mark.parametrize("vector", ["pdf", "svg"])
def test_same_figure_same_bytes_without_dates(tmp_path, vector):
    written = []
    for name in ("one", "two"):
        with figure(2, 2) as fig:
            _draw(fig)
            written.append(save_figure(fig, tmp_path / name / "plot.png", vector=vector))
    (png1, vec1), (png2, vec2) = written
    assert vec1.suffix == f".{vector}" and vec1.parent == png1.parent
    assert png1.read_bytes() == png2.read_bytes() and vec1.read_bytes() == vec2.read_bytes()
    assert png1.read_bytes().startswith(b"\x89PNG") and len(png1.read_bytes()) > 1000
    text = vec1.read_bytes()
    assert b"CreationDate" not in text and b"<dc:date>" not in text
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*"))


def test_figures_have_the_file_mode_of_every_other_output(tmp_path):
    reference = write_json(tmp_path / "metrics.json", {})
    with figure(2, 2) as fig:
        _draw(fig)
        png, pdf = save_figure(fig, tmp_path / "plot.png")
    mode = reference.stat().st_mode & 0o777
    assert png.stat().st_mode & 0o777 == mode and pdf.stat().st_mode & 0o777 == mode


def test_png_only_and_bad_names(tmp_path):
    with figure(2, 2) as fig:
        _draw(fig)
        assert save_figure(fig, tmp_path / "plot.png", vector=None) == [tmp_path / "plot.png"]
        with pytest.raises(InputError, match="must end in .png"):
            save_figure(fig, tmp_path / "plot.jpg")
        with pytest.raises(InputError, match="pdf or svg"):
            save_figure(fig, tmp_path / "plot.png", vector="eps")


def test_no_module_uses_pyplot_or_switches_the_backend():
    """pyplot's global state and backend switching would break a caller's notebook or need a display."""
    from pathlib import Path

    import metavoxel

    root = Path(metavoxel.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import matplotlib.pyplot" not in text and "from matplotlib import pyplot" not in text, path
        assert "matplotlib.use(" not in text, path
