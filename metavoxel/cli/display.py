"""Rich widgets shared by the commands: the console, progress bars, and the sample summary table."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

__all__ = ["console", "progress_bar", "result_table"]


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
    """Scalar variables of one subject: fixed value, or mean ± SD and the interval named by its real level
    (50% from 3 samples, see `metavoxel.variables.summaries`), or class frequencies over the samples."""
    from metavoxel.variables.protocol import ScalarHead
    from metavoxel.variables.summaries import level_label

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
        summary = result.summary(name)
        if "probs" in summary:
            probs = ", ".join(f"{c} {p:.2f}" for c, p in zip(var.categories, summary["probs"][0]))
            table.add_row(name, "sampled", summary["majority"][0], f"{probs} (of {result.num_samples} samples)")
        else:
            level = summary.get("level", [0.0])[0]
            interval = (f"{level_label(level)} interval [{summary['lower'][0]:.2f}, {summary['upper'][0]:.2f}]"
                        if level > 0 else "one sample: no interval")
            table.add_row(name, "sampled", f"{summary['mean'][0]:.2f} ± {summary['sd'][0]:.2f}", interval)
    return table
