"""Backend choice for the fused kernels: ``auto`` | ``triton`` | ``torch``.

``auto`` (the default) runs Triton on CUDA tensors when the kernel supports the inputs and the PyTorch
reference elsewhere, logging once which backend ran (and why it fell back). An explicit ``triton`` that
cannot run raises `KernelUnavailable` with the reason. The environment variable ``METAVOXEL_KERNELS``
sets the default; a per-call ``backend=`` argument (or the spec's ``diffusion.kernels``, and
``network.attention_backend`` for attention) overrides it.

Triton is optional: nothing here imports it unless a kernel is about to run. For tests on CPU, an
explicit ``backend="triton"`` runs the kernels in Triton's interpreter on CPU tensors when
``TRITON_INTERPRET=1`` is set before the first kernel launch (Triton decides between compiling and
interpreting when the ``@triton.jit`` functions are defined, and our kernel modules are imported lazily).
``auto`` on CPU always runs the PyTorch path.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Iterable

import torch

# the one metavoxel module kernels import besides torch/triton: the dependency-free exception hierarchy,
# so the CLI maps kernel errors to one line like every other deliberate error
from metavoxel.errors import KernelError

BACKENDS = ("auto", "triton", "torch")
_log = logging.getLogger("metavoxel.kernels")
_announced: set[tuple[str, str]] = set()


class KernelUnavailable(KernelError):
    """An explicitly requested Triton kernel cannot run; the message says why."""


class UnknownBackend(KernelError, ValueError):
    """``METAVOXEL_KERNELS`` (or a ``backend=`` argument) names no backend of `BACKENDS`."""


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument if given, else ``METAVOXEL_KERNELS``, else ``auto``.

    Raises:
        UnknownBackend: the name is none of `BACKENDS` (a `metavoxel.KernelError` and a ValueError).
    """
    choice = (backend or os.environ.get("METAVOXEL_KERNELS") or "auto").strip().lower()
    if choice not in BACKENDS:
        raise UnknownBackend(
            f"kernel backend must be one of {', '.join(BACKENDS)}, got {choice!r}; "
            "fix METAVOXEL_KERNELS or the spec's diffusion.kernels / network.attention_backend"
        )
    return choice


def announce(op: str, backend: str, reason: str | None = None) -> None:
    """Log once per (op, backend) which backend ran, with the reason when auto fell back to torch."""
    if (op, backend) not in _announced:
        _announced.add((op, backend))
        why = f" ({reason})" if reason else ""
        _log.info("metavoxel kernel %s: using the %s backend%s", op, backend, why)


@functools.lru_cache(maxsize=1)
def triton_missing() -> str | None:
    """Why Triton cannot be imported, or None when it can."""
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return f"triton is not importable ({type(exc).__name__}: {exc}); install metavoxel[triton]"
    return None


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to interpret kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def device_problem(tensors: Iterable[torch.Tensor | None], explicit: bool) -> str | None:
    """Why Triton cannot run on these tensors' device, or None when it can.

    CUDA tensors (all on one device) run compiled kernels; CPU tensors run only in the interpreter and only
    when Triton was asked for explicitly, so ``auto`` on CPU stays on the PyTorch path.
    """
    missing = triton_missing()
    if missing:
        return missing
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        return f"inputs are on several devices {sorted(map(str, devices))}; move them to one device"
    device = devices.pop() if devices else torch.device("cpu")
    if device.type == "cuda":
        return None
    if device.type == "cpu" and explicit and interpreter_enabled():
        return None
    hint = " (set TRITON_INTERPRET=1 to run the interpreter on CPU tensors)" if device.type == "cpu" else ""
    return f"tensors are on {device.type}; the Triton kernels need CUDA tensors{hint}"


def choose(op: str, backend: str | None, problem: Callable[[bool], str | None]) -> str:
    """Resolve ``backend`` to ``"triton"`` or ``"torch"`` for one call of ``op``.

    Args:
        op: kernel name used in logs and errors.
        backend: per-call request (``None`` reads ``METAVOXEL_KERNELS``).
        problem: called with ``explicit`` (True when Triton was requested by name); returns why the Triton
            kernel cannot run these inputs, or None when it can.

    Raises:
        KernelUnavailable: Triton was requested explicitly and cannot run; the message carries the reason.
    """
    choice = requested_backend(backend)
    if choice == "torch":
        announce(op, "torch")
        return "torch"
    reason = problem(choice == "triton")
    if reason is None:
        announce(op, "triton")
        return "triton"
    if choice == "triton":
        raise KernelUnavailable(
            f"metavoxel kernel {op}: the Triton backend was requested but cannot run: {reason}; "
            "use backend='torch' (or METAVOXEL_KERNELS=auto) to run the PyTorch path"
        )
    announce(op, "torch", reason)
    return "torch"


def check_interpretable(kernel: object, device: torch.device) -> None:
    """Raise when CPU tensors meet a kernel that was compiled (not interpreted) at import time."""
    if device.type != "cpu":
        return
    if type(kernel).__name__ != "InterpretedFunction":
        raise KernelUnavailable(
            "the Triton kernels were imported before TRITON_INTERPRET=1 was set, so they cannot run on CPU "
            "tensors; set TRITON_INTERPRET=1 before the first kernel launch (or use CUDA tensors)"
        )
