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
    return Console()


def progress_bar(*, loss: bool = False) -> Progress:
    columns = [TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    if loss:
        columns.append(TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} records/s"))
    return Progress(*columns, console=console(), transient=False)


def result_table(result) -> Table:
    """Scalar variables of one subject: the fixed value, or whatever the kind's summary holds.

    Any summary the protocol allows renders (`metavoxel.variables.summaries`): its point estimate
    (``mean``/``median``/``majority``) as the value, every other entry as ``key value`` in the detail column,
    ``probs`` labelled by the variable's categories when it declares them.
    """
    from metavoxel.variables.capabilities import HasCategories
    from metavoxel.variables.protocol import ScalarHead
    from metavoxel.variables.summaries import checked_summary, summary_cells

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
        cells = summary_cells(summary, 0, labels)
        value = next((_short(x) for suffix, x in cells if suffix == ""), "")
        probs = [(suffix.removeprefix("p_"), x) for suffix, x in cells if suffix.startswith("p_")]
        detail = ", ".join([f"{suffix} {_short(x)}" for suffix, x in cells if suffix and not suffix.startswith("p_")]
                           + ([top_probabilities([c for c, _ in probs], [x for _, x in probs])] if probs else []))
        table.add_row(name, "sampled", value, detail)
    return table


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
