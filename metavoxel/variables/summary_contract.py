"""The summary contract: the one declared shape every ``Variable.summarize`` returns, and how the CLI and
``predict`` lay any such summary out.

The summary contract (checked by the conformance suite, relied on by ``metavoxel sample`` and ``predict``):
``summarize(samples (N, S, ...))`` of a scalar variable returns a dict of one or more entries ``key -> list of
N per-subject items`` (an image variable may also give tensors (N, ...)); keys are identifiers (``[A-Za-z_][A-Za-z0-9_]*``); an item is a finite number, a string, or a
non-empty list of finite numbers of one length for every subject. Nothing else is required: the CLI and
``predict`` render whatever keys are present, in order. Three keys carry a meaning when present:

- the first of `POINT_KEYS` (``mean``, ``median``, ``majority``, ``mode``) is the point estimate: the value
  column of the ``sample`` table and the ``<target>`` column of ``predict``;
- ``probs``: per-subject class probabilities (lists of K numbers summing to 1, labelled by the variable's
  ``categories`` when it declares `metavoxel.HasCategories`): ``predict`` columns ``<target>_p_<label>``;
- any other key ``k``: ``predict`` column ``<target>_<k>`` (a list item: ``<target>_<k>_<i>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["POINT_KEYS", "checked_summary", "summary_cells", "summary_problem"]

POINT_KEYS = ("mean", "median", "majority", "mode")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def summary_problem(summary: Any, n: int, *, spatial: bool = False) -> str | None:
    """What is wrong with ``summary`` as a summary of ``n`` subjects under the contract above, or None.

    With ``spatial`` (an image variable, whose summaries are kept as tensors and never rendered as text), an
    entry may also be a tensor (N, ...).
    """
    if not isinstance(summary, dict) or not summary:
        return f"summarize must return a non-empty dict, got {type(summary).__name__} {summary!r:.60}"
    for key, items in summary.items():
        if not isinstance(key, str) or not _KEY.match(key):
            return f"summary key {key!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        if spatial and isinstance(items, torch.Tensor):
            if items.dim() == 0 or items.shape[0] != n:
                return f"summary[{key!r}] must be a tensor (N={n}, ...), got shape {tuple(items.shape)}"
            continue
        if not isinstance(items, list) or len(items) != n:
            got = f"a list of {len(items)}" if isinstance(items, list) else type(items).__name__
            return f"summary[{key!r}] must be a list of one item per subject ({n}), got {got}; use .tolist()"
        widths = set()
        for item in items:
            if isinstance(item, list):
                if not item or not all(_number(x) for x in item):
                    return f"summary[{key!r}] has the item {item!r:.60}; a list item must hold finite numbers"
                widths.add(len(item))
            elif not (_number(item) or isinstance(item, str)):
                return (f"summary[{key!r}] has the item {item!r:.60} ({type(item).__name__}); items are finite "
                        "numbers, strings or lists of finite numbers")
        if len(widths) > 1:
            return f"summary[{key!r}] has lists of lengths {sorted(widths)}; every subject's list has one length"
        if key == "probs" and any(abs(sum(p) - 1) > 1e-4 for p in items if isinstance(p, list)):
            return "summary['probs'] must hold class probabilities summing to 1 per subject"
    return None


def checked_summary(variable: Any, summary: Any, n: int) -> dict[str, list]:
    """``summary`` if it keeps the contract for ``n`` subjects; else `metavoxel.PluginError` naming the kind.

    Called before anything is written, so a kind that breaks the contract leaves no partial output.
    """
    problem = summary_problem(summary, n)
    if problem is not None:
        from metavoxel.errors import PluginError

        raise PluginError(f"variable {variable.name!r} of kind {variable.kind!r}: {problem} "
                          "(see Variable.summarize; the conformance suite checks this)")
    return summary


def summary_cells(summary: dict[str, list], subject: int, labels: Sequence[str] | None = None) -> list[tuple[str, Any]]:
    """One subject's summary as (column suffix, item) pairs, in key order: suffix ``""`` for the point estimate,
    ``p_<label>`` for ``probs`` (labels, else class indices), ``<key>`` or ``<key>_<i>`` for the rest."""
    point = next((k for k in POINT_KEYS if k in summary), None)
    cells: list[tuple[str, Any]] = []
    for key, items in summary.items():
        item = items[subject]
        if key == point:
            cells.append(("", item))
        elif isinstance(item, list):
            names = labels if key == "probs" and labels is not None and len(labels) == len(item) else range(len(item))
            prefix = "p" if key == "probs" else key
            cells += [(f"{prefix}_{name}", x) for name, x in zip(names, item)]
        else:
            cells.append((key, item))
    return cells
