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
    """Scalar variables of one subject: fixed value, or mean ± SD and 90% interval, or class probabilities."""
    from metavoxel.variables.protocol import ScalarHead

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
            detail = top_probabilities(var.categories, summary["probs"][0])
            table.add_row(name, "sampled", summary["majority"][0], detail)
        else:
            table.add_row(name, "sampled", f"{summary['mean'][0]:.2f} ± {summary['sd'][0]:.2f}",
                          f"90% interval [{summary['lower'][0]:.2f}, {summary['upper'][0]:.2f}]")
    return table


def top_probabilities(categories, probs, top: int = TOP_CLASSES) -> str:
    """``F 0.70, M 0.30``; with more than ``top + 1`` classes the ``top`` likeliest, then the rest's total:
    ``c7 0.40, c2 0.20, …, 295 others 0.12``."""
    pairs = list(zip(categories, (float(p) for p in probs)))
    if len(pairs) <= top + 1:
        return ", ".join(f"{c} {p:.2f}" for c, p in pairs)
    ranked = sorted(pairs, key=lambda cp: -cp[1])  # stable: ties keep the categories' order
    rest = sum(p for _, p in ranked[top:])
    return ", ".join(f"{c} {p:.2f}" for c, p in ranked[:top]) + f", {len(ranked) - top} others {rest:.2f}"
