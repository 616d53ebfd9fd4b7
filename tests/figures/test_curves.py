"""Training curves from metrics.jsonl, and `metavoxel plot RUN_DIR`."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

import metavoxel.figures.curves as curves
from metavoxel.cli import run
from metavoxel.errors import InputError
from metavoxel.figures import read_metrics, training_curves


def _log(run_dir, extra_validation: bool = False):
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in range(10, 110, 10):
        row = {"step": step, "lr": 1e-4, "records_per_s": 50.0, "loss": 2.0 / step ** 0.5,
               "loss/image": 1.5 / step ** 0.5, "loss/age": 0.3 / step ** 0.5, "loss/sex": 0.2 / step ** 0.5}
        if step % 50 == 0:
            row["val_loss"] = 2.2 / step ** 0.5
            if extra_validation:
                row["val/psnr"] = 20.0 + step / 10
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


@pytest.fixture
def drawn(monkeypatch):
    figures = []
    real = curves.save_figure

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return real(fig, path, **kwargs)

    monkeypatch.setattr(curves, "save_figure", keep)
    return figures


def test_losses_per_variable_and_validation_against_step(tmp_path, drawn):
    png, pdf = training_curves(_log(tmp_path / "run"))
    assert png == tmp_path / "run" / "training_curves.png" and pdf.suffix == ".pdf"
    assert matplotlib.image.imread(png)[..., :3].std() > 0.01
    (fig,) = drawn
    total, per_variable = fig.axes
    assert [line.get_label() for line in total.lines] == ["training", "validation"]
    assert list(total.lines[1].get_xdata()) == [50, 100]
    assert sorted(line.get_label() for line in per_variable.lines) == ["age", "image", "sex"]
    assert total.get_yscale() == "log" and total.get_xlabel() == "step"


def test_other_validation_metrics_get_their_own_panel(tmp_path, drawn):
    training_curves(_log(tmp_path / "run", extra_validation=True), tmp_path / "out" / "curves.png", vector="svg")
    assert (tmp_path / "out" / "curves.svg").is_file()
    (fig,) = drawn
    assert len(fig.axes) == 3 and [line.get_label() for line in fig.axes[2].lines] == ["val/psnr"]


def test_a_damaged_or_missing_log_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="metavoxel train"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "loss"\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1.0}\n')
    with pytest.raises(InputError, match="line 1 is not a metrics row"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no metrics yet"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_plot_command(tmp_path, capsys):
    run_dir = _log(tmp_path / "run")
    assert run(["plot", str(run_dir)]) == 0
    assert "training_curves.png" in capsys.readouterr().out and (run_dir / "training_curves.pdf").is_file()
    assert run(["plot", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "metavoxel train" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert run(["plot", str(run_dir), "--vector", "eps"]) == 2
    assert "pdf or svg" in capsys.readouterr().err
