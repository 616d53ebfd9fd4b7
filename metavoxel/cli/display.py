"""Rich widgets shared by the commands: the console, progress bars, and the sample summary table."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

__all__ = ["TOP_CLASSES", "console", "progress_bar", "result_table", "top_probabilities"]

TOP_CLASSES = 5  # class probabilities shown on the CLI; samples.json keeps all of them


@functools.cache
def console() -> Console:
    """The console of every command's output. Text is not wrapped (``soft_wrap``): a path or a message stays on
    one line, whole for copying, and the terminal folds it where it must."""
    return Console(soft_wrap=True)


class _FirstUpdateProgress(Progress):
    """A progress bar that appears with its first update, so a command refused before any work prints only its
    error (no empty line, no bar at 0/?)."""

    _shown = False

    def __enter__(self) -> _FirstUpdateProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._shown:
            self.stop()

    def start(self) -> None:
        if not self._shown:
            self._shown = True
            super().start()

    def update(self, *args, **kwargs) -> None:
        self.start()
        super().update(*args, **kwargs)


def progress_bar(*, loss: bool = False) -> Progress:
    """The commands' progress bar; used as a context manager, it is drawn from the first ``update`` on."""
    columns = [TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    if loss:
        columns.append(TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} records/s"))
    return _FirstUpdateProgress(*columns, console=console(), transient=False)


def phase_progress(bar: Progress, *, width: int | None = None):
    """``progress(phase, done, total)`` drawing one task per phase on ``bar`` (the first ``width`` characters of
    the phase's name as its description)."""
    tasks: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase[:width] if width else phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    return progress


def result_table(result) -> Table:
    """Scalar variables of one subject: the fixed value, or whatever the kind's summary holds.

    Any summary the protocol allows renders (`metavoxel.variables.summary_contract`): its point estimate
    (``mean``/``median``/``majority``) as the value (``± sd`` when there is one), ``lower``/``upper`` as an
    interval named by the level it really has (``level``: 50% from 3 samples, see
    `metavoxel.variables.summaries`), ``probs`` labelled by the variable's categories when it declares them
    (the likeliest few), ``num_samples`` as "of S samples", every other entry as ``key value``.
    """
    from metavoxel.variables.capabilities import HasCategories
    from metavoxel.variables.protocol import ScalarHead
    from metavoxel.variables.summary_contract import checked_summary, summary_cells

    table = Table(title=f"{result.num_samples} sample(s), seed {result.seed}, {result.steps} steps")
    for column in ("variable", "status", "value", "detail"):
        table.add_column(column)
    for name, var in result.variables.items():
        if not isinstance(var.head, ScalarHead):
            table.add_row(name, "fixed" if result.is_fixed(name) else "sampled", "image", "")
            continue
        if result.is_fixed(name):
            table.add_row(name, "fixed", str(result.labels(name)[0][0]), "")
            continue
        summary = checked_summary(var, result.summary(name), result.num_subjects)
        labels = list(var.categories) if isinstance(var, HasCategories) else None
        value, detail = _render(dict(summary_cells(summary, 0, labels)))
        table.add_row(name, "sampled", value, detail)
    return table


def _render(cells: dict) -> tuple[str, str]:
    """(value, detail) text of one subject's summary cells (suffix -> item, see `summary_cells`)."""
    from metavoxel.variables.summaries import level_label

    cells = dict(cells)
    value = _short(cells.pop("", ""))
    if "sd" in cells:
        value += f" ± {_short(cells.pop('sd'))}"
    parts = []
    if "lower" in cells and "upper" in cells:
        level, lower, upper = cells.pop("level", None), cells.pop("lower"), cells.pop("upper")
        if isinstance(level, (int, float)) and level <= 0:
            parts.append("one sample: no interval")
        else:
            name = "interval" if level is None else f"{level_label(level)} interval"
            parts.append(f"{name} [{_short(lower)}, {_short(upper)}]")
    probs = [(suffix.removeprefix("p_"), x) for suffix, x in cells.items() if suffix.startswith("p_")]
    if probs:
        parts.append(top_probabilities([c for c, _ in probs], [x for _, x in probs]))
    samples = cells.pop("num_samples", None)
    parts += [f"{suffix} {_short(x)}" for suffix, x in cells.items() if not suffix.startswith("p_")]
    return value, ", ".join(parts) + (f" (of {samples} samples)" if samples is not None else "")


def _short(x) -> str:
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def top_probabilities(categories, probs, top: int = TOP_CLASSES) -> str:
    """``F 0.70, M 0.30``; with more than ``top + 1`` classes the ``top`` likeliest, then the rest's total:
    ``c7 0.40, c2 0.20, …, 295 others 0.12``."""
    pairs = list(zip(categories, (float(p) for p in probs)))
    if len(pairs) <= top + 1:
        return ", ".join(f"{c} {p:.2f}" for c, p in pairs)
    ranked = sorted(pairs, key=lambda cp: -cp[1])  # stable: ties keep the categories' order
    rest = sum(p for _, p in ranked[top:])
    return ", ".join(f"{c} {p:.2f}" for c, p in ranked[:top]) + f", {len(ranked) - top} others {rest:.2f}"
