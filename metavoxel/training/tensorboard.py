"""TensorBoard logging of training: the scalars of ``metrics.jsonl``, under the same names, as they are logged.

TensorBoard is an optional extra (``pip install metavoxel[tensorboard]``); torch's
``torch.utils.tensorboard.SummaryWriter`` writes the event files, and it does not need torchvision for
scalars. View a run with ``tensorboard --logdir RUN_DIR/tensorboard``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metavoxel.errors import InputError

__all__ = ["TensorBoardLog"]


class TensorBoardLog:
    """``log(row)`` for `metavoxel.training.train`: every number of a metrics row becomes a scalar at ``row["step"]``.

    The event file is created on the first row, so under ``torchrun`` only the process that logs (rank 0)
    writes one; it purges what earlier event files hold from that row's step on, so a resumed run (which
    repeats the steps after its last checkpoint) shows each step once, as ``metrics.jsonl`` does.
    Non-finite values are skipped, as TensorBoard cannot draw them.

    Args:
        log_dir: where the event files go (e.g. ``RUN_DIR/tensorboard``).

    Raises:
        InputError: tensorboard is not installed (the message names the extra to install).
    """

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("--tensorboard: expected the tensorboard package, but it is not installed; "
                             "run pip install metavoxel[tensorboard], or train without --tensorboard") from None
        self.log_dir = Path(log_dir)
        self._make = SummaryWriter
        self._writer: Any = None

    def __call__(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        if self._writer is None:
            self._writer = self._make(log_dir=str(self.log_dir), purge_step=step)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(float(value)):
                self._writer.add_scalar(key, float(value), step)
        self._writer.flush()  # a row every log_every steps: cheap, and a live TensorBoard sees it at once

    def close(self) -> None:
        """Flush and close the event file (if any row was logged)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
