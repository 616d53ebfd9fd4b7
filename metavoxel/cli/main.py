"""Entry point: builds the Typer app and turns known errors into one line and an exit code.

Bad input prints ``error: <what was expected, what arrived, what to do>`` and exits with 2; no
traceback unless ``METAVOXEL_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

import typer

from metavoxel.cli import commands, phantom_command, run_commands
from metavoxel.errors import MetavoxelError

app = typer.Typer(
    name="metavoxel",
    help="One diffusion model over images and clinical metadata: fix any subset of variables, sample the rest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train-vae")(run_commands.train_vae)
app.command("encode")(run_commands.encode)
app.command("train")(run_commands.train)
app.command("sample")(run_commands.sample)
app.command("predict")(run_commands.predict)
app.command("evaluate")(run_commands.evaluate)
app.command("plot")(run_commands.plot)
app.command("plugins")(commands.plugins)
app.command("schema")(commands.schema)
app.command("demo")(commands.demo)
app.command("phantom")(phantom_command.phantom)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; returns the exit code instead of exiting."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="metavoxel", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # usage errors (exit code 2)
        exc.show() if hasattr(exc, "show") else print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except MetavoxelError as exc:
        if os.environ.get("METAVOXEL_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def main() -> None:
    sys.exit(run())
