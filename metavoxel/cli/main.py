"""Entry point: builds the Typer app and turns known errors into one line and an exit code.

Bad input prints ``error: <what was expected, what arrived, what to do>`` and exits with 2; no
traceback unless ``METAVOXEL_DEBUG=1``. An unexpected exception raised inside a plugin's code (a kind's
``build``, ``encode``, ...) prints one line naming the kind, method and distribution and exits with 1; an
installed plugin that failed to load is reported once as ``warning: ...``. Every warning prints that way,
as one ``warning: <message>`` line on stderr (not Python's ``file:line: Category`` form with a line of source).
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from metavoxel.cli import commands, edit_commands, phantom_command, run_commands, vae_command
from metavoxel.cli.flags import FLAGS
from metavoxel.errors import MetavoxelError, OptionError

app = typer.Typer(
    name="metavoxel",
    help="One diffusion model over images and clinical metadata: fix any subset of variables, sample the rest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train-vae")(run_commands.train_vae)
app.command("import-vae")(vae_command.import_vae)
app.command("encode")(run_commands.encode)
app.command("train")(run_commands.train)
app.command("sample")(run_commands.sample)
app.command("predict")(run_commands.predict)
app.command("evaluate")(run_commands.evaluate)
app.command("check")(run_commands.check)
app.command("calibrate")(run_commands.calibrate)
app.command("edit")(edit_commands.edit)
app.command("deviation")(edit_commands.deviation)
app.command("plot")(run_commands.plot)
app.command("plugins")(commands.plugins)
app.command("schema")(commands.schema)
app.command("demo")(commands.demo)
app.command("phantom")(phantom_command.phantom)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the CLI: ``warning: <message>`` on one line of stderr."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; returns the exit code instead of exiting."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning  # e.g. a plugin that failed to load: one line, not a stack frame
        return _run(argv)


def _run(argv: list[str] | None) -> int:
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
        print(f"error: {exc.render(FLAGS) if isinstance(exc, OptionError) else exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        line = None if os.environ.get("METAVOXEL_DEBUG") == "1" else _plugin_blame(exc)
        if line is None:
            raise  # metavoxel's own bug: the traceback is the report
        print(f"error: {line}", file=sys.stderr)
        return 1


def _plugin_blame(exc: Exception) -> str | None:
    from metavoxel.plugins import default_registry
    from metavoxel.plugins.blame import blame

    try:
        return blame(exc, default_registry())
    except Exception:  # never hide the original error behind one from the blame
        return None


def main() -> None:
    sys.exit(run())
