"""`train --tensorboard`: TensorBoard gets the scalars of every metrics row (the trainer's `log` hook is tested
in test_trainer.py: it receives exactly the rows of metrics.jsonl)."""

from __future__ import annotations

import math
import sys
import types

import pytest

from metavoxel.cli import run
from metavoxel.errors import InputError
from metavoxel.training.tensorboard import TensorBoardLog


class _Writer:
    made: list[_Writer] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        _Writer.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_every_finite_number_becomes_a_scalar_at_its_step(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _Writer.made.clear()
    log = TensorBoardLog(tmp_path / "tensorboard")
    assert not _Writer.made, "no event file before the first row (other torchrun ranks never write one)"
    log({"step": 10, "loss": 0.5, "loss/age": 0.1, "lr": 1e-4})
    log({"step": 20, "loss": math.nan, "val_loss": 0.4})
    (writer,) = _Writer.made
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.purge_step == 10
    assert writer.scalars == [("loss", 0.5, 10), ("loss/age", 0.1, 10), ("lr", 1e-4, 10), ("val_loss", 0.4, 20)]
    log.close()
    assert writer.closed


def test_without_tensorboard_train_stops_at_once_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(InputError, match=r"pip install metavoxel\[tensorboard\]"):
        TensorBoardLog(tmp_path)
    out = tmp_path / "run"
    code = run(["train", "--spec", str(tmp_path / "spec.yaml"), "--data", str(tmp_path / "cohort.tsv"),
                "--out", str(out), "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install metavoxel[tensorboard]" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not out.exists()


def test_real_tensorboard_event_files_hold_the_scalars_once_per_step_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoardLog(tmp_path)
    for step in (5, 10, 15):  # then killed after the checkpoint at step 5
        first({"step": step, "loss": 1.0, "loss/age": 0.125})
    first.close()
    resumed = TensorBoardLog(tmp_path)
    for step in (10, 15, 20):
        resumed({"step": step, "loss": 0.5})
    resumed.close()
    assert "torchvision" not in sys.modules
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss", "loss/age"}
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(5, 1.0), (10, 0.5), (15, 0.5), (20, 0.5)]
