"""The commands. Heavy imports happen inside each command so ``metavoxel --help`` stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metavoxel.cli.run_commands import seed_option

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.", callback=seed_option)]


def plugins() -> None:
    """List every variable kind with the plugin, distribution and version that provides it; then the installed
    plugins that failed to load (with the error) or are blocked by METAVOXEL_DISABLE_PLUGINS."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import warnings

    from metavoxel.plugins import default_registry
    from metavoxel.plugins.registry import PluginWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # listed below, once
        registry = default_registry()
    table = Table(title="metavoxel variable kinds")
    for column in ("kind", "plugin", "distribution", "version"):
        table.add_column(column, no_wrap=True)
    for column in ("entry point", "description"):
        table.add_column(column, overflow="fold")
    for kind in registry.kinds():
        origin = registry.origin(kind.name)
        table.add_row(*map(escape, (kind.name, origin.name, origin.distribution, origin.version, origin.entry_point,
                                   kind.description)))
    console = Console()
    console.print(table)
    for failure in registry.failures:
        console.print(f"[red]failed:[/red] {escape(str(failure))}")
    for origin in registry.blocked:
        console.print(f"[yellow]blocked:[/yellow] {escape(str(origin))} (METAVOXEL_DISABLE_PLUGINS)")


def schema(
    out: OutDir = Path("schemas"),
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the files under --out are not current.")] = False,
    with_installed_plugins: Annotated[bool, typer.Option(
        "--with-installed-plugins",
        help="Allow every installed plugin's kinds in the schema (default: metavoxel's built-in kinds only).")] = False,
) -> None:
    """Write the ModelSpec JSON Schema and the example specs (schemas/)."""
    from metavoxel.schema_files import stale_schema_files, write_schema_files

    flag = " --with-installed-plugins" if with_installed_plugins else ""
    if check:
        stale = stale_schema_files(out, with_installed_plugins=with_installed_plugins)
        if stale:
            typer.echo(f"stale or missing under {out}: {', '.join(stale)}; run `metavoxel schema --out {out}{flag}`",
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    for path in write_schema_files(out, with_installed_plugins=with_installed_plugins):
        typer.echo(f"wrote {path}")


def demo(
    out: OutDir = Path("runs/demo"),
    subjects: Annotated[int | None, typer.Option(help="Phantom subjects (default: the demo recipe's 600).",
                                                 min=20)] = None,
    vae_steps: Annotated[int | None, typer.Option(help="VAE training steps with --train-vae (default 200).",
                                                  min=1)] = None,
    train_vae: Annotated[bool, typer.Option("--train-vae", help="Train a VAE on the cohort (the demo's earlier recipe) "
                                            "instead of using the phantom VAE shipped with metavoxel.")] = False,
    train_steps: Annotated[int | None, typer.Option(help="Joint-model training steps (default 900).",
                                                    min=1)] = None,
    steps: Annotated[int, typer.Option(help="Reverse steps per sample.", min=1)] = 50,
    num_samples: Annotated[int, typer.Option(help="Samples per subject for the age intervals (the answer itself "
                                                  "is the point prediction; the interval's level follows from "
                                                  "the count: 3 give a 50% interval, 19 a 90% one).",
                                             min=1)] = 3,
    guidance: Annotated[float | None, typer.Option(help="Guidance weight of the conditional generation "
                                                        "(default 2; 0 for none).", min=0)] = None,
    seed: Seed = 0,
) -> None:
    """Phantom cohort -> VAE -> one joint model, then generate, regress, classify and inpaint with it.

    The demo's phantom has stronger effects than the default one (age_effect=3, sex_effect=2; docs/phantom.md,
    "The demo's phantom"). Its VAE is the phantom VAE shipped with metavoxel (never trained on the demo's
    brains), unless --train-vae. Every figure it prints, with the constant it is compared with, goes to OUT/demo.json.
    """
    from rich.console import Console
    from rich.table import Table

    from metavoxel.cli.display import phase_progress, progress_bar
    from metavoxel.demo import run_demo

    console = Console()
    with progress_bar() as bar:
        progress = phase_progress(bar)

        report = run_demo(out, subjects=subjects, vae_steps=vae_steps, train_steps=train_steps, steps=steps,
                          num_samples=num_samples, guidance=guidance, seed=seed, train_vae=train_vae,
                          progress=progress)
    for note in report.notes:
        console.print(note, markup=False, highlight=False)
    for t in report.tables:
        table = Table(title=t.title)
        for column in t.columns:
            table.add_column(column)
        for row in t.rows:
            table.add_row(*map(str, row))
        console.print(table)
    missed = [c.name for c in report.checks if not c.met]
    console.print("The demo beats every constant it is compared with." if not missed else
                  f"The demo does NOT beat its constants on: {'; '.join(missed)}.", markup=False, highlight=False)
    console.print(f"cohort, VAE and model ready in {report.metrics['train_seconds']:.0f} s, "
                  f"{report.metrics['total_seconds']:.0f} s in all; written: "
                  + ", ".join(str(p) for p in report.files), markup=False, highlight=False)
    console.print("\nThe same on your own data (a BIDS root or a TSV/CSV table; see README.md):", markup=False)
    for line in ("metavoxel train-vae --spec spec.yaml --data COHORT --out runs/vae",
                 "metavoxel train --spec spec.yaml --data COHORT --out runs/joint",
                 "metavoxel sample --model runs/joint --fix image=scan.nii.gz --fix sex=F -n 3",
                 "metavoxel evaluate --model runs/joint --data COHORT --out runs/eval",
                 f"(this demo's spec: {report.run_dir}/spec.json; its cohort: {report.data})"):
        console.print("  " + line, markup=False, highlight=False)
