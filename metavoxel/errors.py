"""Structured exceptions: every error metavoxel raises on purpose derives from `MetavoxelError`.

Messages answer three questions — what was expected, what arrived, what to do — on one line, so the
CLI can print them as they are (exit code 2 for bad input; ``METAVOXEL_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations


class MetavoxelError(Exception):
    """Base class of every deliberate metavoxel error."""

    exit_code = 1


class InputError(MetavoxelError, ValueError):
    """Bad input from the user (a value, a file, a flag): exit code 2 on the CLI."""

    exit_code = 2


class OptionError(InputError):
    """A request option that cannot be honoured, named by its API name (``num_samples``, ``conditioning``).

    The message is a template whose ``{option}`` fields are the options it names: ``str(error)`` spells them
    as the Python API does (``conditioning``), `render` as a front end does (the CLI: ``--conditioning``).
    """

    def __init__(self, template: str, *options: str):
        self.template, self.options = template, options
        super().__init__(self.render({}))

    def render(self, spelling: dict[str, str]) -> str:
        """The message with each option spelled as ``spelling`` says (default: its API name)."""
        return self.template.format(**{o: spelling.get(o, o) for o in self.options})


class SpecError(InputError):
    """A model spec that does not validate; the message carries the field path."""


class PluginError(MetavoxelError):
    """A plugin that failed to load or conflicts with another; names the distribution and version."""


class KernelError(MetavoxelError, RuntimeError):
    """A kernel backend setting that cannot be honoured: an unknown backend name, or an explicitly requested
    backend that cannot run the given inputs (`metavoxel.kernels.KernelUnavailable`). Exit code 2 on the CLI:
    the fix is a setting (``METAVOXEL_KERNELS``, or the spec's ``diffusion.kernels`` /
    ``network.attention_backend``)."""

    exit_code = 2


class CheckpointError(InputError):
    """A run directory or checkpoint that is missing, corrupt, or does not match the model."""


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'age'?)`` for the choice nearest ``name`` — equal ignoring case first, then the
    closest spelling (`difflib`) — or ``""`` when none is near; for messages about unknown names."""
    import difflib

    choices = [str(c) for c in choices]
    same = [c for c in choices if c.casefold() == name.casefold()]
    close = same or difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_variable_names(variables, **given) -> None:
    """Refuse names that are no variable of the model: ``given`` maps a flag (``fix``, ``mask``, ``set``) to the
    names it was given with.

    Raises:
        InputError: ``--FLAG: unknown variable(s) ... (did you mean ...?); this model has ...``.
    """
    for flag, names in given.items():
        unknown = sorted(set(names) - set(variables))
        if unknown:
            raise InputError(f"--{flag}: unknown variable(s) {', '.join(unknown)}{did_you_mean(unknown[0], variables)}; "
                             f"this model has {', '.join(variables)}")
