"""Commands over a subject's own scan: ``edit`` (a counterfactual at other values) and ``deviation`` (a voxelwise
z-score against the model's brains for the scan's values)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metavoxel.cli.display import console, progress_bar
from metavoxel.cli.run_commands import Grid, Model, Precision, Seed, Steps

Fix = Annotated[list[str] | None, typer.Option("--fix", help="NAME=VALUE, repeatable: the scan (image=scan.nii.gz) "
                                               "and its observed values (age=71, sex=F); a value not given is "
                                               "inferred from the scan and reported.")]
Space = Annotated[str, typer.Option(help="Grid of the written images: source (the scan's own grid and header) or "
                                    "model.")]


def edit(model: Model, fix: Fix = None,
         set_: Annotated[list[str] | None, typer.Option("--set", help="NAME=VALUE, repeatable: the value to edit to "
                                                        "(age=81, sex=M), or a change from the observed value "
                                                        "(age=+10: this brain ten years on, as a cross-sectional "
                                                        "counterfactual).")] = None,
         out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (new, or an earlier edit's).")]
         = Path("edit"),
         steps: Steps = None, grid: Grid = None,
         refine: Annotated[int, typer.Option("--refine", help="Fixed-point iterations per inversion step (0: plain "
                                             "DDIM inversion; each adds one network call per step).")] = 1,
         guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance weight w >= 0 of the "
                                                 "inversion and regeneration (a model trained with prior "
                                                 "subsets): a larger change, less of the scan kept.")] = 0.0,
         output: Annotated[str, typer.Option("--output", help="change (the scan plus the decoded change) or decoded "
                                             "(the decoded edit, as blurred as the VAE).")] = "change",
         seed: Seed = None, space: Space = "source", precision: Precision = "fp32") -> None:
    """Edit a subject's own scan to other values (DDIM inversion under its values, regeneration with the new ones);
    writes the edited scan, the difference map (edited - original) and edit.json."""
    from metavoxel.diffusion.options import EditOptions
    from metavoxel.workflows.edit import edit_run
    from metavoxel.workflows.sample import parse_assignments

    options = EditOptions(steps=steps, grid=grid, refine=refine, guidance=guidance, output=output, seed=seed,
                          precision=precision)  # validated here, before any work
    fixed, changes = parse_assignments(fix or [], "--fix"), parse_assignments(set_ or [], "--set")
    tables = []
    with progress_bar() as bar:
        task = bar.add_task("editing", total=None)
        _result, files = edit_run(model, fixed, changes, out, options, space=space,
                                  progress=lambda d, t: bar.update(task, completed=d, total=t),
                                  before_write=lambda result: tables.append(_edit_table(result)))
    console().print(tables[0])
    console().print(f"wrote {', '.join(escape(f.name) for f in files)} to {escape(str(out))}")


def _edit_table(result) -> Table:
    table = Table(title=f"edit: {result.steps} steps each way, refine {result.refine}, output {result.output}")
    table.add_column("variable")
    table.add_column("scan's value")
    table.add_column("edited to")
    for name, values in result.observed.items():
        shown = _shown(values[0]) + (" (inferred)" if name in result.inferred else "")
        table.add_row(name, shown, _shown(result.changed[name][0]) if name in result.changed else "unchanged")
    return table


def _shown(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def deviation(model: Model, fix: Fix = None,
              num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Brains drawn for the scan's "
                                                       "values (2 or more; the SD's own error is ~1/sqrt(2n)).",
                                                       min=1)] = 16,
              steps: Steps = None, grid: Grid = None, seed: Seed = None,
              out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (new, or an earlier deviation's).")]
              = Path("deviation"),
              floor: Annotated[float, typer.Option("--sd-floor", help="Smallest SD a voxel's z divides by, in the "
                                                   "model's units (the scan scaled to [0, 1]).")] = 0.02,
              reference: Annotated[str, typer.Option("--reference", help="What is scored: scan (the scan itself) or "
                                                     "reconstruction (the scan through the VAE, as smooth as the "
                                                     "samples).")] = "scan",
              space: Space = "source", precision: Precision = "fp32") -> None:
    """Deviation map: the voxelwise z-score of a scan against the model's brains for its values (normative
    modelling from one model); writes the z-score, the expected image and its SD as NIfTI, and deviation.json."""
    from metavoxel.diffusion.options import SamplingOptions
    from metavoxel.workflows.deviation import deviation_run
    from metavoxel.workflows.sample import parse_assignments

    options = SamplingOptions(num_samples=num_samples, steps=steps, grid=grid, seed=seed, precision=precision)
    fixed = parse_assignments(fix or [], "--fix")
    with progress_bar() as bar:
        task = bar.add_task("sampling", total=None)
        result, files = deviation_run(model, fixed, out, options, floor=floor, reference=reference, space=space,
                                      progress=lambda d, t: bar.update(task, completed=d, total=t))
    values = ", ".join(f"{n}={_shown(v[0])}{' (inferred)' if n in result.inferred else ''}"
                       for n, v in result.values.items())
    z = result.z[0]
    console().print(f"{result.num_samples} brains for {escape(values)}: |z| > 3 in {float((z.abs() > 3).float().mean()):.1%} "
                    "of the model grid's voxels")
    console().print(f"wrote {', '.join(escape(f.name) for f in files)} to {escape(str(out))}")
